/**
 * What the integration suites share: the stack and two clients of it (one with NATS, one
 * whose events come from the read API's WebSocket).
 * @typedef {object} Context
 * @property {import('../helpers/stack.js').Stack} stack
 * @property {import('../../src/index.js').ComputeLedger} ledger
 * @property {import('../../src/index.js').ComputeLedger} wsLedger
 */

/**
 * A freeze's options for a tenant of the stack, with a key of its own.
 * @param {string} tenantId
 * @param {string} idempotencyKey
 * @param {Partial<import('../../src/domain/compute-ledger.js').FreezeOptions>} [overrides]
 * @returns {import('../../src/domain/compute-ledger.js').FreezeOptions}
 */
export function freezeOptions(tenantId, idempotencyKey, overrides = {}) {
  return {
    tenantId,
    accountId: 'buyer',
    amount: '40.00',
    reason: 'NEGOTIATION',
    idempotencyKey,
    ttlSeconds: 600,
    payeeAccountId: 'seller',
    ...overrides,
  };
}

export {};
