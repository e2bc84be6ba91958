/**
 * Billing events from the read API's WebSocket stream (`/v1/events/stream?after=SEQ`), for
 * when there is no NATS: the server pushes the tenant's events in the ledger's order, each
 * with its outbox `sequence`.
 *
 * The subscriber remembers the sequence of the last event it handled (or skipped: another type,
 * a repeat) and, after any disconnect, connects again with `after=` that sequence, waiting a
 * little longer after each failed attempt (a server restart closes streams with 1012, a slow
 * client is closed with 1013, a network loss with 1006). A handler that throws has not received
 * its event: the subscriber reconnects from the last handled sequence, so the event comes
 * again. A revoked key (1008) or a refused handshake (401, 400) ends the subscription.
 *
 * The socket is paused while many received events wait for the handler, so that a slow handler
 * never buffers without bound (the server then closes with 1013, and the resume picks up).
 */

import WebSocket from 'ws';

import { MalformedEventError, settleOnce } from '../domain/delivery.js';
import { LedgerError, LedgerTransportError } from '../domain/errors.js';
import json from './json.cjs';
import { answerOf } from './read-api.js';

const { parseJson } = json;

/** @typedef {import('../domain/delivery.js').EventDelivery} EventDelivery */
/** @typedef {import('../domain/delivery.js').Subscription} Subscription */
/** @typedef {import('../domain/delivery.js').ErrorHandler} ErrorHandler */
/** @typedef {import('./read-api.js').ReadApi} ReadApi */

/**
 * @typedef {object} ReconnectOptions
 * @property {number} [initialDelayMs]  the wait before the first reconnection (default 200)
 * @property {number} [maxDelayMs]  the longest wait between two attempts (default 10 000)
 */

const SUBPROTOCOL = 'compute-ledger.v1';
const HANDSHAKE_TIMEOUT_MS = 10_000;
// Received events waiting for the handler: above the first number the socket is paused, below
// the second it reads again.
const QUEUE_PAUSE_AT = 256;
const QUEUE_RESUME_AT = 64;

/**
 * @param {number} ms
 * @param {AbortSignal} signal
 */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve(undefined);
      },
      { once: true },
    );
  });
}

export class WebSocketEvents {
  /**
   * @param {{api: ReadApi, tenantId: string, afterSequence: number | bigint,
   *   delivery: EventDelivery, onError: ErrorHandler, reconnect?: ReconnectOptions}} options
   */
  constructor({ api, tenantId, afterSequence, delivery, onError, reconnect = {} }) {
    this.api = api;
    this.tenantId = tenantId;
    /** The sequence of the last event handled or skipped: where a reconnection resumes. */
    this.lastSequence = afterSequence;
    this.delivery = delivery;
    this.onError = onError;
    this.initialDelayMs = reconnect.initialDelayMs ?? 200;
    this.maxDelayMs = reconnect.maxDelayMs ?? 10_000;
    /** @type {WebSocket | null} */
    this.socket = null;
    /** @type {string[]} */
    this.queue = [];
    /** @type {Promise<void> | null} */
    this.pumping = null;
    // Set when a handler failed: what still arrives on the old socket is ignored, since the
    // reconnection resumes after the last event handled.
    this.resuming = false;
    this.stopping = new AbortController();
    this.closed = settleOnce();
    this.reconnects = 0;
  }

  /**
   * Connects for the first time; a refused handshake or an unreachable API is thrown here.
   * @returns {Promise<Subscription>}
   */
  async start() {
    this.attach(await this.open());
    const events = this;
    return {
      transport: 'websocket',
      close: () => this.close(),
      closed: this.closed.promise,
      stats: () => ({ delivered: this.delivery.delivered, duplicates: this.delivery.duplicates }),
      get lastSequence() {
        return events.lastSequence;
      },
    };
  }

