// The functions the runtime re-implements answer exactly as the Python ones on the generated
// table (tests/fixtures/python-parity.json): hold IDs, amounts, tenant IDs, idempotency keys,
// request hashes, the canonical JSON encoding and resolution conflicts.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { raiseResolutionConflict, resolutionConflict } from '../../src/domain/compute-ledger.js';
import { LedgerError } from '../../src/domain/errors.js';
import { deriveHoldId, holdIdFromWorkflowId, holdWorkflowId } from '../../src/domain/ids.js';
import { canonicalAmount, checkAmount } from '../../src/domain/money.js';
import { pythonJsonDumps } from '../../src/domain/python-json.js';
import { captureHash, freezeHash, releaseHash } from '../../src/domain/requests.js';
import { checkIdempotencyKey, checkTenantId } from '../../src/domain/validation.js';
import { PARITY } from '../helpers/fixture.js';

/**
 * The code `check` refuses `value` with, or null.
 * @param {(value: any) => unknown} check
 * @param {unknown} value
 */
function refusal(check, value) {
  try {
    check(value);
    return null;
  } catch (error) {
    assert.ok(error instanceof LedgerError, `a LedgerError, not ${error}`);
    return error.code;
  }
}

describe('hold ID derivation (ledger_db.ids)', () => {
  test('every case of the table, non-ASCII and astral keys included', () => {
    assert.ok(PARITY.hold_ids.length >= 10);
    assert.ok(PARITY.hold_ids.some((/** @type {any} */ c) => /[^\u0000-\u007f]/.test(c.idempotency_key)));
    for (const row of PARITY.hold_ids) {
      const holdId = deriveHoldId(row.tenant_id, row.idempotency_key);
      assert.equal(holdId, row.hold_id, `hold ID of ${JSON.stringify(row.idempotency_key)}`);
      assert.equal(holdWorkflowId(holdId), row.workflow_id);
      assert.equal(holdIdFromWorkflowId(row.workflow_id), holdId);
    }
  });

  test('a combining accent and its precomposed spelling are two keys, as in Python', () => {
    assert.notEqual(deriveHoldId('demo', 'e\u0301'), deriveHoldId('demo', '\u00e9'));
  });

  test('holdIdFromWorkflowId refuses another workflow ID', () => {
    assert.throws(() => holdIdFromWorkflowId('reconcile-1'), TypeError);
  });
});

describe('amount grammar (ledger_db.money.canonical_decimal)', () => {
  test('the canonical spelling or the same refusal, case by case', () => {
    for (const row of PARITY.amounts) {
      const code = refusal(checkAmount, row.amount);
      assert.equal(code, row.code, `refusal of ${JSON.stringify(row.amount)}`);
      if (row.code === null) {
        assert.equal(checkAmount(row.amount), row.canonical, `canonical ${JSON.stringify(row.amount)}`);
        assert.equal(canonicalAmount(row.amount), row.canonical);
      }
    }
  });

  test('numbers, bigints and null are refused with invalid_amount before anything is sent', () => {
    for (const value of [40, 40.5, 0.1, 10n, null, undefined, { amount: '1' }, ['1']]) {
      assert.equal(refusal(checkAmount, value), 'invalid_amount', String(value));
    }
  });

  test('text outside the grammar is hashed as it is (canonical_amount)', () => {
    assert.equal(canonicalAmount('1e5'), '1e5');
    assert.equal(canonicalAmount(null), null);
  });
});

describe('tenant IDs and idempotency keys (ledger_db.validation)', () => {
  test('check_tenant_id', () => {
    for (const row of PARITY.tenant_ids) {
      assert.equal(refusal(checkTenantId, row.tenant_id), row.code, JSON.stringify(row.tenant_id));
    }
  });

  test('check_idempotency_key: Python whitespace, code point lengths, controls, surrogates', () => {
    for (const row of PARITY.idempotency_keys) {
      assert.equal(refusal(checkIdempotencyKey, row.idempotency_key), row.code, JSON.stringify(row.idempotency_key));
    }
  });
});

describe('request hashes (workflows.models canonical_hash)', () => {
  test('freeze requests, meta with bigints, floats and non-ASCII keys included', () => {
    for (const row of PARITY.freeze_hashes) {
      assert.equal(freezeHash(row.wire), row.hash, `freeze under ${JSON.stringify(row.wire.idempotency_key)}`);
    }
  });

  test('two spellings of one amount are one request', () => {
    const [first, second] = PARITY.freeze_hashes;
    assert.equal(freezeHash(first.wire), freezeHash(second.wire));
  });

  test('capture requests', () => {
    for (const row of PARITY.capture_hashes) {
      assert.equal(captureHash(row.wire), row.hash);
    }
  });

  test('release requests', () => {
    for (const row of PARITY.release_hashes) {
      assert.equal(releaseHash(row.wire), row.hash);
    }
  });

  test("the canonical encoding is Python's json.dumps(sort_keys=True) of what it decodes", () => {
    for (const row of PARITY.python_json) {
      assert.equal(pythonJsonDumps(row.value), row.dumps);
    }
  });
});

describe('resolution conflicts (workflows.models.resolution_conflict)', () => {
  test('every phase, step, key and hash', () => {
    assert.ok(PARITY.resolution_conflicts.length >= 48);
    for (const row of PARITY.resolution_conflicts) {
      const state = { ...row, hold_id: 'h' };
      const conflict = resolutionConflict(state, row.step, row.idempotency_key, row.request_hash);
      assert.equal(conflict?.[0] ?? null, row.code, JSON.stringify(row));
    }
  });

  test('an ended hold answers a repeat, refuses the rest with the code Python gives', () => {
    for (const row of PARITY.resolution_conflicts) {
      const state = { ...row, hold_id: 'h' };
      const expected = row.code ?? (row.repeat ? null : 'hold_not_found');
      assert.equal(
        refusal(() => raiseResolutionConflict(state, row.step, row.idempotency_key, row.request_hash), null),
        expected,
        JSON.stringify(row),
      );
    }
  });
});
