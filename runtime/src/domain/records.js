/**
 * The records the JS runtime hands out, made from what the ledger sends (the Python models of
 * `ledger_db/models.py` and `workflows/models.py`, as JSON). The runtime's own records are
 * camelCase with every amount as decimal text; the two published schemas are passed on exactly
 * as the ledger writes them: journal entries (LedgerEntry v1.0) and billing event envelopes.
 */

import { decimalsOf, formatMinor } from './money.js';

/**
 * @typedef {'active' | 'captured' | 'released' | 'expired'} HoldState
 */

/**
 * @typedef {'freezing' | 'active' | 'capturing' | 'releasing' | 'expiring' | 'finalizing'
 *   | 'payout_failed' | 'captured' | 'released' | 'expired' | 'rejected'} HoldPhase
 */

/**
 * A hold as the ledger records it. Amounts are decimal text in `currency`; times are ISO 8601
 * UTC text with microseconds, as the ledger wrote them.
 * @typedef {object} Hold
 * @property {string} holdId
 * @property {string} tenantId
 * @property {string} accountId
 * @property {string} currency
 * @property {string} amount  the amount frozen
 * @property {HoldState} state
 * @property {string} reason
 * @property {string} expiresAt
 * @property {string} createdAt
 * @property {string | null} payeeAccountId
 * @property {string | null} orderId
 * @property {string} captured  captured + released = amount once the hold is resolved
 * @property {string} released
 * @property {boolean} finalized  the captured money was paid out to the payee
 * @property {string} fee  the platform's fee of the payout (zero until finalized)
 * @property {string | null} resolvedAt
 * @property {string} freezeTransactionId
 * @property {string | null} resolveTransactionId
 * @property {string | null} finalizeTransactionId
 * @property {Record<string, unknown>} meta
 * @property {boolean} replayed  true when this answers a request made before (same key)
 */

/**
 * A hold as its workflow sees it (`getHold`): where the saga is, and the ledger's record.
 * @typedef {object} HoldStatus
 * @property {string} holdId
 * @property {string} tenantId
 * @property {string} accountId
 * @property {HoldPhase} phase
 * @property {boolean} final  captured (and paid out), released, expired or rejected
 * @property {'workflow' | 'ledger'} source  the workflow's state, or the ledger's record (the
 *   workflow ended and is gone from Temporal's retention)
 * @property {Hold | null} hold  the ledger's latest record (null while freezing or if rejected)
 * @property {string | null} orderId
 * @property {string | null} resolution  capture, release or expire: the step that resolved it
 * @property {string | null} errorCode  why the freeze was rejected
 * @property {string | null} errorMessage
 * @property {string | null} payoutErrorCode  why the payout was refused (`payout_failed`)
 * @property {string | null} payoutErrorMessage
 * @property {string | null} lastSignalErrorCode  a confirmOrder/cancelOrder that could not apply
 * @property {string | null} lastSignalErrorMessage
 * @property {number} eventsUnpublished  the hold's events the outbox relay still has to send
 */

/**
 * @typedef {object} Balance
 * @property {string} tenantId
 * @property {string} accountId
 * @property {string} currency
 * @property {string} posted  the sum of the journal's entries
 * @property {string} held  active holds
 * @property {string} available  posted - held
 * @property {string} overdraftLimit
 * @property {number | bigint} journalSequence  the last journal position the snapshot reflects
 * @property {string | null} asOf
 */

/**
 * A LedgerEntry v1.0 record plus its journal keys, exactly as the read API serves it.
 * @typedef {object} LedgerEntry
 * @property {string} ledger_entry_id
 * @property {string} transaction_id
 * @property {number | bigint} journal_sequence
 * @property {number} entry_index
 * @property {string} tenant_id
 * @property {string} account_id
 * @property {string | null} project_id
 * @property {string} env
 * @property {string | null} asset_id
 * @property {string | null} task_id
 * @property {string | null} external_ref
 * @property {'IN' | 'OUT'} direction
 * @property {string} amount
 * @property {string} currency
 * @property {string} reason
 * @property {string} category
 * @property {string[] | null} tags
 * @property {Record<string, unknown>} meta
 * @property {string} occurred_at
 * @property {string} recorded_at
 * @property {boolean} counterpart
 * @property {string | null} hold_id
 */

/**
 * @typedef {object} EntriesPage
 * @property {LedgerEntry[]} entries  in journal order
 * @property {string | null} nextCursor  pass as `cursor` for the next page; null on the last
 */

/**
 * A billing event: the envelope exactly as published on the bus (DESIGN section 6). `sequence`
 * (the outbox position) is there when the event came through the read API's stream.
 * @typedef {object} BillingEvent
 * @property {string} event_id
 * @property {string} type
 * @property {string} version
 * @property {string} tenant_id
 * @property {string} occurred_at
 * @property {string | null} hold_id
 * @property {string | null} order_id
 * @property {string | null} account_id
 * @property {string | null} transaction_id
 * @property {Record<string, unknown>} payload
 * @property {number | bigint} [sequence]
 */

