// Delivery to a subscriber's handler: once per event ID in bounded memory, only the types and
// the tenant asked for, and an event whose handler threw is not counted as received.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { RecentIds } from '../../src/domain/dedupe.js';
import { EventDelivery, MalformedEventError, checkEventTypes, settleOnce } from '../../src/domain/delivery.js';
import { defaultDurableName, subjectToken } from '../../src/infrastructure/nats-events.js';

/**
 * @param {string} id
 * @param {string} [type]
 * @param {string} [tenant]
 */
const event = (id, type = 'INTENT_CREATED', tenant = 'demo') => ({
  event_id: id,
  type,
  version: '1.0',
  tenant_id: tenant,
  occurred_at: '2026-12-01T09:58:43.390491Z',
  hold_id: null,
  order_id: null,
  account_id: null,
  transaction_id: null,
  payload: {},
});

describe('RecentIds', () => {
  test('remembers the most recent IDs, forgets the oldest first', () => {
    const ids = new RecentIds(3);
    for (const id of ['a', 'b', 'c', 'a', 'd']) {
      ids.add(id);
    }
    assert.equal(ids.size, 3);
    assert.ok(!ids.has('a'));
    assert.ok(ids.has('b') && ids.has('c') && ids.has('d'));
    assert.throws(() => new RecentIds(0), RangeError);
  });

  test('stays bounded over a long run', () => {
    const ids = new RecentIds(1000);
    for (let index = 0; index < 50_000; index += 1) {
      ids.add(`event-${index}`);
    }
    assert.equal(ids.size, 1000);
    assert.ok(ids.has('event-49999') && !ids.has('event-48999'));
  });
});

describe('EventDelivery', () => {
  test('each event ID once; other types and tenants filtered', async () => {
    /** @type {string[]} */
    const received = [];
    const delivery = new EventDelivery({
      tenantId: 'demo',
      types: ['INTENT_CREATED', 'PAYMENT_SUCCEEDED'],
      onEvent: (e) => {
        received.push(e.event_id);
      },
    });
    assert.equal(await delivery.deliver(event('1')), 'delivered');
    assert.equal(await delivery.deliver(event('1')), 'duplicate');
    assert.equal(await delivery.deliver(event('2', 'ORDER_CREATED')), 'filtered');
    assert.equal(await delivery.deliver(event('3', 'INTENT_CREATED', 'other')), 'filtered');
    assert.equal(await delivery.deliver(event('4', 'PAYMENT_SUCCEEDED')), 'delivered');
    assert.deepEqual(received, ['1', '4']);
    assert.equal(delivery.delivered, 2);
    assert.equal(delivery.duplicates, 1);
  });

  test('a handler that throws has not received the event: it is delivered again', async () => {
    let attempts = 0;
    const delivery = new EventDelivery({
      tenantId: 'demo',
      types: null,
      onEvent: async () => {
        attempts += 1;
        if (attempts === 1) {
          throw new Error('handler down');
        }
      },
    });
    await assert.rejects(delivery.deliver(event('1')), /handler down/);
    assert.equal(await delivery.deliver(event('1')), 'delivered');
    assert.equal(await delivery.deliver(event('1')), 'duplicate');
    assert.equal(attempts, 2);
  });

  test('a message that is no event is malformed', async () => {
    const delivery = new EventDelivery({ tenantId: 'demo', types: null, onEvent: () => {} });
    await assert.rejects(delivery.deliver({ hello: 'world' }), MalformedEventError);
  });

  test('types are subject tokens, sorted and unique', () => {
    assert.deepEqual(checkEventTypes(['PAYMENT_SUCCEEDED', 'INTENT_CREATED', 'INTENT_CREATED']), [
      'INTENT_CREATED',
      'PAYMENT_SUCCEEDED',
    ]);
    assert.equal(checkEventTypes(undefined), null);
    assert.throws(() => checkEventTypes(['billing.>']));
  });
});

describe('subjects and durable names', () => {
  test('a tenant is one subject token, escaped as the Python publisher escapes it', () => {
    assert.equal(subjectToken('demo'), 'demo');
    assert.equal(subjectToken('a.b%c'), 'a%2Eb%25c');
  });

  test('the default durable name is stable per tenant and set of types', () => {
    assert.equal(defaultDurableName('demo', null), 'compute-ledger-runtime_demo_all');
    const name = defaultDurableName('demo', ['INTENT_CREATED']);
    assert.equal(name, defaultDurableName('demo', ['INTENT_CREATED']));
    assert.notEqual(name, defaultDurableName('demo', ['ORDER_CREATED']));
    assert.match(name, /^[A-Za-z0-9_-]+$/);
  });

  test("a subscription's closed promise never rejects unhandled", async () => {
    const closed = settleOnce();
    closed.reject(new Error('revoked'));
    await assert.rejects(closed.promise, /revoked/);
  });
});