  /** @returns {Promise<WebSocket>} */
  open() {
    const url = this.api.webSocketUrl('/v1/events/stream', { after: this.lastSequence });
    const key = this.api.keyFor(this.tenantId);
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, [SUBPROTOCOL], {
        headers: { Authorization: `Bearer ${key}` },
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      });
      socket.once('unexpected-response', (_request, response) => {
        /** @type {Buffer[]} */
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => {
          socket.terminate();
          reject(handshakeError(response.statusCode ?? 0, Buffer.concat(chunks).toString('utf8')));
        });
        response.on('error', (error) => reject(unreachable(this.api.url, error)));
      });
      socket.once('open', () => {
        socket.removeAllListeners('error');
        resolve(socket);
      });
      socket.once('error', (error) => reject(unreachable(this.api.url, error)));
    });
  }

  /** @param {WebSocket} socket */
  attach(socket) {
    this.socket = socket;
    this.resuming = false;
    socket.on('message', (data, isBinary) => {
      if (socket !== this.socket || this.resuming) {
        return;
      }
      if (isBinary) {
        this.onError(new MalformedEventError('the event stream sent a binary message'));
        return;
      }
      this.queue.push(data.toString());
      if (this.queue.length >= QUEUE_PAUSE_AT) {
        socket.pause();
      }
      this.pump();
    });
    socket.on('error', (error) => this.onError(unreachable(this.api.url, error)));
    socket.on('close', (code, reason) => this.lost(socket, code, reason.toString()));
  }

  pump() {
    if (this.pumping === null) {
      this.pumping = this.drain().finally(() => {
        this.pumping = null;
      });
    }
    return this.pumping;
  }

  async drain() {
    while (this.queue.length > 0 && !this.stopping.signal.aborted) {
      const text = /** @type {string} */ (this.queue.shift());
      if (this.queue.length <= QUEUE_RESUME_AT && this.socket?.isPaused) {
        this.socket.resume();
      }
      await this.handle(text);
    }
  }

  /** @param {string} text */
  async handle(text) {
    /** @type {unknown} */
    let event;
    try {
      event = parseJson(text);
      await this.delivery.deliver(event);
    } catch (error) {
      this.onError(error);
      if (!(error instanceof MalformedEventError) && !(error instanceof SyntaxError)) {
        // The handler did not take this event: resume from the last one it took.
        this.resuming = true;
        this.queue.length = 0;
        this.socket?.close(1000, 'the handler failed: resuming');
        return;
      }
    }
    const sequence = /** @type {{sequence?: unknown}} */ (event ?? {}).sequence;
    if (typeof sequence === 'number' || typeof sequence === 'bigint') {
      this.lastSequence = sequence;
    }
  }

  /**
   * The socket closed: the end (1008, or `close()`), or a reconnection after a pause.
   * @param {WebSocket} socket
   * @param {number} code
   * @param {string} reason
   */
  async lost(socket, code, reason) {
    if (socket !== this.socket || this.stopping.signal.aborted) {
      return;
    }
    if (code === 1008) {
      this.fail(new LedgerError('unauthenticated', `the event stream was closed: ${reason || 'policy violation'} (1008)`));
      return;
    }
    // The events already received are valid: hand them over before resuming after the last.
    await this.pump();
    let delayMs = this.initialDelayMs;
    while (!this.stopping.signal.aborted) {
      await sleep(delayMs * (0.5 + Math.random() / 2), this.stopping.signal);
      if (this.stopping.signal.aborted) {
        return;
      }
      try {
        const next = await this.open();
        if (this.stopping.signal.aborted) {
          next.close(1000);
          return;
        }
        this.reconnects += 1;
        this.attach(next);
        return;
      } catch (error) {
        if (error instanceof LedgerError) {
          this.fail(error);
          return;
        }
        this.onError(error);
        delayMs = Math.min(this.maxDelayMs, delayMs * 2);
      }
    }
  }

  /** @param {unknown} error */
  fail(error) {
    this.onError(error);
    this.stopping.abort();
    this.socket?.terminate();
    this.closed.reject(error);
  }

  async close() {
    if (!this.stopping.signal.aborted) {
      this.stopping.abort();
      this.queue.length = 0;
      this.socket?.close(1000, 'subscriber closed');
      this.closed.resolve();
    }
    await this.pumping;
    await this.closed.promise.catch(() => {});
  }
}

/**
 * @param {string} url
 * @param {unknown} error
 */
function unreachable(url, error) {
  return new LedgerTransportError(
    'read_api_unavailable',
    `the read API's event stream at ${url} is unreachable: ${error instanceof Error ? error.message : error}`,
    { cause: error },
  );
}

/**
 * A refused handshake, as the read API's HTTP answers are read: the API's error body is a
 * `LedgerError` below 500 (401 `unauthenticated`, 400 `invalid_request`), anything else a
 * `LedgerTransportError`.
 * @param {number} status
 * @param {string} body
 */
function handshakeError(status, body) {
  try {
    answerOf(status, body, 'the event stream handshake');
  } catch (error) {
    return error;
  }
  return new LedgerTransportError('read_api_unavailable', `the event stream's handshake was refused with ${status}`);
}
