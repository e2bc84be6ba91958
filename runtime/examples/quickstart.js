// The JS runtime's quickstart: a negotiation from the marketplace's side. Run it against a
// ledger (README.md, "JS runtime"): configuration comes from the environment
// (TEMPORAL_ADDRESS, LEDGER_TASK_QUEUE, LEDGER_API_URL, LEDGER_API_KEY, NATS_URL...).
//
//     node examples/quickstart.js [tenant]

import { randomUUID } from 'node:crypto';

import { ComputeLedger, LedgerError } from '../src/index.js';

const tenantId = process.argv[2] ?? 'demo';
const negotiation = randomUUID().slice(0, 8);
const ledger = await ComputeLedger.connect();

/** @type {string[]} */
const seen = [];
const subscription = await ledger.subscribeBillingEvents({ tenantId }, (event) => {
  seen.push(event.event_id);
  const { billing, settlement, payment } = /** @type {Record<string, any>} */ (event.payload);
  const detail = billing
    ? `frozen ${billing.amount}`
    : settlement
      ? `captured ${settlement.captured.amount}`
      : payment
        ? `net ${payment.net.amount}, fee ${payment.fee.amount}`
        : '';
  console.log(`event #${event.sequence ?? '-'} ${event.type} hold ${event.hold_id?.slice(0, 8)} ${detail}`);
});

try {
  const negotiationFreeze = {
    tenantId,
    accountId: 'buyer',
    amount: '40.00',
    reason: 'NEGOTIATION',
    idempotencyKey: `negotiation-${negotiation}`,
    ttlSeconds: 900,
    payeeAccountId: 'seller',
    meta: { gpu: 'H100', hours: 2 },
  };
  const hold = await ledger.freeze(negotiationFreeze);
  console.log(`froze ${hold.amount} ${hold.currency} as hold ${hold.holdId}, expires ${hold.expiresAt}`);

  // The same request again (any spelling of the amount): the same hold, replayed.
  const again = await ledger.freeze({ ...negotiationFreeze, amount: '40' });
  console.log(`the same freeze again: hold ${again.holdId.slice(0, 8)}, replayed=${again.replayed}`);

  try {
    await ledger.freeze({ ...negotiationFreeze, amount: /** @type {any} */ (40) });
  } catch (error) {
    if (!(error instanceof LedgerError)) throw error;
    console.log(`a JS number as amount: ${error.code}`);
  }

  await ledger.confirmOrder({ tenantId, holdId: hold.holdId, orderId: `order-${negotiation}`, amount: '25.50' });
  const final = await ledger.waitForHold({ tenantId, holdId: hold.holdId });
  console.log(
    `order confirmed: captured ${final.captured}, released ${final.released}, fee ${final.fee}, ` +
      `finalized=${final.finalized}`,
  );

  const balance = await ledger.getBalance({ tenantId, accountId: 'buyer' });
  console.log(`buyer: posted ${balance.posted}, held ${balance.held}, available ${balance.available} ${balance.currency}`);
  const page = await ledger.listLedgerEntries({ tenantId, accountId: 'buyer', limit: 3 });
  for (const entry of page.entries) {
    console.log(`entry #${entry.journal_sequence} ${entry.direction} ${entry.amount} ${entry.currency} ${entry.reason}`);
  }
  console.log(`next page: cursor ${page.nextCursor}`);

  for (let waited = 0; seen.length < 3 && waited < 10_000; waited += 100) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  console.log(`${seen.length} events over ${subscription.transport}, ${new Set(seen).size} distinct`);
} finally {
  await ledger.close();
}
