/**
 * The errors of the JS runtime. Two classes, never confused:
 *
 *     Error
 *     ├── LedgerError           a failure the ledger knows: `code` is one of its stable codes
 *     │                         (insufficient_funds, hold_expired, idempotency_key_reused, ...)
 *     └── LedgerTransportError  the way to the ledger failed: Temporal, the read API or NATS is
 *                               unreachable, answered 5xx, or the connection broke; `retryable`
 *
 * The codes come from `src/generated/error-codes.json`, generated from `ledger_db/errors.py`
 * (one class per code) and `starter/error_codes.py` (the faces' codes and HTTP statuses) by
 * `runtime/scripts/generate_contract.py`; a Python test fails when that file is stale.
 */

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/**
 * @typedef {object} ErrorCodeInfo
 * @property {'ledger' | 'face'} source  `ledger`: raised by `ledger_db`; `face`: by the CLI or the read API
 * @property {string | null} class  the Python class (`ledger` codes)
 * @property {string | null} description
 * @property {number} http_status  what the read API answers with this code
 */

/** @type {{ ledger_codes: string[], codes: Record<string, ErrorCodeInfo> }} */
const generated = require('../generated/error-codes.json');

/** Every stable code of the ledger and its faces, sorted. */
export const ERROR_CODES = Object.freeze(Object.keys(generated.codes).sort());

/** The codes `ledger_db` raises (one Python class each), sorted. */
export const LEDGER_ERROR_CODES = Object.freeze([...generated.ledger_codes].sort());

/**
 * The JS runtime's own codes: raised before anything is sent, or by the read API's client.
 * `ledger_unavailable` (the saga's: the database did not answer in time) is also raised here
 * when a hold operation gets no answer within `answerDeadlineMs`.
 */
export const RUNTIME_ERROR_CODES = Object.freeze(['ledger_unavailable', 'tenant_mismatch']);

/** The codes of a `LedgerTransportError`. */
export const TRANSPORT_ERROR_CODES = Object.freeze([
  'temporal_unavailable',
  'read_api_unavailable',
  'nats_unavailable',
]);

const knownCodes = new Set([...ERROR_CODES, ...RUNTIME_ERROR_CODES]);
const ledgerCodes = new Set([...LEDGER_ERROR_CODES, 'ledger_unavailable']);

/**
 * What the generated table says about a code (undefined for an unknown code).
 * @param {string} code
 * @returns {ErrorCodeInfo | undefined}
 */
export function errorCodeInfo(code) {
  return Object.hasOwn(generated.codes, code) ? generated.codes[code] : undefined;
}

/**
 * Whether `code` is a stable code the ledger raises (`ledger_db`), as opposed to the faces'.
 * @param {string} code
 */
export function isLedgerCode(code) {
  return ledgerCodes.has(code);
}

/**
 * @typedef {object} ErrorOptions
 * @property {Record<string, unknown>} [details]  fields of the error, as the ledger gives them
 * @property {number} [httpStatus]  the read API's status, when the answer came from it
 * @property {unknown} [cause]
 */

/** What both error classes carry: a code, details, the HTTP status if one answered. */
class CodedFailure extends Error {
  /**
   * @param {string} name
   * @param {string} code
   * @param {string} message
   * @param {ErrorOptions} options
   */
  constructor(name, code, message, options) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = name;
    /** @readonly */
    this.code = code;
    /** @readonly @type {Record<string, unknown>} */
    this.details = options.details ?? {};
    /** @readonly @type {number | undefined} */
    this.httpStatus = options.httpStatus;
  }
}

/** A failure the ledger knows, with its stable snake_case `code`. */
export class LedgerError extends CodedFailure {
  /**
   * @param {string} code  a stable code (`ERROR_CODES`, `RUNTIME_ERROR_CODES`)
   * @param {string} message
   * @param {ErrorOptions} [options]
   */
  constructor(code, message, options = {}) {
    super('LedgerError', code, message, {
      ...options,
      httpStatus: options.httpStatus ?? errorCodeInfo(code)?.http_status,
    });
  }

  /** Whether the same request (same idempotency key) may simply be sent again. */
  get retryable() {
    return this.code === 'ledger_unavailable';
  }

  /** Whether the code is one of the stable codes (a code the server invented later is not). */
  get known() {
    return knownCodes.has(this.code);
  }

  /** The wire form the ledger's faces use: `{code, message, details?}`. */
  toJSON() {
    /** @type {{code: string, message: string, details?: Record<string, unknown>}} */
    const body = { code: this.code, message: this.message };
    if (Object.keys(this.details).length > 0) {
      body.details = this.details;
    }
    return body;
  }
}

/** The way to the ledger failed (unreachable, 5xx, broken connection); the ledger said nothing. */
export class LedgerTransportError extends CodedFailure {
  /**
   * @param {string} code  `temporal_unavailable`, `read_api_unavailable`, `nats_unavailable`, or
   *   the read API's own 5xx code (`database_unavailable`, `internal_error`...)
   * @param {string} message
   * @param {ErrorOptions} [options]
   */
  constructor(code, message, options = {}) {
    super('LedgerTransportError', code, message, options);
  }

  /** Transport trouble is worth another try (with the same idempotency key). */
  get retryable() {
    return true;
  }
}

/**
 * Whether `error` is a `LedgerError`, and with `code` when given.
 * @param {unknown} error
 * @param {string} [code]
 * @returns {error is LedgerError}
 */
export function isLedgerError(error, code) {
  return error instanceof LedgerError && (code === undefined || error.code === code);
}
