/**
 * Delivering billing events to a subscriber's handler: once per event ID, in the order they
 * arrive, only the types asked for, only the subscribed tenant's. Both transports (JetStream and
 * the read API's WebSocket) hand each event they receive to one `EventDelivery`.
 *
 * An event counts as delivered once the handler has returned (or its promise resolved); a
 * handler that throws has not received it, and the transport brings it again (a JetStream
 * redelivery, a WebSocket resume from the last delivered sequence).
 */

import { RecentIds } from './dedupe.js';
import { LedgerError } from './errors.js';

/** @typedef {import('./records.js').BillingEvent} BillingEvent */

/**
 * @callback EventHandler
 * @param {BillingEvent} event
 * @returns {void | Promise<void>}
 */

/**
 * @callback ErrorHandler
 * @param {unknown} error
 * @returns {void}
 */

/**
 * @typedef {'delivered' | 'duplicate' | 'filtered'} DeliveryOutcome
 */

// An event type is one token of the subject billing.<tenant>.<type>.
const EVENT_TYPE = /^[A-Z][A-Z0-9_]*$/;

export const DEFAULT_DEDUPE_WINDOW = 10_000;

/** A message on an event stream that is no billing event: no redelivery will make it one. */
export class MalformedEventError extends TypeError {
  /** @param {string} message @param {unknown} [cause] */
  constructor(message, cause) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'MalformedEventError';
  }
}

/**
 * @param {unknown} types
 * @returns {string[] | null}  sorted, without repeats; null for every type
 */
export function checkEventTypes(types) {
  if (types === undefined || types === null) {
    return null;
  }
  if (!Array.isArray(types) || types.length === 0) {
    throw new LedgerError('invalid_entry', 'types must be a non-empty array of event types', {
      details: { field: 'types' },
    });
  }
  for (const type of types) {
    if (typeof type !== 'string' || !EVENT_TYPE.test(type)) {
      throw new LedgerError('invalid_entry', `not an event type: ${JSON.stringify(type)} (e.g. "INTENT_CREATED")`, {
        details: { field: 'types' },
      });
    }
  }
  return [...new Set(types)].sort();
}

/**
 * @param {unknown} value
 * @returns {value is BillingEvent}
 */
function isEvent(value) {
  if (typeof value !== 'object' || value === null) {
    return false;
  }
  const event = /** @type {Record<string, unknown>} */ (value);
  return typeof event.event_id === 'string' && typeof event.type === 'string' && typeof event.tenant_id === 'string';
}

export class EventDelivery {
  /**
   * @param {{tenantId: string, types: string[] | null, onEvent: EventHandler,
   *   dedupeWindow?: number}} options
   */
  constructor({ tenantId, types, onEvent, dedupeWindow = DEFAULT_DEDUPE_WINDOW }) {
    this.tenantId = tenantId;
    this.types = types === null ? null : new Set(types);
    this.onEvent = onEvent;
    this.seen = new RecentIds(dedupeWindow);
    /** How many events the handler received. */
    this.delivered = 0;
    /** How many arrived again after their delivery and were dropped. */
    this.duplicates = 0;
  }

  /**
   * Hands `value` to the handler unless it is a repeat, of another type or another tenant's.
   * Throws what the handler threw (the event is then not delivered), or a
   * `MalformedEventError` for a message that is no billing event.
   * @param {unknown} value
   * @returns {Promise<DeliveryOutcome>}
   */
  async deliver(value) {
    if (!isEvent(value)) {
      throw new MalformedEventError('a message on the event stream is not a billing event');
    }
    if (value.tenant_id !== this.tenantId || (this.types !== null && !this.types.has(value.type))) {
      return 'filtered';
    }
    if (this.seen.has(value.event_id)) {
      this.duplicates += 1;
      return 'duplicate';
    }
    await this.onEvent(value);
    this.seen.add(value.event_id);
    this.delivered += 1;
    return 'delivered';
  }
}

/**
 * A promise that settles once, whose rejection is never "unhandled" (a subscriber that never
 * looks at `sub.closed` must not crash the process), with its settle functions.
 * @returns {{promise: Promise<void>, resolve: () => void, reject: (error: unknown) => void}}
 */
export function settleOnce() {
  /** @type {() => void} */
  let resolve = () => {};
  /** @type {(error: unknown) => void} */
  let reject = () => {};
  const promise = new Promise((resolvePromise, rejectPromise) => {
    resolve = () => resolvePromise(undefined);
    reject = rejectPromise;
  });
  promise.catch(() => {});
  return { promise: /** @type {Promise<void>} */ (promise), resolve, reject };
}

/**
 * @typedef {object} Subscription
 * @property {'nats' | 'websocket'} transport
 * @property {() => Promise<void>} close  stops receiving; resolves once the handler's current
 *   call (if any) has finished
 * @property {Promise<void>} closed  resolves after `close()`; rejects if the subscription
 *   stopped by itself (a revoked API key, a deleted consumer)
 * @property {() => {delivered: number, duplicates: number}} stats  events handed to the
 *   handler, and repeats dropped
 * @property {string} [durableName]  (NATS) the durable consumer that keeps the position
 * @property {number | bigint} [lastSequence]  (WebSocket) the outbox sequence of the last
 *   event handled: pass it as `afterSequence` to resume elsewhere
 */
