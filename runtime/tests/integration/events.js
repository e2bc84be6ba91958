// Billing events to a JS subscriber, on both transports: INTENT_CREATED, ORDER_CREATED and
// PAYMENT_SUCCEEDED of a hold once each; type filters; the durable position (NATS) and the
// resume after a sequence (WebSocket) across a restart of the read API; a handler that throws
// gets its event again; a repeat on the bus is dropped; a revoked key ends the stream.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { connect as connectNats, headers as natsHeaders } from 'nats';

import { ComputeLedger, LedgerError } from '../../src/index.js';
import { eventually, sleep, unique } from '../helpers/wait.js';
import { freezeOptions } from './context.js';

/** @typedef {import('../../src/domain/records.js').BillingEvent} BillingEvent */

const HOLD_CAPTURED_EVENTS = ['INTENT_CREATED', 'ORDER_CREATED', 'PAYMENT_SUCCEEDED'];

/**
 * A freeze and a capture (with its payout): the three events of a completed hold.
 * @param {ComputeLedger} ledger
 * @param {string} tenantId
 */
async function completeHold(ledger, tenantId) {
  const hold = await ledger.freeze(freezeOptions(tenantId, unique('events')));
  await ledger.captureHold({ tenantId, holdId: hold.holdId, orderId: unique('order'), idempotencyKey: 'c' });
  await ledger.waitForHold({ tenantId, holdId: hold.holdId });
  return hold;
}

/**
 * A freeze and a release: INTENT_CREATED, HOLD_RELEASED.
 * @param {ComputeLedger} ledger
 * @param {string} tenantId
 */
async function releasedHold(ledger, tenantId) {
  const hold = await ledger.freeze(freezeOptions(tenantId, unique('events')));
  await ledger.releaseHold({ tenantId, holdId: hold.holdId, idempotencyKey: 'r' });
  return hold;
}

/**
 * The types received, counted.
 * @param {BillingEvent[]} events
 */
function countTypes(events) {
  /** @type {Record<string, number>} */
  const counts = {};
  for (const event of events) {
    counts[event.type] = (counts[event.type] ?? 0) + 1;
  }
  return counts;
}

/**
 * @param {BillingEvent[]} events
 */
function assertOncePerId(events) {
  const ids = events.map((event) => event.event_id);
  assert.equal(new Set(ids).size, ids.length, 'no event ID twice');
}

/**
 * @param {import('./context.js').Context} context
 */
