/**
 * Checks on caller input made before anything is sent, each refusing with the code the ledger
 * would give (`ledger_db/validation.py`): the tenant ID and idempotency key (which name the
 * hold's workflow, so they must be right before a workflow ID is derived from them), the types
 * of the arguments, and text that could not cross the wire unchanged (a lone surrogate).
 * Everything else (account IDs, TTL bounds, currencies...) the workflow and the ledger refuse
 * with their own codes.
 */

import { CONTRACT, LIMITS, fullMatch } from './contract.js';
import { LedgerError } from './errors.js';

const TENANT_ID = fullMatch(CONTRACT.patterns.tenant_id);
const CONTROL = /[\x00-\x1f\x7f]/u;
// Python's str.isspace(): what `key.strip()` removes (JS's trim() differs: it removes U+FEFF
// and keeps U+0085 and U+001C..U+001F).
const PYTHON_WHITESPACE_ONLY =
  /^[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$/u;

/**
 * @param {string} field
 * @param {string} message
 * @param {string} [code]
 */
function refuse(field, message, code = 'invalid_entry') {
  return new LedgerError(code, message, { details: { field } });
}

/**
 * `ledger_db.validation.check_tenant_id`.
 * @param {unknown} tenantId
 * @returns {string}
 */
export function checkTenantId(tenantId) {
  if (typeof tenantId !== 'string' || !TENANT_ID.test(tenantId)) {
    throw refuse('tenantId', "tenantId must be 1-128 characters of letters, digits, '_' or '-'");
  }
  return tenantId;
}

/**
 * `ledger_db.validation.check_idempotency_key` (lengths in code points, as Python counts).
 * @param {unknown} key
 * @param {string} [field]
 * @returns {string}
 */
export function checkIdempotencyKey(key, field = 'idempotencyKey') {
  const code = 'idempotency_key_invalid';
  if (typeof key !== 'string' || PYTHON_WHITESPACE_ONLY.test(key)) {
    throw refuse(field, `${field} must be non-empty text`, code);
  }
  if ([...key].length > LIMITS.idempotency_key_length_max) {
    throw refuse(field, `${field} is longer than ${LIMITS.idempotency_key_length_max} characters`, code);
  }
  if (CONTROL.test(key)) {
    throw refuse(field, `${field} contains a control character`, code);
  }
  if (!key.isWellFormed()) {
    throw refuse(field, `${field} is not valid Unicode text`, code);
  }
  return key;
}

/**
 * Text that crosses the wire unchanged: a string without a lone surrogate.
 * @param {unknown} value
 * @param {string} field
 * @returns {string}
 */
export function checkString(value, field) {
  if (typeof value !== 'string') {
    throw refuse(field, `${field} must be a string`);
  }
  if (!value.isWellFormed()) {
    throw refuse(field, `${field} is not valid Unicode text (it holds a lone surrogate)`);
  }
  return value;
}

/**
 * @param {unknown} value
 * @param {string} field
 * @returns {string | null}
 */
export function checkOptionalString(value, field) {
  return value === undefined || value === null ? null : checkString(value, field);
}

/**
 * An integer a JS number holds exactly.
 * @param {unknown} value
 * @param {string} field
 * @param {string} [code]
 * @returns {number}
 */
export function checkInteger(value, field, code = 'invalid_entry') {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw refuse(field, `${field} must be an integer`, code);
  }
  return value;
}

/**
 * @param {unknown} value
 * @param {string} field
 * @returns {number | null}
 */
export function checkOptionalInteger(value, field) {
  return value === undefined || value === null ? null : checkInteger(value, field);
}

/**
 * JSON that crosses the wire unchanged and hashes as Python hashes it: null, booleans, strings
 * without lone surrogates, finite numbers, bigints, arrays and plain objects; nothing else
 * (no Date, Map, undefined inside arrays, NaN, functions...).
 * @param {unknown} value
 * @param {string} field
 * @param {number} [depth]
 * @returns {unknown}
 */
export function checkJson(value, field, depth = 0) {
  if (depth > 32) {
    throw refuse(field, `${field} is nested more than 32 deep`);
  }
  if (value === null || typeof value === 'boolean' || typeof value === 'bigint') {
    return value;
  }
  if (typeof value === 'string') {
    return checkString(value, field);
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) {
      throw refuse(field, `${field}: the number ${value} has no JSON form`);
    }
    return value;
  }
  if (Array.isArray(value)) {
    value.forEach((item, index) => checkJson(item, `${field}[${index}]`, depth + 1));
    return value;
  }
  if (typeof value === 'object' && isPlainObject(value)) {
    for (const [key, item] of Object.entries(value)) {
      checkString(key, `${field} key`);
      if (item !== undefined) {
        checkJson(item, `${field}.${key}`, depth + 1);
      }
    }
    return value;
  }
  throw refuse(field, `${field} must be plain JSON (got ${describe(value)})`);
}

/**
 * @param {object} value
 */
function isPlainObject(value) {
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/**
 * @param {unknown} value
 */
function describe(value) {
  if (value === undefined) {
    return 'undefined';
  }
  if (typeof value === 'object' && value !== null) {
    return value.constructor?.name ?? 'object';
  }
  return typeof value;
}

/**
 * The options object of a call: a plain object whose keys are all known, so that a misspelt
 * option (`idempotencykey`) is refused instead of silently ignored.
 * @template {string} K
 * @param {unknown} options
 * @param {string} operation
 * @param {readonly K[]} known
 * @param {readonly K[]} required
 * @returns {Partial<Record<K, unknown>>}
 */
export function checkOptions(options, operation, known, required) {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw refuse('options', `${operation} takes one options object`);
  }
  const knownSet = new Set(/** @type {readonly string[]} */ (known));
  for (const key of Object.keys(options)) {
    if (!knownSet.has(key)) {
      throw refuse(key, `${operation}: unknown option ${JSON.stringify(key)} (known: ${known.join(', ')})`);
    }
  }
  const given = /** @type {Record<string, unknown>} */ (options);
  for (const key of required) {
    if (given[key] === undefined || given[key] === null) {
      throw refuse(key, `${operation}: ${key} is required`);
    }
  }
  return /** @type {Partial<Record<K, unknown>>} */ (options);
}
