/**
 * Deterministic identifiers, exactly as `ledger_db/ids.py` derives them: a hold's ID is the
 * UUID v5 of ("hold", tenant, idempotency key) joined by the unit separator, in the ledger's
 * fixed namespace; its workflow's ID is `hold-<hold ID>`, so a hold ID finds its workflow
 * without a search.
 */

import { v5 as uuidv5 } from 'uuid';

import { CONTRACT } from './contract.js';

const { namespace, separator, hold_workflow_id_prefix: workflowPrefix } = CONTRACT.ids;
const utf8 = new TextEncoder();

/**
 * @param {string[]} parts
 */
function derive(...parts) {
  // The separator cannot appear in validated tenant IDs or keys: distinct part lists never collide.
  return uuidv5(utf8.encode(parts.join(separator)), namespace);
}

/**
 * The hold ID of the freeze a tenant asked for under `idempotencyKey` (Python's `derive_hold_id`).
 * @param {string} tenantId
 * @param {string} idempotencyKey
 */
export function deriveHoldId(tenantId, idempotencyKey) {
  return derive('hold', tenantId, idempotencyKey);
}

/**
 * The ID of the HoldWorkflow that owns `holdId` (Python's `hold_workflow_id`).
 * @param {string} holdId
 */
export function holdWorkflowId(holdId) {
  return `${workflowPrefix}${holdId}`;
}

/**
 * The inverse of `holdWorkflowId`.
 * @param {string} workflowId
 */
export function holdIdFromWorkflowId(workflowId) {
  if (!workflowId.startsWith(workflowPrefix)) {
    throw new TypeError(`not a hold workflow ID: ${JSON.stringify(workflowId)}`);
  }
  return workflowId.slice(workflowPrefix.length);
}
