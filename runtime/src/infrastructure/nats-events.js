/**
 * Billing events from NATS JetStream: a durable pull consumer on the tenant's subjects.
 *
 * The Python side publishes each event on `<prefix>.<tenant>.<type>` in stream `BILLING` with
 * `Nats-Msg-Id` = the event ID (`activities/events.py`). A subscriber here:
 *
 * - is a *durable* consumer: the server keeps its position, so a subscriber that stops and
 *   comes back (same `durableName`) receives what it missed and nothing it acknowledged.
 *   Processes that share a durable name share its deliveries (each event goes to one of them,
 *   as instances of one service should); another service takes another name;
 * - filters on the server: `<prefix>.<tenant>.>` for every type, or one subject per type
 *   (`filter_subjects` from NATS 2.10; on an older server several types are filtered here);
 * - acknowledges an event once the handler has returned, and asks for it again (a `nak` with a
 *   growing delay) when the handler threw; a long handler keeps its message with `working()`;
 * - drops repeats by event ID (the relay may publish an event again after JetStream's
 *   duplicate window) in bounded memory.
 */

import { createHash } from 'node:crypto';

import { AckPolicy, DeliverPolicy, connect, nanos } from 'nats';

import { CONTRACT } from '../domain/contract.js';
import { MalformedEventError, settleOnce } from '../domain/delivery.js';
import { LedgerError, LedgerTransportError } from '../domain/errors.js';
import json from './json.cjs';

const { parseJson } = json;

/** @typedef {import('../domain/delivery.js').EventDelivery} EventDelivery */
/** @typedef {import('../domain/delivery.js').Subscription} Subscription */
/** @typedef {import('../domain/delivery.js').ErrorHandler} ErrorHandler */
/** @typedef {import('nats').NatsConnection} NatsConnection */
/** @typedef {import('nats').JsMsg} JsMsg */

const ACK_WAIT_MS = 30_000;
const REDELIVERY_DELAY_MS_MAX = 30_000;
const CONSUME_BATCH = 64;
const STREAM_NOT_FOUND = 10059;
const CONSUMER_NOT_FOUND = 10014;

/**
 * A tenant as one subject token (Python's `_subject_token`: tenant IDs never hold '.' or '%',
 * but the escaping is the publisher's, so it is the subscriber's too).
 * @param {string} text
 */
export function subjectToken(text) {
  return text.replaceAll('%', '%25').replaceAll('.', '%2E');
}

/**
 * The durable name a subscription takes when none is given: one per tenant and set of types.
 * @param {string} tenantId
 * @param {string[] | null} types
 */
export function defaultDurableName(tenantId, types) {
  const selection = types === null ? 'all' : createHash('sha256').update(types.join(',')).digest('hex').slice(0, 12);
  return `compute-ledger-runtime_${tenantId}_${selection}`;
}

/**
 * @param {unknown} error
 * @param {number} code
 */
function isApiError(error, code) {
  return (
    typeof error === 'object' &&
    error !== null &&
    'api_error' in error &&
    /** @type {{api_error?: {err_code?: number}}} */ (error).api_error?.err_code === code
  );
}

/**
 * @param {string | undefined} version
 */
function supportsFilterSubjects(version) {
  const [major = 0, minor = 0] = (version ?? '').split('.').map(Number);
  return major > 2 || (major === 2 && minor >= 10);
}

/**
 * @param {unknown} error
 * @param {string} what
 */
function transportError(error, what) {
  return new LedgerTransportError('nats_unavailable', `${what}: ${error instanceof Error ? error.message : error}`, {
    cause: error,
  });
}

/** One NATS connection per ledger client, opened when the first subscription needs it. */
export class NatsEvents {
  /**
   * @param {{url: string, stream: string, subjectPrefix: string}} settings
   */
  constructor(settings) {
    this.settings = settings;
    /** @type {Promise<NatsConnection> | null} */
    this.connecting = null;
  }

  /** @returns {Promise<NatsConnection>} */
  connection() {
    if (this.connecting === null) {
      this.connecting = connect({
        servers: this.settings.url,
        name: 'compute-ledger-runtime',
        maxReconnectAttempts: -1,
        reconnectTimeWait: 1000,
      }).catch((error) => {
        this.connecting = null;
        throw transportError(error, `NATS is unreachable at ${this.settings.url}`);
      });
    }
    return this.connecting;
  }

  async close() {
    const connecting = this.connecting;
    this.connecting = null;
    if (connecting !== null) {
      const connection = await connecting.catch(() => null);
      await connection?.drain().catch(() => connection.close());
    }
  }

  /**
   * The stream, created as the Python publisher creates it when nothing was published yet.
   * @param {import('nats').JetStreamManager} manager
   */
  async ensureStream(manager) {
    const { stream, subjectPrefix } = this.settings;
    try {
      await manager.streams.info(stream);
      return;
    } catch (error) {
      if (!isApiError(error, STREAM_NOT_FOUND)) {
        throw error;
      }
    }
    try {
      await manager.streams.add({
        name: stream,
        subjects: [`${subjectPrefix}.>`],
        duplicate_window: nanos(CONTRACT.nats.duplicate_window_seconds * 1000),
      });
    } catch (error) {
      // Another process may have created it a moment ago; only then is this fine.
      await manager.streams.info(stream).catch(() => {
        throw error;
      });
    }
  }

