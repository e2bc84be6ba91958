// Argument checks of every call, made before anything is sent: a ledger connected lazily to
// ports where nothing listens proves it (a call that reached the network would fail with a
// transport error instead of the expected code). Then the transport errors themselves.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ComputeLedger } from '../../src/domain/compute-ledger.js';
import { LedgerError, LedgerTransportError } from '../../src/domain/errors.js';
import { freePort } from '../helpers/stack.js';

/** @type {ComputeLedger} */
let ledger;
let deadPort = 0;

before(async () => {
  deadPort = await freePort();
  ledger = await ComputeLedger.connect({
    temporalAddress: `127.0.0.1:${deadPort}`,
    apiUrl: `http://127.0.0.1:${deadPort}`,
    apiKey: 'clk_000000000000_not-a-real-key',
    natsUrl: `nats://127.0.0.1:${deadPort}`,
    lazy: true,
    connectTimeoutMs: 1000,
    env: {},
  });
});

after(async () => {
  await ledger.close();
});

const freeze = {
  tenantId: 'demo',
  accountId: 'buyer',
  amount: '40.00',
  reason: 'NEGOTIATION',
  idempotencyKey: 'order-1',
  ttlSeconds: 900,
};

/**
 * @param {Promise<unknown>} promise
 * @param {string} code
 */
async function refused(promise, code) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof LedgerError, `a LedgerError, not ${error}`);
    assert.equal(error.code, code, error.message);
    return true;
  });
}

describe('freeze', () => {
  test('amounts are decimal text: a JS number is refused with invalid_amount', async () => {
    await refused(ledger.freeze({ ...freeze, amount: /** @type {any} */ (40) }), 'invalid_amount');
    await refused(ledger.freeze({ ...freeze, amount: /** @type {any} */ (40.5) }), 'invalid_amount');
    await refused(ledger.freeze({ ...freeze, amount: '1e3' }), 'invalid_amount');
    await refused(ledger.freeze({ ...freeze, amount: '-1' }), 'invalid_amount');
    await refused(ledger.freeze({ ...freeze, amount: '0.00' }), 'invalid_amount');
    await refused(ledger.freeze({ ...freeze, amount: '1'.repeat(65) }), 'invalid_amount');
  });

  test('the tenant and the key that name the workflow are checked first', async () => {
    await refused(ledger.freeze({ ...freeze, tenantId: 'with.dot' }), 'invalid_entry');
    await refused(ledger.freeze({ ...freeze, idempotencyKey: '  ' }), 'idempotency_key_invalid');
    await refused(ledger.freeze({ ...freeze, idempotencyKey: 'x'.repeat(256) }), 'idempotency_key_invalid');
    await refused(ledger.freeze({ ...freeze, idempotencyKey: 'a\nb' }), 'idempotency_key_invalid');
  });

  test('required options, unknown options and types', async () => {
    const { reason, ...withoutReason } = freeze;
    assert.equal(reason, 'NEGOTIATION');
    await refused(ledger.freeze(/** @type {any} */ (withoutReason)), 'invalid_entry');
    await refused(ledger.freeze(/** @type {any} */ ({ ...freeze, idempotencykey: 'typo' })), 'invalid_entry');
    await refused(ledger.freeze({ ...freeze, ttlSeconds: /** @type {any} */ ('900') }), 'ttl_out_of_range');
    await refused(ledger.freeze({ ...freeze, ttlSeconds: 1.5 }), 'ttl_out_of_range');
    await refused(ledger.freeze({ ...freeze, feeBps: /** @type {any} */ ('250') }), 'invalid_entry');
    await refused(ledger.freeze({ ...freeze, accountId: /** @type {any} */ (7) }), 'invalid_entry');
    await refused(ledger.freeze({ ...freeze, reason: 'lone \ud800' }), 'invalid_entry');
    await refused(ledger.freeze(/** @type {any} */ (null)), 'invalid_entry');
  });

  test('meta is plain JSON', async () => {
    await refused(ledger.freeze({ ...freeze, meta: { when: new Date() } }), 'invalid_entry');
    await refused(ledger.freeze({ ...freeze, meta: { ratio: Number.NaN } }), 'invalid_entry');
    await refused(ledger.freeze({ ...freeze, meta: { values: new Map() } }), 'invalid_entry');
    await refused(ledger.freeze({ ...freeze, meta: /** @type {any} */ ([1, 2]) }), 'invalid_entry');
  });
});

