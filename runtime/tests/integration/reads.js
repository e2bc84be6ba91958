// Reads through the real read API: balances, journal pages, the ledger's record of a hold, and
// the API's refusals as LedgerErrors.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ComputeLedger, LedgerError, LedgerTransportError } from '../../src/index.js';
import { unique } from '../helpers/wait.js';
import { freezeOptions } from './context.js';
import { refusedWith } from './holds.js';

/**
 * @param {import('./context.js').Context} context
 */
export function readsSuite(context) {
  describe('reads through the read API', { concurrency: true }, () => {
    test('listLedgerEntries pages through the journal in order, none skipped or repeated', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      for (let index = 0; index < 3; index += 1) {
        const hold = await ledger.freeze(freezeOptions(tenantId, unique('page'), { amount: '5.00' }));
        await ledger.releaseHold({ tenantId, holdId: hold.holdId, idempotencyKey: `r-${index}` });
      }
      const whole = await ledger.listLedgerEntries({ tenantId, accountId: 'buyer', limit: 1000 });
      assert.equal(whole.nextCursor, null);
      assert.equal(whole.entries.length, 7, 'the deposit, then a freeze and a release per hold');
      /** @type {import('../../src/domain/records.js').LedgerEntry[]} */
      const paged = [];
      /** @type {string | null} */
      let cursor = null;
      let pages = 0;
      do {
        /** @type {import('../../src/domain/records.js').EntriesPage} */
        const page = await ledger.listLedgerEntries({ tenantId, accountId: 'buyer', limit: 2, ...(cursor ? { cursor } : {}) });
        assert.ok(page.entries.length <= 2);
        paged.push(...page.entries);
        cursor = page.nextCursor;
        pages += 1;
      } while (cursor !== null && pages < 10);
      assert.equal(pages, 4);
      assert.deepEqual(
        paged.map((entry) => entry.ledger_entry_id),
        whole.entries.map((entry) => entry.ledger_entry_id),
      );
      const first = whole.entries[0];
      assert.equal(first.direction, 'IN');
      assert.equal(first.amount, '100.00', 'amounts are decimal text');
      assert.equal(first.reason, 'TOP_UP');
      assert.equal(typeof first.journal_sequence, 'number');
      const sequences = whole.entries.map((entry) => Number(entry.journal_sequence));
      assert.deepEqual(sequences, [...sequences].sort((a, b) => a - b));
      const before = await ledger.listLedgerEntries({ tenantId, accountId: 'buyer', to: new Date(Date.parse(first.occurred_at)) });
      assert.deepEqual(before.entries, [], '`to` is exclusive');
      const since = await ledger.listLedgerEntries({ tenantId, accountId: 'buyer', from: whole.entries[1].occurred_at });
      assert.equal(since.entries.length, 6);
    });

    test('getBalance: posted, held, available as decimal text, as of an instant', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant({ deposit: '12.34' });
      const start = new Date();
      const hold = await ledger.freeze(freezeOptions(tenantId, unique('balance'), { amount: '2.30' }));
      const balance = await ledger.getBalance({ tenantId, accountId: 'buyer' });
      assert.equal(balance.tenantId, tenantId);
      assert.equal(balance.currency, 'USD');
      assert.deepEqual([balance.posted, balance.held, balance.available], ['12.34', '2.30', '10.04']);
      assert.equal(typeof balance.journalSequence, 'number');
      const earlier = await ledger.getBalance({ tenantId, accountId: 'buyer', asOf: start });
      assert.equal(earlier.available, '12.34');
      await ledger.releaseHold({ tenantId, holdId: hold.holdId, idempotencyKey: 'r' });
    });

    test('the API refuses with its codes: account_not_found, invalid_request, unauthenticated', async () => {
      const { ledger, stack } = context;
      const { tenantId } = await stack.tenant();
      await assert.rejects(ledger.getBalance({ tenantId, accountId: 'ghost' }), (error) => {
        assert.ok(error instanceof LedgerError);
        assert.equal(error.code, 'account_not_found');
        assert.equal(error.httpStatus, 404);
        return true;
      });
      await refusedWith(ledger.listLedgerEntries({ tenantId, accountId: 'buyer', limit: 0 }), 'invalid_request');
      await refusedWith(ledger.listLedgerEntries({ tenantId, accountId: 'buyer', cursor: 'not-a-cursor' }), 'invalid_entry');
      await refusedWith(ledger.listLedgerEntries({ tenantId, accountId: 'buyer', from: '2026-12-01T00:00:00' }), 'invalid_request');
      const badKey = await ComputeLedger.connect(stack.connectOptions({ apiKey: 'clk_000000000000_wrong', lazy: true }));
      try {
        await refusedWith(badKey.getBalance({ tenantId, accountId: 'buyer' }), 'unauthenticated');
      } finally {
        await badKey.close();
      }
    });

    test("another tenant's key: its records are refused, never passed off as this tenant's", async () => {
      const { stack } = context;
      const [first, second] = [await stack.tenant(), await stack.tenant()];
      const crossed = await ComputeLedger.connect(stack.connectOptions({ apiKey: first.apiKey, lazy: true }));
      try {
        await refusedWith(crossed.getBalance({ tenantId: second.tenantId, accountId: 'buyer' }), 'tenant_mismatch');
        await refusedWith(crossed.listLedgerEntries({ tenantId: second.tenantId, accountId: 'buyer' }), 'tenant_mismatch');
      } finally {
        await crossed.close();
      }
    });

    test('a read API that is down is a LedgerTransportError', async () => {
      const { stack } = context;
      const { tenantId } = await stack.tenant();
      const nowhere = await ComputeLedger.connect(stack.connectOptions({ apiUrl: 'http://127.0.0.1:1', lazy: true }));
      try {
        await assert.rejects(
          nowhere.getBalance({ tenantId, accountId: 'buyer' }),
          (error) => error instanceof LedgerTransportError && error.code === 'read_api_unavailable',
        );
      } finally {
        await nowhere.close();
      }
    });
  });
}