export function eventsSuite(context) {
  describe('billing events over NATS JetStream', { concurrency: true }, () => {
    test('a hold captured and paid out: INTENT_CREATED, ORDER_CREATED, PAYMENT_SUCCEEDED once each', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      const other = await stack.tenant();
      /** @type {BillingEvent[]} */
      const received = [];
      const sub = await ledger.subscribeBillingEvents({ tenantId }, (event) => {
        received.push(event);
      });
      assert.equal(sub.transport, 'nats');
      const hold = await completeHold(ledger, tenantId);
      await releasedHold(ledger, other.tenantId); // another tenant's events never arrive here
      await eventually(() => received.length >= 3, 'three events');
      await sleep(500); // anything more (a repeat, another tenant's) would come now
      await sub.close();
      assert.deepEqual(countTypes(received), { INTENT_CREATED: 1, ORDER_CREATED: 1, PAYMENT_SUCCEEDED: 1 });
      assert.deepEqual(
        received.map((event) => event.type),
        HOLD_CAPTURED_EVENTS,
      );
      assertOncePerId(received);
      for (const event of received) {
        assert.equal(event.tenant_id, tenantId);
        assert.equal(event.hold_id, hold.holdId);
        assert.equal(event.version, '1.0');
      }
      const billing = /** @type {Record<string, any>} */ (received[0].payload).billing;
      assert.equal(billing.amount, '40.00', 'payload amounts are decimal text');
      assert.equal(billing.hold_id, hold.holdId);
    });

    test('types filter on the server; a durable consumer resumes where it acknowledged', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      await completeHold(ledger, tenantId);
      const durableName = `runtime-test-${unique('durable').replace(/[^A-Za-z0-9_-]/g, '_')}`;
      /** @type {BillingEvent[]} */
      const received = [];
      const options = { tenantId, types: ['PAYMENT_SUCCEEDED', 'HOLD_RELEASED'], durableName };
      let sub = await ledger.subscribeBillingEvents(options, (event) => {
        received.push(event);
      });
      await eventually(() => received.length >= 1, 'the payout event the stream kept');
      await sub.close();
      // While nobody listens: a released hold (INTENT_CREATED, HOLD_RELEASED) and a paid one.
      await releasedHold(ledger, tenantId);
      await completeHold(ledger, tenantId);
      sub = await ledger.subscribeBillingEvents(options, (event) => {
        received.push(event);
      });
      await eventually(() => received.length >= 3, 'the events written while away');
      await sleep(500);
      await sub.close();
      assert.deepEqual(
        received.map((event) => event.type),
        ['PAYMENT_SUCCEEDED', 'HOLD_RELEASED', 'PAYMENT_SUCCEEDED'],
      );
      assertOncePerId(received);
      assert.equal(sub.durableName, durableName);
      // The same durable name for other types is refused, not silently mixed.
      await assert.rejects(
        ledger.subscribeBillingEvents({ tenantId, durableName }, () => {}),
        (error) => error instanceof LedgerError && error.code === 'invalid_entry',
      );
    });

    test('a handler that throws gets the event again; a repeat published on the bus is dropped', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      /** @type {BillingEvent[]} */
      const received = [];
      /** @type {unknown[]} */
      const errors = [];
      let failures = 0;
      const sub = await ledger.subscribeBillingEvents(
        { tenantId, onError: (error) => errors.push(error) },
        (event) => {
          if (event.type === 'ORDER_CREATED' && failures === 0) {
            failures += 1;
            throw new Error('the reputation service is down');
          }
          received.push(event);
        },
      );
      await completeHold(ledger, tenantId);
      await eventually(() => received.length >= 3, 'three events, one of them redelivered', 20_000);
      // The relay resending an event after JetStream's duplicate window: another message ID,
      // the same event ID.
      const original = received[0];
      const nats = await connectNats({ servers: stack.natsUrl });
      try {
        const resend = natsHeaders();
        resend.set('Nats-Msg-Id', `${original.event_id}-resent`);
        const { sequence, ...body } = original;
        assert.equal(sequence, undefined, 'bus messages carry no outbox sequence');
        await nats
          .jetstream()
          .publish(`${stack.natsSubjectPrefix}.${tenantId}.${original.type}`, JSON.stringify(body), { headers: resend });
      } finally {
        await nats.close();
      }
      await eventually(() => sub.stats().duplicates >= 1, 'the repeat was seen and dropped');
      await sub.close();
      assert.deepEqual(countTypes(received), { INTENT_CREATED: 1, ORDER_CREATED: 1, PAYMENT_SUCCEEDED: 1 });
      assertOncePerId(received);
      assert.equal(failures, 1);
      assert.ok(errors.some((error) => error instanceof Error && /reputation service/.test(error.message)));
      assert.deepEqual(sub.stats(), { delivered: 3, duplicates: 1 });
    });
  });

  describe('billing events over the read API WebSocket', () => {
    test('INTENT_CREATED, ORDER_CREATED, PAYMENT_SUCCEEDED once each, with their sequences', async () => {
      const { wsLedger: ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      /** @type {BillingEvent[]} */
      const received = [];
      const sub = await ledger.subscribeBillingEvents({ tenantId }, (event) => {
        received.push(event);
      });
      assert.equal(sub.transport, 'websocket');
      await completeHold(ledger, tenantId);
      await eventually(() => received.length >= 3, 'three events');
      await sleep(300);
      await sub.close();
      assert.deepEqual(
        received.map((event) => event.type),
        HOLD_CAPTURED_EVENTS,
      );
      assertOncePerId(received);
      const sequences = received.map((event) => Number(event.sequence));
      assert.deepEqual(sequences, [...sequences].sort((a, b) => a - b));
      assert.equal(sub.lastSequence, received[2].sequence);
      // Resume after a sequence: only what came later.
      /** @type {BillingEvent[]} */
      const later = [];
      const resumed = await ledger.subscribeBillingEvents(
        { tenantId, afterSequence: /** @type {number} */ (received[0].sequence), types: ['PAYMENT_SUCCEEDED'] },
        (event) => {
          later.push(event);
        },
      );
      await eventually(() => later.length >= 1, 'the payout event after the first sequence');
      await sleep(300);
      await resumed.close();
      assert.deepEqual(
        later.map((event) => event.event_id),
        [received[2].event_id],
      );
    });

    test('across a restart of the read API (1012) the stream resumes: nothing lost, nothing twice', async () => {
      const { wsLedger: ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      /** @type {BillingEvent[]} */
      const received = [];
      /** @type {unknown[]} */
      const errors = [];
      let failures = 0;
      const sub = await ledger.subscribeBillingEvents(
        { tenantId, onError: (error) => errors.push(error), reconnect: { initialDelayMs: 100, maxDelayMs: 500 } },
        (event) => {
          if (event.type === 'ORDER_CREATED' && failures === 0) {
            failures += 1;
            throw new Error('handler failed once');
          }
          received.push(event);
        },
      );
      await completeHold(ledger, tenantId);
      await eventually(() => received.length >= 3, 'three events, one after a resume', 20_000);
      await stack.stopApi();
      await releasedHold(ledger, tenantId); // written while the read API is down
      await stack.startApi();
      await eventually(() => received.length >= 5, 'the events written while the API was down', 20_000);
      await sleep(300);
      await sub.close();
      assert.deepEqual(
        received.map((event) => event.type),
        [...HOLD_CAPTURED_EVENTS, 'INTENT_CREATED', 'HOLD_RELEASED'],
      );
      assertOncePerId(received);
      assert.equal(failures, 1);
      assert.ok(errors.length >= 2, 'the handler failure and the lost connection were reported');
    });

    test('a key revoked during the stream ends it (1008); a bad key is refused at once', async () => {
      const { wsLedger: ledger, stack } = context;
      const { tenantId, apiKey } = await stack.tenant();
      const sub = await ledger.subscribeBillingEvents({ tenantId, onError: () => {} }, () => {});
      await stack.cli(['apikey', 'revoke', '--key-id', apiKey.slice(0, 16)]);
      await assert.rejects(sub.closed, (error) => error instanceof LedgerError && error.code === 'unauthenticated');
      await sub.close();
      await assert.rejects(
        ledger.subscribeBillingEvents({ tenantId }, () => {}),
        (error) => error instanceof LedgerError && error.code === 'unauthenticated' && error.httpStatus === 401,
      );
    });
  });
}
