/**
 * The constants the JS runtime shares with the Python code (limits, identifier patterns, ID
 * derivation, the hold workflow's type and search attributes), read from
 * `src/generated/ledger-contract.json`, which `runtime/scripts/generate_contract.py` writes
 * from `ledger_db` and `workflows`; a Python test fails when it is stale.
 */

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/**
 * @typedef {object} LedgerContract
 * @property {Record<'amount_text_length_max' | 'hold_ttl_seconds_max' | 'hold_ttl_seconds_min'
 *   | 'idempotency_key_length_max' | 'page_size_default' | 'page_size_max'
 *   | 'tenant_id_length_max', number>} limits
 * @property {string} amount_grammar
 * @property {Record<'account_id' | 'amount' | 'tenant_id', string>} patterns  Python regexes,
 *   matched in full (they use no syntax JS reads differently)
 * @property {{namespace: string, separator: string, hold_workflow_id_prefix: string}} ids
 * @property {{default_stream: string, default_subject_prefix: string,
 *   duplicate_window_seconds: number}} nats
 * @property {{default_url: string}} read_api
 * @property {{already_resolved_codes: Record<string, string>, answer_deadline_seconds: number,
 *   rpc_timeout_seconds: number, default_address: string,
 *   default_namespace: string, default_task_queue: string, hold_workflow_type: string,
 *   search_attributes: Record<string, string>}} temporal
 */

/** @type {LedgerContract} */
export const CONTRACT = Object.freeze(require('../generated/ledger-contract.json'));

export const LIMITS = Object.freeze(CONTRACT.limits);

/**
 * A Python pattern as a JS regex that must match the whole text (Python's `fullmatch`).
 * @param {string} pattern
 */
export function fullMatch(pattern) {
  return new RegExp(`^(?:${pattern})$`, 'u');
}
