// The saga from JS: freeze, capture and payout, release, expiry, the signal forms, replays and
// extensions, each through the real HoldWorkflowV2 on the real Python worker.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ComputeLedger, LedgerError, deriveHoldId } from '../../src/index.js';
import { EMPTY_NAMESPACE } from '../helpers/stack.js';
import { eventually, unique } from '../helpers/wait.js';
import { freezeOptions } from './context.js';

/**
 * @param {Promise<unknown>} promise
 * @param {string} code
 */
export async function refusedWith(promise, code) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof LedgerError, `a LedgerError, not ${error}`);
    assert.equal(error.code, code, error.message);
    return true;
  });
}

/**
 * @param {import('./context.js').Context} context
 */
export function holdsSuite(context) {
  describe('holds through the saga', { concurrency: true }, () => {
    test('freeze -> partial capture -> payout: captured, released, fee, finalized', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      const key = unique('order');
      const hold = await ledger.freeze(freezeOptions(tenantId, key, { orderId: 'order-1', meta: { gpu: 'H100', hours: 2 } }));
      assert.equal(hold.holdId, deriveHoldId(tenantId, key), 'the Python worker derived the same hold ID');
      assert.equal(hold.state, 'active');
      assert.equal(hold.amount, '40.00');
      assert.equal(hold.currency, 'USD');
      assert.equal(hold.replayed, false);
      assert.ok(Date.parse(hold.expiresAt) > Date.now() + 590_000);
      const held = await ledger.getBalance({ tenantId, accountId: 'buyer' });
      assert.deepEqual([held.posted, held.held, held.available], ['100.00', '40.00', '60.00']);

      const captured = await ledger.captureHold({
        tenantId,
        holdId: hold.holdId,
        orderId: 'order-1',
        idempotencyKey: `${key}-capture`,
        amount: '25.50',
      });
      assert.equal(captured.state, 'captured');
      assert.equal(captured.captured, '25.50');
      assert.equal(captured.released, '14.50');

      const final = await ledger.waitForHold({ tenantId, holdId: hold.holdId });
      assert.equal(final.state, 'captured');
      assert.equal(final.finalized, true);
      assert.ok(final.finalizeTransactionId);
      assert.match(final.fee, /^\d+\.\d{2}$/);
      const status = await ledger.getHold({ tenantId, holdId: hold.holdId });
      assert.equal(status.phase, 'captured');
      assert.equal(status.final, true);
      assert.equal(status.resolution, 'capture');
      const buyer = await ledger.getBalance({ tenantId, accountId: 'buyer' });
      assert.deepEqual([buyer.posted, buyer.held, buyer.available], ['74.50', '0.00', '74.50']);
      const seller = await ledger.getBalance({ tenantId, accountId: 'seller' });
      const fee = BigInt(final.fee.replace('.', ''));
      assert.equal(BigInt(seller.posted.replace('.', '')), 2550n - fee, 'the payee got the capture less the fee');
    });

    test('release: the money is available again; a repeat is replayed, another key refused', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      const key = unique('release');
      const hold = await ledger.freeze(freezeOptions(tenantId, key));
      const released = await ledger.releaseHold({ tenantId, holdId: hold.holdId, idempotencyKey: `${key}-r` });
      assert.equal(released.state, 'released');
      assert.equal(released.released, '40.00');
      assert.equal(released.replayed, false);
      const final = await ledger.waitForHold({ tenantId, holdId: hold.holdId });
      assert.equal(final.state, 'released');
      // The workflow has ended: the repeat is answered from its final state.
      const again = await ledger.releaseHold({ tenantId, holdId: hold.holdId, idempotencyKey: `${key}-r` });
      assert.equal(again.replayed, true);
      assert.equal(again.state, 'released');
      await refusedWith(ledger.releaseHold({ tenantId, holdId: hold.holdId, idempotencyKey: `${key}-other` }), 'hold_already_released');
      await refusedWith(
        ledger.captureHold({ tenantId, holdId: hold.holdId, orderId: 'o', idempotencyKey: `${key}-c` }),
        'hold_already_released',
      );
      const balance = await ledger.getBalance({ tenantId, accountId: 'buyer' });
      assert.deepEqual([balance.held, balance.available], ['0.00', '100.00']);
    });

    test('expiry with a short TTL: the hold expires by itself; later requests get hold_expired', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      const key = unique('expiry');
      const hold = await ledger.freeze(freezeOptions(tenantId, key, { ttlSeconds: 2 }));
      const final = await ledger.waitForHold({ tenantId, holdId: hold.holdId, timeoutMs: 30_000 });
      assert.equal(final.state, 'expired');
      assert.equal(final.released, '40.00');
      assert.ok(Date.parse(/** @type {string} */ (final.resolvedAt)) >= Date.parse(hold.expiresAt));
      const status = await ledger.getHold({ tenantId, holdId: hold.holdId });
      assert.equal(status.phase, 'expired');
      assert.equal(status.resolution, 'expire');
      await refusedWith(
        ledger.captureHold({ tenantId, holdId: hold.holdId, orderId: 'late', idempotencyKey: `${key}-c` }),
        'hold_expired',
      );
      await refusedWith(ledger.cancelOrder({ tenantId, holdId: hold.holdId }), 'hold_expired');
      const balance = await ledger.getBalance({ tenantId, accountId: 'buyer' });
      assert.equal(balance.available, '100.00');
    });

    test('waitForHold with a timeout rejects with a TimeoutError and leaves the hold alone', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      const hold = await ledger.freeze(freezeOptions(tenantId, unique('wait')));
      await assert.rejects(ledger.waitForHold({ tenantId, holdId: hold.holdId, timeoutMs: 300 }), { name: 'TimeoutError' });
      assert.equal((await ledger.getHold({ tenantId, holdId: hold.holdId })).phase, 'active');
    });

    test('confirmOrder (a signal) captures and pays out; a repeat after the end is no error', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      const hold = await ledger.freeze(freezeOptions(tenantId, unique('confirm')));
      await ledger.confirmOrder({ tenantId, holdId: hold.holdId, orderId: 'order-9' });
      const final = await ledger.waitForHold({ tenantId, holdId: hold.holdId });
      assert.equal(final.state, 'captured');
      assert.equal(final.finalized, true);
      assert.equal(final.orderId, 'order-9');
      assert.equal(final.captured, '40.00');
      // Same (default) key, same order: the repeat of the resolution.
      await ledger.confirmOrder({ tenantId, holdId: hold.holdId, orderId: 'order-9' });
      // Same key, another order: another request under that key.
      await refusedWith(ledger.confirmOrder({ tenantId, holdId: hold.holdId, orderId: 'order-10' }), 'idempotency_key_reused');
      await refusedWith(ledger.cancelOrder({ tenantId, holdId: hold.holdId }), 'hold_already_captured');
    });

    test('cancelOrder (a signal) releases', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      const hold = await ledger.freeze(freezeOptions(tenantId, unique('cancel')));
      await ledger.cancelOrder({ tenantId, holdId: hold.holdId, idempotencyKey: 'cancel-1' });
      const final = await ledger.waitForHold({ tenantId, holdId: hold.holdId });
      assert.equal(final.state, 'released');
      assert.equal((await ledger.getHold({ tenantId, holdId: hold.holdId })).resolution, 'release');
    });

    test('a signal that cannot apply is kept in the state; the hold stays active', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      const hold = await ledger.freeze(freezeOptions(tenantId, unique('signal-error')));
      await ledger.confirmOrder({ tenantId, holdId: hold.holdId, orderId: 'o', amount: '40.01' });
      const status = await eventually(async () => {
        const current = await ledger.getHold({ tenantId, holdId: hold.holdId });
        return current.lastSignalErrorCode ? current : null;
      }, 'the refused signal is recorded');
      assert.equal(status.lastSignalErrorCode, 'capture_exceeds_hold');
      assert.equal(status.phase, 'active');
      await ledger.releaseHold({ tenantId, holdId: hold.holdId, idempotencyKey: 'r' });
    });

    test('idempotent freezes: same request replayed (any spelling of the amount), another refused', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      const key = unique('replay');
      const meta = { big: 2n ** 70n, ratio: 0.1, label: 'Négociation 日本 🔑', nested: { list: [1, 2.5, null, true] } };
      const first = await ledger.freeze(freezeOptions(tenantId, key, { meta }));
      const again = await ledger.freeze(freezeOptions(tenantId, key, { amount: '40', meta }));
      assert.equal(again.holdId, first.holdId);
      assert.equal(again.replayed, true);
      assert.deepEqual(again.meta.big, 2n ** 70n, 'an integer beyond 2^53 comes back exact');
      await refusedWith(ledger.freeze(freezeOptions(tenantId, key, { amount: '41.00', meta })), 'idempotency_key_reused');
      // After the workflow ended the client compares the request hash itself: the JS hash of
      // this meta (bigint, float, non-ASCII) must be the workflow's.
      await ledger.releaseHold({ tenantId, holdId: first.holdId, idempotencyKey: 'r' });
      await ledger.waitForHold({ tenantId, holdId: first.holdId });
      const afterEnd = await ledger.freeze(freezeOptions(tenantId, key, { amount: '40.0', meta }));
      assert.equal(afterEnd.replayed, true);
      assert.equal(afterEnd.state, 'active', 'the hold as the freeze returned it');
      await refusedWith(ledger.freeze(freezeOptions(tenantId, key, { meta: { ...meta, ratio: 0.2 } })), 'idempotency_key_reused');
    });

    test('idempotent captures: the same capture replayed, the same key with another amount refused', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      const key = unique('capture-replay');
      const hold = await ledger.freeze(freezeOptions(tenantId, key));
      const capture = { tenantId, holdId: hold.holdId, orderId: 'o-1', idempotencyKey: `${key}-c`, amount: '10.00' };
      const first = await ledger.captureHold(capture);
      const again = await ledger.captureHold({ ...capture, amount: '10' });
      assert.equal(first.replayed, false);
      assert.equal(again.replayed, true);
      assert.equal(again.captured, '10.00');
      await refusedWith(ledger.captureHold({ ...capture, amount: '11.00' }), 'idempotency_key_reused');
      await ledger.waitForHold({ tenantId, holdId: hold.holdId });
      assert.equal((await ledger.captureHold(capture)).replayed, true, 'replayed after the end too');
      await refusedWith(ledger.captureHold({ ...capture, idempotencyKey: 'another' }), 'hold_already_captured');
    });

    test('a non-ASCII idempotency key names the same hold on both sides', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      const key = `注文-🔑-${unique('k')}`;
      const hold = await ledger.freeze(freezeOptions(tenantId, key));
      assert.equal(hold.holdId, deriveHoldId(tenantId, key));
      const shown = await stack.cli(['hold', 'show', '--tenant', tenantId, '--hold', hold.holdId]);
      assert.equal(shown.hold_id ?? shown.hold?.hold_id, hold.holdId, 'the Python CLI finds the hold by the JS-derived ID');
      await ledger.releaseHold({ tenantId, holdId: hold.holdId, idempotencyKey: 'r' });
    });

    test('extendHold moves the expiry; the hold outlives its first TTL', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      const key = unique('extend');
      const hold = await ledger.freeze(freezeOptions(tenantId, key, { ttlSeconds: 2 }));
      const extended = await ledger.extendHold({ tenantId, holdId: hold.holdId, idempotencyKey: `${key}-x`, ttlSeconds: 600 });
      assert.ok(Date.parse(extended.expiresAt) > Date.parse(hold.expiresAt) + 500_000);
      const again = await ledger.extendHold({ tenantId, holdId: hold.holdId, idempotencyKey: `${key}-x`, ttlSeconds: 600 });
      assert.equal(again.expiresAt, extended.expiresAt, 'the same extension again changes nothing');
      await refusedWith(
        ledger.extendHold({ tenantId, holdId: hold.holdId, idempotencyKey: `${key}-x`, ttlSeconds: 900 }),
        'idempotency_key_reused',
      );
      await eventually(() => Date.now() > Date.parse(hold.expiresAt) + 1500, 'the first expiry has passed', 10_000);
      assert.equal((await ledger.getHold({ tenantId, holdId: hold.holdId })).phase, 'active');
      await ledger.releaseHold({ tenantId, holdId: hold.holdId, idempotencyKey: 'r' });
      await refusedWith(
        ledger.extendHold({ tenantId, holdId: hold.holdId, idempotencyKey: `${key}-late`, ttlSeconds: 60 }),
        'hold_already_released',
      );
    });

    test('retryPayout: refused for a hold not captured, replayed for one paid out', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      const hold = await ledger.freeze(freezeOptions(tenantId, unique('payout')));
      await refusedWith(ledger.retryPayout({ tenantId, holdId: hold.holdId, idempotencyKey: 'p' }), 'hold_not_captured');
      await ledger.captureHold({ tenantId, holdId: hold.holdId, orderId: 'o', idempotencyKey: 'c' });
      await ledger.waitForHold({ tenantId, holdId: hold.holdId });
      const paid = await ledger.retryPayout({ tenantId, holdId: hold.holdId, idempotencyKey: 'p' });
      assert.equal(paid.replayed, true);
      assert.equal(paid.finalized, true);
    });

    test('a hold whose workflow Temporal no longer keeps is read from the ledger', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      const hold = await ledger.freeze(freezeOptions(tenantId, unique('forgotten')));
      await ledger.releaseHold({ tenantId, holdId: hold.holdId, idempotencyKey: 'r' });
      await ledger.waitForHold({ tenantId, holdId: hold.holdId });
      // A namespace that never had the workflow stands for one whose retention removed it.
      const forgetful = await ComputeLedger.connect(stack.connectOptions({ namespace: EMPTY_NAMESPACE }));
      let status;
      try {
        status = await forgetful.getHold({ tenantId, holdId: hold.holdId });
        await refusedWith(forgetful.getHold({ tenantId, holdId: deriveHoldId(tenantId, 'never') }), 'hold_not_found');
      } finally {
        await forgetful.close();
      }
      assert.equal(status.source, 'ledger');
      assert.equal(status.phase, 'released');
      assert.equal(status.final, true);
      assert.equal(status.hold?.released, '40.00');
      assert.equal(status.hold?.holdId, hold.holdId);
    });

    test('a rejected freeze leaves no hold; the same key succeeds after a top-up', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant({ deposit: '10.00' });
      const key = unique('topup');
      await refusedWith(ledger.freeze(freezeOptions(tenantId, key)), 'insufficient_funds');
      await refusedWith(ledger.getHold({ tenantId, holdId: deriveHoldId(tenantId, key) }), 'hold_not_found');
      await stack.cli(['account', 'deposit', '--tenant', tenantId, '--account', 'buyer', '--amount', '50', '--idempotency-key', 'top-up-2']);
      const hold = await ledger.freeze(freezeOptions(tenantId, key));
      assert.equal(hold.state, 'active');
      assert.equal(hold.replayed, false);
      await ledger.releaseHold({ tenantId, holdId: hold.holdId, idempotencyKey: 'r' });
    });
  });
}
