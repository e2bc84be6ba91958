// The integration tests: the JS runtime against the real stack (the Temporal dev server, the
// Python worker on a temporary SQLite ledger, the read API, the machine's NATS), started once
// for this file from the project's own .venv and stopped at the end. A missing .venv or an
// unreachable NATS fails the run with what to do; nothing is skipped.

import { after, before } from 'node:test';

import { ComputeLedger } from '../../src/index.js';
import { Stack } from '../helpers/stack.js';
import { eventsSuite } from './events.js';
import { holdErrorsSuite } from './hold-errors.js';
import { holdsSuite } from './holds.js';
import { readsSuite } from './reads.js';

/** @type {import('./context.js').Context} */
const context = {
  stack: /** @type {any} */ (null),
  ledger: /** @type {any} */ (null),
  wsLedger: /** @type {any} */ (null),
};

before(async () => {
  context.stack = await Stack.start();
  context.ledger = await ComputeLedger.connect(context.stack.connectOptions());
  // The same stack without NATS on the client side: events come from the read API's WebSocket.
  context.wsLedger = await ComputeLedger.connect(context.stack.connectOptions({ natsUrl: null }));
});

after(async () => {
  await context.ledger?.close();
  await context.wsLedger?.close();
  await context.stack?.stop();
});

holdsSuite(context);
holdErrorsSuite(context);
readsSuite(context);
eventsSuite(context);
