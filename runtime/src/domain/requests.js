/**
 * The requests the hold workflow takes, built exactly as the Python client builds them
 * (`workflows/models.py`: `FreezeRequest`, `CaptureRequest`, `ReleaseRequest`, `ExtendRequest`)
 * and hashed exactly as the workflow hashes them (`canonical_hash`): the client compares hashes
 * to answer a request sent again after the hold's workflow has ended.
 *
 * Every field of the Python model is sent, defaults included, so that what the workflow decodes
 * is what is hashed here. A field the Python model gains later (with a default) changes the
 * Python hash: the parity fixture's hashes then differ from these and a unit test says so.
 */

import { createHash } from 'node:crypto';

import { canonicalAmount } from './money.js';
import { pythonJsonDumps } from './python-json.js';

/**
 * @typedef {object} FreezeWire
 * @property {string} tenant_id
 * @property {string} idempotency_key
 * @property {string} account_id
 * @property {string} amount
 * @property {string} reason
 * @property {number} ttl_seconds
 * @property {string | null} currency
 * @property {string | null} payee_account_id
 * @property {string | null} order_id
 * @property {number | null} fee_bps
 * @property {Record<string, unknown>} meta
 * @property {string | null} project_id
 * @property {string} env
 * @property {string | null} task_id
 */

/**
 * @typedef {object} CaptureWire
 * @property {string} tenant_id
 * @property {string} idempotency_key
 * @property {string} order_id
 * @property {string | null} amount
 * @property {string | null} payee_account_id
 */

/**
 * @typedef {object} ReleaseWire
 * @property {string} tenant_id
 * @property {string} idempotency_key
 */

/**
 * @typedef {object} ExtendWire
 * @property {string} tenant_id
 * @property {string} idempotency_key
 * @property {number | null} ttl_seconds
 * @property {string | null} expires_at
 */

/**
 * @typedef {object} RetryPayoutWire
 * @property {string} tenant_id
 * @property {string} idempotency_key
 */

/**
 * SHA-256 of the canonical encoding (`workflows.models.request_hash`).
 * @param {Record<string, unknown>} fields
 */
export function requestHash(fields) {
  return createHash('sha256').update(pythonJsonDumps(fields), 'utf8').digest('hex');
}

/**
 * @param {Partial<FreezeWire> & Pick<FreezeWire, 'tenant_id' | 'idempotency_key' | 'account_id' | 'amount' | 'reason' | 'ttl_seconds'>} fields
 * @returns {FreezeWire}
 */
export function freezeWire(fields) {
  return {
    tenant_id: fields.tenant_id,
    idempotency_key: fields.idempotency_key,
    account_id: fields.account_id,
    amount: fields.amount,
    reason: fields.reason,
    ttl_seconds: fields.ttl_seconds,
    currency: fields.currency ?? null,
    payee_account_id: fields.payee_account_id ?? null,
    order_id: fields.order_id ?? null,
    fee_bps: fields.fee_bps ?? null,
    meta: fields.meta ?? {},
    project_id: fields.project_id ?? null,
    env: fields.env ?? 'prod',
    task_id: fields.task_id ?? null,
  };
}

/**
 * @param {Partial<CaptureWire> & Pick<CaptureWire, 'tenant_id' | 'idempotency_key' | 'order_id'>} fields
 * @returns {CaptureWire}
 */
export function captureWire(fields) {
  return {
    tenant_id: fields.tenant_id,
    idempotency_key: fields.idempotency_key,
    order_id: fields.order_id,
    amount: fields.amount ?? null,
    payee_account_id: fields.payee_account_id ?? null,
  };
}

/**
 * @param {ReleaseWire} fields
 * @returns {ReleaseWire}
 */
export function releaseWire(fields) {
  return { tenant_id: fields.tenant_id, idempotency_key: fields.idempotency_key };
}

/** `FreezeRequest.canonical_hash`. @param {FreezeWire} wire */
export function freezeHash(wire) {
  return requestHash({ ...freezeWire(wire), amount: canonicalAmount(wire.amount) });
}

/** `CaptureRequest.canonical_hash`. @param {CaptureWire} wire */
export function captureHash(wire) {
  return requestHash({ ...captureWire(wire), amount: canonicalAmount(wire.amount ?? null), step: 'capture' });
}

/** `ReleaseRequest.canonical_hash`. @param {ReleaseWire} wire */
export function releaseHash(wire) {
  return requestHash({ step: 'release', ...releaseWire(wire) });
}
