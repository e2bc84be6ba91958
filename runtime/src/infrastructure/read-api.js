/**
 * The read API's HTTP side (`compute-ledger serve`, `docs/api.md`): JSON under `/v1`, one API
 * key per tenant (`Authorization: Bearer`), errors as `{"error": {"code", "message", "details"}}`.
 *
 * An answer with an error body below 500 is the ledger speaking: a `LedgerError` with its code
 * (`account_not_found`, `invalid_request`, `unauthenticated`...). A 5xx, a body that is not the
 * API's, a timeout or a network failure is a `LedgerTransportError`. Bodies are read with
 * `parseJson`, so an integer above 2^53 (a journal sequence, an event's `amount_minor`) stays
 * exact.
 */

import { LedgerError, LedgerTransportError } from '../domain/errors.js';
import json from './json.cjs';

const { parseJson } = json;

/**
 * @typedef {Record<string, string | number | bigint | boolean | null | undefined>} Query
 */

export class ReadApi {
  /**
   * @param {{url: string, apiKey: import('./config.js').ApiKeys | null, requestTimeoutMs: number}} options
   */
  constructor({ url, apiKey, requestTimeoutMs }) {
    this.url = url;
    this.apiKey = apiKey;
    this.requestTimeoutMs = requestTimeoutMs;
  }

  /**
   * The API key of `tenantId`'s requests.
   * @param {string} tenantId
   * @returns {string}
   */
  keyFor(tenantId) {
    const { apiKey } = this;
    let key;
    if (typeof apiKey === 'string') {
      key = apiKey;
    } else if (typeof apiKey === 'function') {
      key = apiKey(tenantId);
    } else if (apiKey !== null && Object.hasOwn(apiKey, tenantId)) {
      key = apiKey[tenantId];
    }
    if (!key) {
      throw new LedgerError(
        'unauthenticated',
        `no read API key for tenant ${JSON.stringify(tenantId)}: pass apiKey to connect() or set LEDGER_API_KEY ` +
          '(compute-ledger apikey create --tenant ...)',
        { details: { tenant_id: tenantId } },
      );
    }
    return key;
  }

  /**
   * The WebSocket URL of a path (`http` becomes `ws`, `https` becomes `wss`).
   * @param {string} path
   * @param {Query} [query]
   */
  webSocketUrl(path, query = {}) {
    const url = this.urlOf(path, query);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return url;
  }

  /**
   * @param {string} path
   * @param {Query} query
   */
  urlOf(path, query) {
    const url = new URL(`${this.url}${path}`);
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null) {
        url.searchParams.set(name, String(value));
      }
    }
    return url;
  }

  /**
   * GET a path as `tenantId`; resolves with the parsed body.
   * @param {string} tenantId
   * @param {string} path  starting with `/v1/`, its variable parts already encoded
   * @param {Query} [query]
   * @returns {Promise<unknown>}
   */
  async get(tenantId, path, query = {}) {
    const url = this.urlOf(path, query);
    const key = this.keyFor(tenantId);
    let response;
    let text;
    try {
      response = await fetch(url, {
        headers: { Authorization: `Bearer ${key}`, Accept: 'application/json' },
        signal: AbortSignal.timeout(this.requestTimeoutMs),
      });
      text = await response.text();
    } catch (error) {
      throw new LedgerTransportError(
        'read_api_unavailable',
        `the read API at ${this.url} did not answer GET ${path}: ${describeFetchError(error)}`,
        { cause: error },
      );
    }
    return answerOf(response.status, text, `GET ${path}`);
  }
}

/**
 * The body of an answer, or the error it carries: below 500 with the API's error body, the
 * ledger's `LedgerError`; a 5xx, or a body that is not the API's, a `LedgerTransportError`.
 * @param {number} status
 * @param {string} text
 * @param {string} what  the request, for messages
 * @returns {unknown}
 */
export function answerOf(status, text, what) {
  /** @type {unknown} */
  let body;
  try {
    body = parseJson(text);
  } catch (error) {
    throw new LedgerTransportError(
      'read_api_unavailable',
      `the read API answered ${what} with ${status} and a body that is not JSON`,
      { httpStatus: status, cause: error },
    );
  }
  if (status >= 200 && status < 300) {
    return body;
  }
  const detail = errorDetail(body);
  if (detail === null) {
    throw new LedgerTransportError('read_api_unavailable', `the read API answered ${what} with ${status} and no error body`, {
      httpStatus: status,
    });
  }
  const options = { details: detail.details, httpStatus: status };
  if (status >= 500) {
    throw new LedgerTransportError(detail.code, detail.message, options);
  }
  throw new LedgerError(detail.code, detail.message, options);
}

/**
 * The `{"error": {...}}` of an error body, or null when the body is not one.
 * @param {unknown} body
 * @returns {{code: string, message: string, details: Record<string, unknown>} | null}
 */
export function errorDetail(body) {
  if (typeof body !== 'object' || body === null || !('error' in body)) {
    return null;
  }
  const error = /** @type {{error: unknown}} */ (body).error;
  if (typeof error !== 'object' || error === null) {
    return null;
  }
  const { code, message, details } = /** @type {Record<string, unknown>} */ (error);
  if (typeof code !== 'string') {
    return null;
  }
  return {
    code,
    message: typeof message === 'string' ? message : code,
    details: typeof details === 'object' && details !== null ? /** @type {Record<string, unknown>} */ (details) : {},
  };
}

/**
 * @param {unknown} error
 */
function describeFetchError(error) {
  if (error instanceof Error) {
    if (error.name === 'TimeoutError') {
      return 'timed out';
    }
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
    return `${error.message}${cause}`;
  }
  return String(error);
}