describe('captures, releases, signals, extensions', () => {
  const capture = { tenantId: 'demo', holdId: 'h', orderId: 'o', idempotencyKey: 'k' };

  test('captureHold and confirmOrder: amounts as text, required fields', async () => {
    await refused(ledger.captureHold({ ...capture, amount: /** @type {any} */ (25.5) }), 'invalid_amount');
    await refused(ledger.confirmOrder({ ...capture, amount: '25,50' }), 'invalid_amount');
    const { orderId, ...withoutOrder } = capture;
    assert.equal(orderId, 'o');
    await refused(ledger.captureHold(/** @type {any} */ (withoutOrder)), 'invalid_entry');
    await refused(ledger.captureHold({ ...capture, holdId: '' }), 'hold_not_found');
  });

  test('releaseHold and cancelOrder', async () => {
    await refused(ledger.releaseHold({ tenantId: 'demo', holdId: 'h', idempotencyKey: '' }), 'idempotency_key_invalid');
    await refused(ledger.cancelOrder({ tenantId: 'bad tenant', holdId: 'h' }), 'invalid_entry');
  });

  test('extendHold takes exactly one of ttlSeconds and expiresAt', async () => {
    const extend = { tenantId: 'demo', holdId: 'h', idempotencyKey: 'x' };
    await refused(ledger.extendHold(extend), 'invalid_entry');
    await refused(ledger.extendHold({ ...extend, ttlSeconds: 60, expiresAt: new Date() }), 'invalid_entry');
    await refused(ledger.extendHold({ ...extend, expiresAt: new Date(Number.NaN) }), 'invalid_entry');
  });
});

describe('reads and subscriptions', () => {
  test('listLedgerEntries and getBalance check their options', async () => {
    await refused(ledger.listLedgerEntries({ tenantId: 'demo', accountId: 'buyer', limit: /** @type {any} */ ('10') }), 'invalid_entry');
    await refused(ledger.getBalance(/** @type {any} */ ({ tenantId: 'demo' })), 'invalid_entry');
  });

  test('a tenant without a read API key is unauthenticated before any request', async () => {
    const keyed = await ComputeLedger.connect({
      temporalAddress: `127.0.0.1:${deadPort}`,
      apiUrl: `http://127.0.0.1:${deadPort}`,
      apiKey: { other: 'clk_x' },
      lazy: true,
      env: {},
    });
    try {
      await refused(keyed.getBalance({ tenantId: 'demo', accountId: 'buyer' }), 'unauthenticated');
    } finally {
      await keyed.close();
    }
  });

  test('subscribeBillingEvents: types, afterSequence with NATS, the handler', async () => {
    const handler = () => {};
    await refused(ledger.subscribeBillingEvents({ tenantId: 'demo', types: ['intent_created'] }, handler), 'invalid_entry');
    await refused(ledger.subscribeBillingEvents({ tenantId: 'demo', types: [] }, handler), 'invalid_entry');
    await refused(ledger.subscribeBillingEvents({ tenantId: 'demo', afterSequence: 5 }, handler), 'invalid_entry');
    await refused(ledger.subscribeBillingEvents({ tenantId: 'demo', afterSequence: -1, transport: 'websocket' }, handler), 'invalid_entry');
    await refused(ledger.subscribeBillingEvents({ tenantId: 'demo', durableName: 'a.b' }, handler), 'invalid_entry');
    await refused(ledger.subscribeBillingEvents({ tenantId: 'demo' }, /** @type {any} */ (undefined)), 'invalid_entry');
  });
});

describe('transport errors', () => {
  test('a hold operation with Temporal unreachable: temporal_unavailable, a LedgerTransportError', async () => {
    for (const call of [
      () => ledger.freeze(freeze),
      () => ledger.getHold({ tenantId: 'demo', holdId: 'h' }),
      () => ledger.waitForHold({ tenantId: 'demo', holdId: 'h' }),
    ]) {
      await assert.rejects(call(), (error) => {
        assert.ok(error instanceof LedgerTransportError, String(error));
        assert.equal(error.code, 'temporal_unavailable');
        return true;
      });
    }
  });

  test('connect() without lazy fails at once when Temporal is unreachable', async () => {
    await assert.rejects(
      ComputeLedger.connect({ temporalAddress: `127.0.0.1:${deadPort}`, connectTimeoutMs: 1000, env: {} }),
      (error) => error instanceof LedgerTransportError && error.code === 'temporal_unavailable',
    );
  });

  test('a read with the read API unreachable: read_api_unavailable', async () => {
    await assert.rejects(
      ledger.getBalance({ tenantId: 'demo', accountId: 'buyer' }),
      (error) => error instanceof LedgerTransportError && error.code === 'read_api_unavailable',
    );
  });

  test('a subscription with NATS unreachable: nats_unavailable', async () => {
    await assert.rejects(
      ledger.subscribeBillingEvents({ tenantId: 'demo' }, () => {}),
      (error) => error instanceof LedgerTransportError && error.code === 'nats_unavailable',
    );
  });

  test('a WebSocket subscription with the read API unreachable: read_api_unavailable', async () => {
    await assert.rejects(
      ledger.subscribeBillingEvents({ tenantId: 'demo', transport: 'websocket' }, () => {}),
      (error) => error instanceof LedgerTransportError && error.code === 'read_api_unavailable',
    );
  });
});