  /**
   * @param {{tenantId: string, types: string[] | null, durableName: string,
   *   deliverPolicy: 'all' | 'new', delivery: EventDelivery, onError: ErrorHandler}} options
   * @returns {Promise<Subscription>}
   */
  async subscribe({ tenantId, types, durableName, deliverPolicy, delivery, onError }) {
    const connection = await this.connection();
    const { stream, subjectPrefix } = this.settings;
    const tenantSubjects = `${subjectPrefix}.${subjectToken(tenantId)}.>`;
    /** @type {{filter_subject?: string, filter_subjects?: string[]}} */
    let filter = { filter_subject: tenantSubjects };
    if (types !== null && types.length === 1) {
      filter = { filter_subject: `${subjectPrefix}.${subjectToken(tenantId)}.${types[0]}` };
    } else if (types !== null && supportsFilterSubjects(connection.info?.version)) {
      filter = { filter_subjects: types.map((type) => `${subjectPrefix}.${subjectToken(tenantId)}.${type}`) };
    }
    let messages;
    try {
      const manager = await connection.jetstreamManager();
      await this.ensureStream(manager);
      const description = `compute-ledger runtime: tenant ${tenantId}, types ${types === null ? 'all' : types.join(',')}`;
      await ensureConsumer(manager, stream, durableName, filter, description, deliverPolicy);
      const consumer = await connection.jetstream().consumers.get(stream, durableName);
      messages = await consumer.consume({ max_messages: CONSUME_BATCH });
    } catch (error) {
      if (error instanceof LedgerError) {
        throw error;
      }
      throw transportError(error, `cannot consume ${stream}/${durableName}`);
    }
    const closed = settleOnce();
    let closing = false;
    const loop = (async () => {
      for await (const message of messages) {
        await handle(message, delivery, onError);
      }
    })().then(
      () => {
        if (closing) {
          closed.resolve();
        } else {
          const error = new LedgerTransportError('nats_unavailable', `the consumer ${durableName} stopped`);
          onError(error);
          closed.reject(error);
        }
      },
      (error) => {
        const failure = transportError(error, `the consumer ${durableName} failed`);
        onError(failure);
        closed.reject(failure);
      },
    );
    return {
      transport: 'nats',
      durableName,
      async close() {
        closing = true;
        messages.stop();
        await loop;
        await closed.promise.catch(() => {});
      },
      closed: closed.promise,
      stats: () => ({ delivered: delivery.delivered, duplicates: delivery.duplicates }),
    };
  }
}

/**
 * The durable consumer, created on first use; an existing one must be the same subscription:
 * the same subjects and the same tenant and types (its description; types may be filtered
 * here rather than by subject), since a durable name reused for other types would acknowledge
 * for one subscription what the other never saw.
 * @param {import('nats').JetStreamManager} manager
 * @param {string} stream
 * @param {string} durableName
 * @param {{filter_subject?: string, filter_subjects?: string[]}} filter
 * @param {string} description
 * @param {'all' | 'new'} deliverPolicy
 */
async function ensureConsumer(manager, stream, durableName, filter, description, deliverPolicy) {
  let info = null;
  try {
    info = await manager.consumers.info(stream, durableName);
  } catch (error) {
    if (!isApiError(error, CONSUMER_NOT_FOUND)) {
      throw error;
    }
  }
  const wanted = [filter.filter_subject ?? '', ...(filter.filter_subjects ?? [])].filter(Boolean).sort();
  if (info !== null) {
    const config = info.config;
    const existing = [config.filter_subject ?? '', ...(config.filter_subjects ?? [])].filter(Boolean).sort();
    if (existing.join(' ') !== wanted.join(' ') || (config.description ?? '') !== description) {
      throw new LedgerError(
        'invalid_entry',
        `the durable consumer ${durableName} exists for another subscription ` +
          `(${config.description ?? existing.join(', ')}); give this subscription another durableName`,
        { details: { field: 'durableName' } },
      );
    }
    return;
  }
  await manager.consumers.add(stream, {
    durable_name: durableName,
    description,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: deliverPolicy === 'new' ? DeliverPolicy.New : DeliverPolicy.All,
    ack_wait: nanos(ACK_WAIT_MS),
    ...filter,
  });
}

/**
 * One message: delivered, then acknowledged; a repeat or another type acknowledged at once; a
 * failed handler's message asked for again after a delay that grows with each redelivery.
 * @param {JsMsg} message
 * @param {EventDelivery} delivery
 * @param {ErrorHandler} onError
 */
async function handle(message, delivery, onError) {
  const keepAlive = setInterval(() => message.working(), ACK_WAIT_MS / 2);
  try {
    let event;
    try {
      event = parseJson(message.string());
    } catch (error) {
      throw new MalformedEventError(`a message on ${message.subject} is not JSON`, error);
    }
    await delivery.deliver(event);
    message.ack();
  } catch (error) {
    onError(error);
    if (error instanceof MalformedEventError) {
      // No redelivery makes it readable: JetStream is told to stop sending it.
      message.term();
      return;
    }
    const attempt = message.info.redeliveryCount;
    message.nak(Math.min(REDELIVERY_DELAY_MS_MAX, 250 * 2 ** Math.min(attempt, 10)));
  } finally {
    clearInterval(keepAlive);
  }
}