const FINAL_PHASES = new Set(['captured', 'released', 'expired', 'rejected']);

/**
 * @param {unknown} value
 * @returns {Record<string, any>}
 */
function record(value) {
  if (typeof value !== 'object' || value === null) {
    throw new TypeError('the ledger sent no record');
  }
  return /** @type {Record<string, any>} */ (value);
}

/**
 * An amount of a record: its decimal text, or its minor units in the record's decimals.
 * @param {Record<string, any>} wire
 * @param {string} name
 * @param {number} decimals
 */
function amountOf(wire, name, decimals) {
  if (typeof wire[name] === 'string') {
    return wire[name];
  }
  const minor = wire[`${name}_minor`];
  return formatMinor(minor ?? 0, decimals);
}

/**
 * A hold from the ledger's `Hold` (through Temporal: with `*_minor`; through the read API:
 * decimal text only).
 * @param {unknown} value
 * @param {{replayed?: boolean}} [overrides]
 * @returns {Hold}
 */
export function holdFromWire(value, overrides = {}) {
  const wire = record(value);
  const amount = amountOf(wire, 'amount', 0);
  const decimals = decimalsOf(amount);
  return {
    holdId: wire.hold_id,
    tenantId: wire.tenant_id,
    accountId: wire.account_id,
    currency: wire.currency,
    amount,
    state: wire.state,
    reason: wire.reason,
    expiresAt: wire.expires_at,
    createdAt: wire.created_at,
    payeeAccountId: wire.payee_account_id ?? null,
    orderId: wire.order_id ?? null,
    captured: amountOf(wire, 'captured', decimals),
    released: amountOf(wire, 'released', decimals),
    finalized: Boolean(wire.finalized),
    fee: amountOf(wire, 'fee', decimals),
    resolvedAt: wire.resolved_at ?? null,
    freezeTransactionId: wire.freeze_transaction_id,
    resolveTransactionId: wire.resolve_transaction_id ?? null,
    finalizeTransactionId: wire.finalize_transaction_id ?? null,
    meta: wire.meta ?? {},
    replayed: overrides.replayed ?? Boolean(wire.replayed),
  };
}

/**
 * A hold's status from its workflow's `HoldWorkflowState`.
 * @param {unknown} value
 * @returns {HoldStatus}
 */
export function holdStatusFromState(value) {
  const state = record(value);
  const hold = state.hold ? holdFromWire(state.hold, { replayed: false }) : null;
  return {
    holdId: state.hold_id,
    tenantId: state.tenant_id,
    accountId: state.account_id,
    phase: state.phase,
    final: FINAL_PHASES.has(state.phase),
    source: 'workflow',
    hold,
    orderId: state.order_id ?? hold?.orderId ?? null,
    resolution: state.resolution ?? null,
    errorCode: state.error_code ?? null,
    errorMessage: state.error_message ?? null,
    payoutErrorCode: state.payout_error_code ?? null,
    payoutErrorMessage: state.payout_error_message ?? null,
    lastSignalErrorCode: state.last_signal_error_code ?? null,
    lastSignalErrorMessage: state.last_signal_error_message ?? null,
    eventsUnpublished: Number(state.events_unpublished ?? 0),
  };
}

/** @type {Record<HoldState, string>} */
const RESOLUTION_OF_STATE = { active: '', captured: 'capture', released: 'release', expired: 'expire' };

/**
 * A hold's status from the ledger's record alone (its workflow is gone from Temporal).
 * @param {Hold} hold
 * @returns {HoldStatus}
 */
export function holdStatusFromLedger(hold) {
  /** @type {HoldPhase} */
  let phase = hold.state;
  if (hold.state === 'captured' && !hold.finalized) {
    phase = 'finalizing';
  }
  return {
    holdId: hold.holdId,
    tenantId: hold.tenantId,
    accountId: hold.accountId,
    phase,
    final: FINAL_PHASES.has(phase),
    source: 'ledger',
    hold,
    orderId: hold.orderId,
    resolution: RESOLUTION_OF_STATE[hold.state] || null,
    errorCode: null,
    errorMessage: null,
    payoutErrorCode: null,
    payoutErrorMessage: null,
    lastSignalErrorCode: null,
    lastSignalErrorMessage: null,
    eventsUnpublished: 0,
  };
}

/**
 * @param {unknown} value
 * @returns {Balance}
 */
export function balanceFromWire(value) {
  const wire = record(value);
  return {
    tenantId: wire.tenant_id,
    accountId: wire.account_id,
    currency: wire.currency,
    posted: wire.posted,
    held: wire.held,
    available: wire.available,
    overdraftLimit: wire.overdraft_limit,
    journalSequence: wire.journal_sequence,
    asOf: wire.as_of ?? null,
  };
}

/**
 * @param {unknown} value
 * @returns {EntriesPage}
 */
export function entriesPageFromWire(value) {
  const wire = record(value);
  return { entries: wire.entries, nextCursor: wire.next_cursor ?? null };
}
