// Every business error the saga can return to a caller reaches JS as a LedgerError with its
// stable code, and leaves nothing behind (no hold, the balance unchanged).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ComputeLedger, LEDGER_ERROR_CODES, deriveHoldId } from '../../src/index.js';
import { unique } from '../helpers/wait.js';
import { freezeOptions } from './context.js';
import { refusedWith } from './holds.js';

/**
 * @param {import('./context.js').Context} context
 */
export function holdErrorsSuite(context) {
  describe('business errors of the saga', { concurrency: true }, () => {
    /**
     * Refused with `code`, one of the stable codes of ledger_db.
     * @param {Promise<unknown>} promise
     * @param {string} code
     */
    async function refused(promise, code) {
      assert.ok(LEDGER_ERROR_CODES.includes(code), `${code} is a code of ledger_db/errors.py`);
      await refusedWith(promise, code);
    }

    test('rejected freezes: each code, no hold left, the balance untouched', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant({ deposit: '50.00' });
      /** @type {[Partial<import('../../src/domain/compute-ledger.js').FreezeOptions>, string][]} */
      const cases = [
        [{ amount: '50.01' }, 'insufficient_funds'],
        [{ accountId: 'ghost' }, 'account_not_found'],
        [{ currency: 'EUR' }, 'currency_mismatch'],
        [{ currency: 'QQQ' }, 'unknown_currency'],
        [{ amount: '1.001' }, 'invalid_amount'],
        [{ ttlSeconds: 0 }, 'ttl_out_of_range'],
        [{ ttlSeconds: 31 * 24 * 3600 }, 'ttl_out_of_range'],
        [{ accountId: 'not an id!' }, 'invalid_entry'],
        [{ feeBps: 10_001 }, 'invalid_entry'],
      ];
      for (const [overrides, code] of cases) {
        const key = unique(code);
        await refused(ledger.freeze(freezeOptions(tenantId, key, overrides)), code);
        await refusedWith(ledger.getHold({ tenantId, holdId: deriveHoldId(tenantId, key) }), 'hold_not_found');
      }
      const balance = await ledger.getBalance({ tenantId, accountId: 'buyer' });
      assert.deepEqual([balance.posted, balance.held, balance.available], ['50.00', '0.00', '50.00']);
    });

    test('refused captures: the hold stays active and takes a right one', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      const hold = await ledger.freeze(freezeOptions(tenantId, unique('capture'), { payeeAccountId: undefined }));
      const capture = { tenantId, holdId: hold.holdId, orderId: 'o-1', idempotencyKey: unique('c') };
      await refused(ledger.captureHold(capture), 'payee_required');
      await refused(ledger.captureHold({ ...capture, payeeAccountId: 'seller', amount: '40.01' }), 'capture_exceeds_hold');
      await refused(ledger.captureHold({ ...capture, payeeAccountId: 'seller', amount: '0.001' }), 'invalid_amount');
      await refused(ledger.captureHold({ ...capture, payeeAccountId: 'nobody' }), 'account_not_found');
      await refused(ledger.captureHold({ ...capture, payeeAccountId: 'buyer' }), 'invalid_entry');
      assert.equal((await ledger.getHold({ tenantId, holdId: hold.holdId })).phase, 'active');
      const captured = await ledger.captureHold({ ...capture, payeeAccountId: 'seller' });
      assert.equal(captured.state, 'captured');
      await refused(ledger.releaseHold({ tenantId, holdId: hold.holdId, idempotencyKey: 'late' }), 'hold_already_captured');
    });

    test("another tenant's hold is hold_not_found, like one that never was", async () => {
      const { ledger, stack } = context;
      const [owner, other] = [await stack.tenant(), await stack.tenant()];
      const hold = await ledger.freeze(freezeOptions(owner.tenantId, unique('mine')));
      for (const call of [
        () => ledger.getHold({ tenantId: other.tenantId, holdId: hold.holdId }),
        () => ledger.captureHold({ tenantId: other.tenantId, holdId: hold.holdId, orderId: 'o', idempotencyKey: 'k' }),
        () => ledger.releaseHold({ tenantId: other.tenantId, holdId: hold.holdId, idempotencyKey: 'k' }),
        () => ledger.waitForHold({ tenantId: other.tenantId, holdId: hold.holdId }),
        () => ledger.getHold({ tenantId: owner.tenantId, holdId: deriveHoldId(owner.tenantId, 'never-frozen') }),
        () => ledger.captureHold({ tenantId: owner.tenantId, holdId: 'no-such-hold', orderId: 'o', idempotencyKey: 'k' }),
      ]) {
        await refused(call(), 'hold_not_found');
      }
      await ledger.releaseHold({ tenantId: owner.tenantId, holdId: hold.holdId, idempotencyKey: 'r' });
    });

    test('extensions: out of range, resolved', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      const hold = await ledger.freeze(freezeOptions(tenantId, unique('extend')));
      await refused(ledger.extendHold({ tenantId, holdId: hold.holdId, idempotencyKey: 'x', ttlSeconds: 0 }), 'ttl_out_of_range');
      await ledger.captureHold({ tenantId, holdId: hold.holdId, orderId: 'o', idempotencyKey: 'c' });
      await refused(ledger.extendHold({ tenantId, holdId: hold.holdId, idempotencyKey: 'y', ttlSeconds: 60 }), 'hold_already_captured');
    });

    test('no answer in time: ledger_unavailable (no worker polls this task queue)', async () => {
      const { stack } = context;
      const { tenantId } = await stack.tenant();
      const idle = await ComputeLedger.connect(
        stack.connectOptions({ taskQueue: `nobody-polls-${unique('q')}`, answerDeadlineMs: 1500 }),
      );
      try {
        const started = Date.now();
        await refused(idle.freeze(freezeOptions(tenantId, unique('idle'))), 'ledger_unavailable');
        assert.ok(Date.now() - started < 10_000);
      } finally {
        await idle.close();
      }
    });
  });
}
