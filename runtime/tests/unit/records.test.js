// The records handed out: amounts as decimal text whatever the wire carried, minor units
// beyond 2^53 exact, and the payload converter that keeps them so.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { decimalsOf, formatMinor } from '../../src/domain/money.js';
import { balanceFromWire, holdFromWire, holdStatusFromLedger, holdStatusFromState } from '../../src/domain/records.js';
import converter from '../../src/infrastructure/payload-converter.cjs';

const wireHold = {
  tenant_id: 'demo',
  hold_id: 'h-1',
  account_id: 'buyer',
  currency: 'USD',
  amount_minor: 4000,
  amount: '40.00',
  state: 'captured',
  reason: 'NEGOTIATION',
  expires_at: '2026-12-01T10:13:43.390491Z',
  created_at: '2026-12-01T09:58:43.390491Z',
  payee_account_id: 'seller',
  order_id: 'o-1',
  captured_minor: 2550,
  captured: '25.50',
  released_minor: 1450,
  released: '14.50',
  finalized: true,
  fee_minor: 25,
  resolved_at: '2026-12-01T09:58:43.472450Z',
  freeze_transaction_id: 't-1',
  resolve_transaction_id: 't-2',
  finalize_transaction_id: 't-3',
  meta: { env: 'prod' },
  replayed: false,
};

describe('holds', () => {
  test('from Temporal (minor units): the fee in the currency\'s decimals', () => {
    const hold = holdFromWire(wireHold);
    assert.equal(hold.amount, '40.00');
    assert.equal(hold.captured, '25.50');
    assert.equal(hold.released, '14.50');
    assert.equal(hold.fee, '0.25');
    assert.equal(hold.finalized, true);
    assert.equal(hold.replayed, false);
    assert.equal(holdFromWire(wireHold, { replayed: true }).replayed, true);
  });

  test('from the read API (decimal text only)', () => {
    const { amount_minor, captured_minor, released_minor, fee_minor, ...text } = wireHold;
    assert.deepEqual([amount_minor, captured_minor, released_minor, fee_minor], [4000, 2550, 1450, 25]);
    const hold = holdFromWire({ ...text, fee: '0.25' });
    assert.equal(hold.fee, '0.25');
    assert.equal(hold.captured, '25.50');
  });

  test('a fee beyond 2^53 minor units stays exact', () => {
    const hold = holdFromWire({ ...wireHold, currency: 'CREDIT', amount: '9223372036854775807', fee_minor: 9007199254740993n });
    assert.equal(hold.fee, '9007199254740993');
  });

  test('a status from the workflow state and from the ledger alone', () => {
    const status = holdStatusFromState({
      workflow_id: 'hold-h-1',
      hold_id: 'h-1',
      tenant_id: 'demo',
      account_id: 'buyer',
      phase: 'payout_failed',
      request_hash: 'x',
      hold: wireHold,
      resolution: 'capture',
      payout_error_code: 'account_closed',
      events_unpublished: 2,
      unknown_future_field: 1,
    });
    assert.equal(status.phase, 'payout_failed');
    assert.equal(status.final, false);
    assert.equal(status.payoutErrorCode, 'account_closed');
    assert.equal(status.eventsUnpublished, 2);
    assert.equal(status.hold?.amount, '40.00');
    const fromLedger = holdStatusFromLedger({ ...holdFromWire(wireHold), finalized: false });
    assert.equal(fromLedger.phase, 'finalizing');
    assert.equal(fromLedger.source, 'ledger');
    assert.equal(fromLedger.resolution, 'capture');
  });
});

describe('money text', () => {
  test('formatMinor and decimalsOf', () => {
    assert.equal(formatMinor(5, 2), '0.05');
    assert.equal(formatMinor(-1234, 2), '-12.34');
    assert.equal(formatMinor(9223372036854775807n, 6), '9223372036854.775807');
    assert.equal(formatMinor(7, 0), '7');
    assert.throws(() => formatMinor(0.5, 2), TypeError);
    assert.equal(decimalsOf('40.00'), 2);
    assert.equal(decimalsOf('3'), 0);
  });

  test('a balance', () => {
    const balance = balanceFromWire({
      tenant_id: 'demo',
      account_id: 'buyer',
      currency: 'USD',
      posted: '74.50',
      held: '0.00',
      available: '74.50',
      overdraft_limit: '0.00',
      journal_sequence: 8,
      as_of: null,
    });
    assert.deepEqual(balance, {
      tenantId: 'demo',
      accountId: 'buyer',
      currency: 'USD',
      posted: '74.50',
      held: '0.00',
      available: '74.50',
      overdraftLimit: '0.00',
      journalSequence: 8,
      asOf: null,
    });
  });
});

describe('the payload converter', () => {
  const { payloadConverter } = converter;

  test('json/plain both ways, integers beyond 2^53 as bigint', () => {
    const payload = payloadConverter.toPayload({ meta: { big: 2n ** 70n, small: 1 }, amount: '40.00' });
    assert.ok(payload);
    assert.equal(new TextDecoder().decode(payload.metadata?.encoding), 'json/plain');
    assert.equal(new TextDecoder().decode(payload.data), '{"meta":{"big":1180591620717411303424,"small":1},"amount":"40.00"}');
    assert.deepEqual(payloadConverter.fromPayload(payload), { meta: { big: 2n ** 70n, small: 1 }, amount: '40.00' });
  });

  test('undefined and bytes keep the SDK\'s own encodings', () => {
    const nothing = payloadConverter.toPayload(undefined);
    assert.equal(new TextDecoder().decode(nothing.metadata?.encoding), 'binary/null');
    const bytes = payloadConverter.toPayload(new Uint8Array([1, 2]));
    assert.equal(new TextDecoder().decode(bytes.metadata?.encoding), 'binary/plain');
  });
});
