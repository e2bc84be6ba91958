// The two error classes and the mapping of what Temporal and the read API answer to them.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';

import {
  ERROR_CODES,
  LEDGER_ERROR_CODES,
  LedgerError,
  LedgerTransportError,
  errorCodeInfo,
  isLedgerError,
} from '../../src/domain/errors.js';
import { answerOf } from '../../src/infrastructure/read-api.js';
import { ledgerErrorFrom, mapTemporalError } from '../../src/infrastructure/temporal.js';

const generated = JSON.parse(readFileSync(new URL('../../src/generated/error-codes.json', import.meta.url), 'utf8'));

/**
 * A gRPC error as @grpc/grpc-js makes them.
 * @param {number} code
 * @param {string} details
 */
function grpcError(code, details) {
  return Object.assign(new Error(`${code} ${details}`), { code, details, metadata: {} });
}

describe('the stable codes', () => {
  test('are the generated ones: every ledger_db code and every face code', () => {
    assert.deepEqual([...ERROR_CODES], Object.keys(generated.codes).sort());
    assert.deepEqual([...LEDGER_ERROR_CODES], [...generated.ledger_codes].sort());
    for (const code of ['insufficient_funds', 'hold_expired', 'idempotency_key_reused', 'capture_exceeds_hold']) {
      assert.ok(LEDGER_ERROR_CODES.includes(code), code);
    }
    assert.ok(ERROR_CODES.includes('unauthenticated'));
  });

  test('carry the read API status of their code', () => {
    assert.equal(errorCodeInfo('hold_not_found')?.http_status, 404);
    assert.equal(new LedgerError('insufficient_funds', 'no money').httpStatus, 422);
    assert.equal(errorCodeInfo('no_such_code'), undefined);
  });

  test('a LedgerError has its code, message and details, and the wire form', () => {
    const error = new LedgerError('account_not_found', "account 'x' not found", { details: { account_id: 'x' } });
    assert.ok(error instanceof Error);
    assert.equal(error.name, 'LedgerError');
    assert.equal(error.code, 'account_not_found');
    assert.equal(error.known, true);
    assert.equal(error.retryable, false);
    assert.deepEqual(error.toJSON(), { code: 'account_not_found', message: "account 'x' not found", details: { account_id: 'x' } });
    assert.ok(isLedgerError(error, 'account_not_found'));
    assert.ok(!isLedgerError(error, 'hold_not_found'));
    assert.ok(!isLedgerError(new Error('x')));
  });

  test('ledger_unavailable may be sent again; transport errors too, and are no LedgerError', () => {
    assert.equal(new LedgerError('ledger_unavailable', 'later').retryable, true);
    const transport = new LedgerTransportError('temporal_unavailable', 'down');
    assert.equal(transport.retryable, true);
    assert.ok(!(transport instanceof LedgerError));
  });
});

describe('Temporal failures', () => {
  test('an update refused by the workflow becomes a LedgerError with the failure type as code', () => {
    const failure = ApplicationFailure.create({ type: 'insufficient_funds', message: 'available 1.00 < 40.00', nonRetryable: true });
    const mapped = mapTemporalError(new WorkflowUpdateFailedError('Workflow Update failed', failure));
    assert.ok(mapped instanceof LedgerError);
    assert.equal(mapped.code, 'insufficient_funds');
    assert.equal(mapped.message, 'available 1.00 < 40.00');
  });

  test("an activity's details (LedgerError.to_dict) cross over", () => {
    const failure = ApplicationFailure.create({
      type: 'account_not_found',
      message: 'nope',
      nonRetryable: true,
      details: [{ code: 'account_not_found', message: 'nope', details: { account_id: 'ghost' } }],
    });
    assert.deepEqual(ledgerErrorFrom(failure)?.details, { account_id: 'ghost' });
  });

  test('a failed workflow carries its code down the cause chain', () => {
    const failure = ApplicationFailure.create({ type: 'account_closed', message: 'closed', nonRetryable: true });
    const error = new WorkflowFailedError('Workflow execution failed', failure, 'NON_RETRYABLE_FAILURE');
    assert.equal(ledgerErrorFrom(error)?.code, 'account_closed');
  });

  test("the SDKs' own failure types are no ledger codes", () => {
    const failure = ApplicationFailure.create({ type: 'ValueError', message: 'bug' });
    const error = new WorkflowUpdateFailedError('Workflow Update failed', failure);
    assert.equal(ledgerErrorFrom(error), null);
    assert.equal(mapTemporalError(error), error);
    const cancelled = new WorkflowFailedError('cancelled', new CancelledFailure('x'), 'NON_RETRYABLE_FAILURE');
    assert.equal(mapTemporalError(cancelled), cancelled);
  });

  test('an unreachable server is a transport error, a NOT_FOUND is not', () => {
    const unavailable = mapTemporalError(grpcError(14, 'No connection established'));
    assert.ok(unavailable instanceof LedgerTransportError);
    assert.equal(unavailable.code, 'temporal_unavailable');
    const notFound = grpcError(5, 'workflow not found');
    assert.equal(mapTemporalError(notFound), notFound);
  });
});

describe('read API answers', () => {
  test('a 2xx body is parsed losslessly', () => {
    assert.deepEqual(answerOf(200, '{"journal_sequence": 9223372036854775807, "n": 1}', 'GET /x'), {
      journal_sequence: 9223372036854775807n,
      n: 1,
    });
  });

  test("an error body below 500 is the ledger's LedgerError with its status", () => {
    const body = '{"error":{"code":"account_not_found","message":"account \'x\' not found","details":{"account_id":"x"}}}';
    assert.throws(
      () => answerOf(404, body, 'GET /x'),
      (error) =>
        error instanceof LedgerError &&
        error.code === 'account_not_found' &&
        error.httpStatus === 404 &&
        error.details.account_id === 'x',
    );
    assert.throws(
      () => answerOf(401, '{"error":{"code":"unauthenticated","message":"no key"}}', 'GET /x'),
      (error) => error instanceof LedgerError && error.code === 'unauthenticated',
    );
  });

  test('a 5xx, or a body that is not the API\'s, is a transport error', () => {
    assert.throws(
      () => answerOf(503, '{"error":{"code":"database_unavailable","message":"down"}}', 'GET /x'),
      (error) => error instanceof LedgerTransportError && error.code === 'database_unavailable' && error.httpStatus === 503,
    );
    assert.throws(
      () => answerOf(502, '<html>Bad Gateway</html>', 'GET /x'),
      (error) => error instanceof LedgerTransportError && error.code === 'read_api_unavailable',
    );
    assert.throws(
      () => answerOf(404, '{"detail": "Not Found"}', 'GET /x'),
      (error) => error instanceof LedgerTransportError && error.httpStatus === 404,
    );
  });
});
