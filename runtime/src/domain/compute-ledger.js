/**
 * `ComputeLedger`: the compute ledger from JavaScript, the way the marketplace's JS runtime
 * uses it. Holds go through their Temporal workflow (the saga), exactly as the Python client
 * (`starter/client.py`, `docs/client-api.md`) drives them; reads go through the read API
 * (`compute-ledger serve`); billing events come from NATS JetStream, or from the read API's
 * WebSocket when there is no NATS.
 *
 *     const ledger = await ComputeLedger.connect();            // options, else the environment
 *     const hold = await ledger.freeze({ tenantId, accountId, amount: '40.00', reason,
 *                                        idempotencyKey, ttlSeconds: 900 });
 *     await ledger.confirmOrder({ tenantId, holdId: hold.holdId, orderId });   // a signal
 *     const final = await ledger.waitForHold({ tenantId, holdId: hold.holdId });
 *     await ledger.close();
 *
 * The rules, as in Python:
 * - a hold's workflow ID is derived from (tenant, idempotency key) of its freeze
 *   (`hold-<uuid5>`), so a hold ID finds its workflow without a search;
 * - `freeze` is Update-With-Start (`USE_EXISTING`): the same key and request again answers the
 *   original hold with `replayed: true`, the same key with another request is
 *   `idempotency_key_reused`, a rejected freeze leaves no hold and may be sent again;
 * - a freeze, capture, release or signal for a hold whose workflow has ended answers from the
 *   workflow's final state (`resolution_conflict`), exactly as the running workflow would;
 * - amounts are decimal text in and out, never JS numbers;
 * - every failure the ledger knows is a `LedgerError` with its stable code; trouble on the way
 *   (Temporal, the read API or NATS unreachable, a 5xx) is a `LedgerTransportError`.
 */

import {
  QueryRejectedError,
  WithStartWorkflowOperation,
  WorkflowFailedError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
} from '@temporalio/client';
import {
  CancelledFailure,
  SearchAttributeType,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  defineSearchAttributeKey,
} from '@temporalio/common';

import { RPC_TIMEOUT_MS, resolveSettings } from '../infrastructure/config.js';
import { NatsEvents, defaultDurableName } from '../infrastructure/nats-events.js';
import { ReadApi } from '../infrastructure/read-api.js';
import { checkTemporal, connectTemporal, grpcStatusOf, mapTemporalError } from '../infrastructure/temporal.js';
import { WebSocketEvents } from '../infrastructure/websocket-events.js';
import { CONTRACT } from './contract.js';
import { EventDelivery, checkEventTypes } from './delivery.js';
import { LedgerError } from './errors.js';
import { deriveHoldId, holdWorkflowId } from './ids.js';
import { checkAmount } from './money.js';
import { balanceFromWire, entriesPageFromWire, holdFromWire, holdStatusFromLedger, holdStatusFromState } from './records.js';
import { captureHash, captureWire, freezeHash, freezeWire, releaseHash, releaseWire } from './requests.js';
import {
  checkIdempotencyKey,
  checkInteger,
  checkJson,
  checkOptionalInteger,
  checkOptionalString,
  checkOptions,
  checkString,
  checkTenantId,
} from './validation.js';

/** @typedef {import('./records.js').Hold} Hold */
/** @typedef {import('./records.js').HoldStatus} HoldStatus */
/** @typedef {import('./records.js').Balance} Balance */
/** @typedef {import('./records.js').EntriesPage} EntriesPage */
/** @typedef {import('./records.js').BillingEvent} BillingEvent */
/** @typedef {import('./delivery.js').Subscription} Subscription */
/** @typedef {import('./delivery.js').EventHandler} EventHandler */
/** @typedef {import('./delivery.js').ErrorHandler} ErrorHandler */
/** @typedef {import('../infrastructure/config.js').ConnectOptions} ConnectOptions */
/** @typedef {import('../infrastructure/config.js').Settings} Settings */
/** @typedef {import('../infrastructure/websocket-events.js').ReconnectOptions} ReconnectOptions */
/** @typedef {import('@temporalio/client').Client} Client */
/** @typedef {import('@temporalio/client').Connection} Connection */
/** @typedef {import('@temporalio/client').WorkflowClient} WorkflowClient */
/** @typedef {import('./requests.js').FreezeWire} FreezeWire */
/** @typedef {import('./requests.js').CaptureWire} CaptureWire */
/** @typedef {import('./requests.js').ReleaseWire} ReleaseWire */

/**
 * @typedef {object} FreezeOptions
 * @property {string} tenantId
 * @property {string} accountId  the buyer's agent account
 * @property {string} amount  decimal text in the account's currency, e.g. "40.00"
 * @property {string} reason
 * @property {string} idempotencyKey  names the hold: the same key never freezes twice
 * @property {number} ttlSeconds  the hold expires this long after the freeze committed
 * @property {string} [payeeAccountId]  who is paid at capture (else given at capture)
 * @property {string} [orderId]
 * @property {Record<string, unknown>} [meta]  plain JSON (bigint for integers beyond 2^53)
 * @property {string} [currency]  if given, must be the account's
 * @property {number} [feeBps]  the platform's fee of the payout, fixed at freeze (default:
 *   the ledger's default as of the freeze)
 * @property {string} [projectId]
 * @property {string} [env]  `prod` (default), `staging`, `dev`
 * @property {string} [taskId]
 */

/**
 * @typedef {object} CaptureOptions
 * @property {string} tenantId
 * @property {string} holdId
 * @property {string} orderId
 * @property {string} idempotencyKey
 * @property {string} [amount]  capture part of the hold (the rest is released); default all
 * @property {string} [payeeAccountId]  if not given at freeze
 */

/**
 * @typedef {object} ReleaseOptions
 * @property {string} tenantId
 * @property {string} holdId
 * @property {string} idempotencyKey
 */

/**
 * @typedef {object} ExtendOptions
 * @property {string} tenantId
 * @property {string} holdId
 * @property {string} idempotencyKey
 * @property {number} [ttlSeconds]  the new expiry, this long after the extension commits...
 * @property {string | Date} [expiresAt]  ...or this instant (exactly one of the two)
 */

/**
 * @typedef {object} SubscribeOptions
 * @property {string} tenantId
 * @property {string[]} [types]  only these event types (default: all)
 * @property {number | bigint} [afterSequence]  (WebSocket) start after this outbox sequence
 *   (default 0: every event the ledger kept)
 * @property {'nats' | 'websocket'} [transport]  default: NATS when `natsUrl` is set
 * @property {string} [durableName]  (NATS) the durable consumer; default one per tenant and
 *   set of types. Processes sharing it share its deliveries
 * @property {'all' | 'new'} [deliverPolicy]  (NATS) where a new durable starts (default all)
 * @property {number} [dedupeWindow]  how many recent event IDs are remembered (default 10 000)
 * @property {ErrorHandler} [onError]  handler failures and reconnections (default: a warning)
 * @property {ReconnectOptions} [reconnect]  (WebSocket) the reconnection backoff
 */

const FREEZE_REQUIRED = /** @type {const} */ (['tenantId', 'accountId', 'amount', 'reason', 'idempotencyKey', 'ttlSeconds']);
const FREEZE_OPTIONS = /** @type {const} */ ([
  ...FREEZE_REQUIRED,
  'payeeAccountId',
  'orderId',
  'meta',
  'currency',
  'feeBps',
  'projectId',
  'env',
  'taskId',
]);

/** @type {Record<string, import('@temporalio/common').SearchAttributeType>} */
const SEARCH_ATTRIBUTE_TYPES = {
  Keyword: SearchAttributeType.KEYWORD,
  Text: SearchAttributeType.TEXT,
  Int: SearchAttributeType.INT,
  Double: SearchAttributeType.DOUBLE,
  Bool: SearchAttributeType.BOOL,
  Datetime: SearchAttributeType.DATETIME,
  KeywordList: SearchAttributeType.KEYWORD_LIST,
};

const HOLD_WORKFLOW_TYPE = CONTRACT.temporal.hold_workflow_type;
const TENANT_SEARCH_ATTRIBUTE = defineSearchAttributeKey('LedgerTenant', SearchAttributeType.KEYWORD);
const ALREADY_RESOLVED_CODES = CONTRACT.temporal.already_resolved_codes;
// The default keys of the signal forms, as the Python client's.
const CONFIRM_ORDER_KEY = 'confirm_order';
const CANCEL_ORDER_KEY = 'cancel_order';
// gRPC NOT_FOUND / ALREADY_EXISTS: the workflow ended (or never was) under that ID.
const GRPC_NOT_FOUND = 5;
const GRPC_ALREADY_EXISTS = 6;

/**
 * @param {unknown} error
 */
function workflowGone(error) {
  if (error instanceof WorkflowNotFoundError) {
    return true;
  }
  const status = grpcStatusOf(error);
  return status === GRPC_NOT_FOUND;
}

/**
 * A hold ID as given by a caller (it names a workflow: text, no lone surrogate).
 * @param {unknown} holdId
 */
function checkHoldId(holdId) {
  const text = checkString(holdId, 'holdId');
  if (text.length === 0 || text.length > 64) {
    throw new LedgerError('hold_not_found', `hold ${JSON.stringify(text.slice(0, 64))} not found`, {
      details: { hold_id: text.slice(0, 64) },
    });
  }
  return text;
}

/**
 * The search attributes a freeze starts its workflow with (the Python client's
 * `_initial_search_attributes`), for those the server has registered under this contract.
 * @param {FreezeWire} wire
 * @returns {import('@temporalio/common').SearchAttributePair[]}
 */
function initialSearchAttributes(wire) {
  /** @type {[string, string | null][]} */
  const wanted = [
    ['LedgerTenant', wire.tenant_id],
    ['LedgerAccount', wire.account_id],
    ['LedgerHoldState', 'freezing'],
    ['LedgerAmount', wire.amount],
    ['LedgerCurrency', wire.currency],
    ['LedgerPayee', wire.payee_account_id],
    ['LedgerOrder', wire.order_id],
  ];
  /** @type {import('@temporalio/common').SearchAttributePair[]} */
  const pairs = [];
  for (const [name, value] of wanted) {
    const type = CONTRACT.temporal.search_attributes[name];
    if (value && type === 'Keyword') {
      pairs.push(/** @type {import('@temporalio/common').SearchAttributePair} */ ({
        key: defineSearchAttributeKey(name, SEARCH_ATTRIBUTE_TYPES[type]),
        value,
      }));
    }
  }
  return pairs;
}

/**
 * What a person reads in the Web UI (the Python client's `_summary` and `_static_details`),
 * with the amount as the caller wrote it.
 * @param {FreezeWire} wire
 * @param {string} amountAsGiven
 */
function summaryOf(wire, amountAsGiven) {
  const currency = wire.currency ? ` ${wire.currency}` : '';
  const summary = `Hold ${amountAsGiven}${currency} on ${wire.tenant_id}/${wire.account_id} for ${wire.reason}`;
  const lines = [
    `**tenant** \`${wire.tenant_id}\`  `,
    `**account** \`${wire.account_id}\`  `,
    `**amount** ${amountAsGiven}${currency}`,
    `**reason** ${wire.reason}  `,
    `**ttl** ${wire.ttl_seconds} s  `,
    `**idempotency key** \`${wire.idempotency_key}\`  `,
  ];
  if (wire.payee_account_id) lines.push(`**payee** \`${wire.payee_account_id}\`  `);
  if (wire.order_id) lines.push(`**order** \`${wire.order_id}\`  `);
  return { summary, details: lines.join('\n') };
}

/**
 * `workflows.models.resolution_conflict` + the Python client's `_raise_conflict`: why `step`
 * cannot resolve the ended hold, thrown; nothing when the request repeats its resolution.
 * @param {Record<string, any>} state  the workflow's final `HoldWorkflowState`
 * @param {'capture' | 'release'} step
 * @param {string} idempotencyKey
 * @param {string} requestHash
 */
export function raiseResolutionConflict(state, step, idempotencyKey, requestHash) {
  const conflict = resolutionConflict(state, step, idempotencyKey, requestHash);
  if (conflict !== null) {
    throw new LedgerError(conflict[0], conflict[1]);
  }
  if (!(state.resolution === step && state.resolution_idempotency_key === idempotencyKey)) {
    // Ended without a resolution: only possible if the workflow was terminated.
    throw new LedgerError('hold_not_found', `hold ${state.hold_id} has no running workflow`);
  }
}

/**
 * `workflows.models.resolution_conflict`, line for line.
 * @param {Record<string, any>} state
 * @param {string} step
 * @param {string} idempotencyKey
 * @param {string} requestHash
 * @returns {[string, string] | null}
 */
export function resolutionConflict(state, step, idempotencyKey, requestHash) {
  if (state.phase === 'freezing' || state.phase === 'rejected') {
    return ['hold_not_found', `hold ${state.hold_id} is not frozen`];
  }
  if (state.resolution === null || state.resolution === undefined) {
    return null;
  }
  if (state.resolution === step && state.resolution_idempotency_key === idempotencyKey) {
    if (state.resolution_request_hash !== requestHash) {
      return [
        'idempotency_key_reused',
        `idempotency key ${JSON.stringify(idempotencyKey)} was used for a different ${step}`,
      ];
    }
    return null;
  }
  const code = ALREADY_RESOLVED_CODES[state.resolution] ?? 'hold_already_released';
  return [code, `hold ${state.hold_id} was resolved by ${state.resolution}`];
}

export class ComputeLedger {
  /**
   * Connects to Temporal (the holds; with `lazy`, on the first hold operation); the read API
   * and NATS are reached when first used. Every option defaults to the environment (see
   * `infrastructure/config.js`).
   * @param {ConnectOptions} [options]
   * @returns {Promise<ComputeLedger>}
   */
  static async connect(options = {}) {
    const settings = resolveSettings(options);
    const { connection, client, queries } = await connectTemporal(settings.temporal, { lazy: settings.lazy });
    return new ComputeLedger(settings, connection, client, queries);
  }

  /**
   * Use `ComputeLedger.connect()`.
   * @param {Settings} settings
   * @param {Connection} connection
   * @param {Client} client
   * @param {WorkflowClient} queries  refuses queries of ended workflows
   */
  constructor(settings, connection, client, queries) {
    this.settings = settings;
    this.connection = connection;
    this.temporal = client;
    this.queries = queries;
    this.readApi = new ReadApi({
      url: settings.apiUrl,
      apiKey: settings.apiKey,
      requestTimeoutMs: settings.requestTimeoutMs,
    });
    this.nats =
      settings.natsUrl === null
        ? null
        : new NatsEvents({ url: settings.natsUrl, stream: settings.natsStream, subjectPrefix: settings.natsSubjectPrefix });
    /** @type {Set<Subscription>} */
    this.subscriptions = new Set();
    this.closed = false;
    // A lazy connection is checked before its first use (and again until it answered once).
    this.temporalChecked = !settings.lazy;
  }

  // -------------------------------------------------------------------------------------------
  // The saga.
  // -------------------------------------------------------------------------------------------

  /**
   * Freezes money in a new hold workflow; resolves with the hold once the freeze committed.
   * @param {FreezeOptions} options
   * @returns {Promise<Hold>}
   */
  async freeze(options) {
    const given = checkOptions(options, 'freeze', FREEZE_OPTIONS, FREEZE_REQUIRED);
    const tenantId = checkTenantId(given.tenantId);
    const idempotencyKey = checkIdempotencyKey(given.idempotencyKey);
    const amount = checkAmount(given.amount);
    const meta = given.meta === undefined || given.meta === null ? {} : checkJson(given.meta, 'meta');
    if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) {
      throw new LedgerError('invalid_entry', 'meta must be a JSON object', { details: { field: 'meta' } });
    }
    const wire = freezeWire({
      tenant_id: tenantId,
      idempotency_key: idempotencyKey,
      account_id: checkString(given.accountId, 'accountId'),
      amount,
      reason: checkString(given.reason, 'reason'),
      ttl_seconds: checkInteger(given.ttlSeconds, 'ttlSeconds', 'ttl_out_of_range'),
      currency: checkOptionalString(given.currency, 'currency'),
      payee_account_id: checkOptionalString(given.payeeAccountId, 'payeeAccountId'),
      order_id: checkOptionalString(given.orderId, 'orderId'),
      fee_bps: checkOptionalInteger(given.feeBps, 'feeBps'),
      meta: /** @type {Record<string, unknown>} */ (meta),
      project_id: checkOptionalString(given.projectId, 'projectId'),
      env: checkOptionalString(given.env, 'env') ?? 'prod',
      task_id: checkOptionalString(given.taskId, 'taskId'),
    });
    const workflowId = holdWorkflowId(deriveHoldId(tenantId, idempotencyKey));
    const { summary, details } = summaryOf(wire, /** @type {string} */ (given.amount));
    const startWorkflowOperation = new WithStartWorkflowOperation(HOLD_WORKFLOW_TYPE, {
      workflowId,
      taskQueue: this.settings.taskQueue,
      args: [wire],
      workflowIdConflictPolicy: 'USE_EXISTING',
      // A hold that existed stays final; a rejected (failed) freeze may be sent again.
      workflowIdReusePolicy: 'ALLOW_DUPLICATE_FAILED_ONLY',
      typedSearchAttributes: initialSearchAttributes(wire),
      staticSummary: summary,
      staticDetails: details,
    });
    try {
      const hold = await this.withinDeadline('freeze', () =>
        this.temporal.workflow.executeUpdateWithStart('freeze', { args: [wire], startWorkflowOperation }),
      );
      return holdFromWire(hold);
    } catch (error) {
      const status = grpcStatusOf(error);
      if (
        error instanceof WorkflowExecutionAlreadyStartedError ||
        (!(error instanceof WorkflowUpdateFailedError) &&
          (error instanceof WorkflowNotFoundError || status === GRPC_NOT_FOUND || status === GRPC_ALREADY_EXISTS))
      ) {
        // The workflow under this key has ended (or ended between start and update): its
        // final state answers, as it would have.
        return this.freezeAfterEnd(workflowId, wire);
      }
      throw mapTemporalError(error);
    }
  }

  /**
   * @param {string} workflowId
   * @param {FreezeWire} wire
   * @returns {Promise<Hold>}
   */
  async freezeAfterEnd(workflowId, wire) {
    const state = await this.finalState(workflowId, wire.tenant_id);
    if (state.request_hash !== freezeHash(wire)) {
      throw new LedgerError(
        'idempotency_key_reused',
        `idempotency key ${JSON.stringify(wire.idempotency_key)} was used for a different freeze`,
      );
    }
    const hold = state.frozen_hold ?? state.hold;
    if (!hold) {
      throw new LedgerError('hold_not_found', `hold of workflow ${workflowId} not found`);
    }
    return holdFromWire(hold, { replayed: true });
  }

  /**
   * Captures a hold (all, or `amount`) for an order; resolves once the capture committed
   * (the payout to the payee follows in the workflow).
   * @param {CaptureOptions} options
   * @returns {Promise<Hold>}
   */
  async captureHold(options) {
    const { holdId, wire } = this.captureRequest(options, 'captureHold');
    return this.update(holdId, 'capture', wire, captureHash(wire));
  }

  /**
   * Releases a hold: its money is available again. Resolves once the release committed.
   * @param {ReleaseOptions} options
   * @returns {Promise<Hold>}
   */
  async releaseHold(options) {
    const { holdId, wire } = this.releaseRequest(options, 'releaseHold');
    return this.update(holdId, 'release', wire, releaseHash(wire));
  }

  /**
   * Moves an active hold's expiry later (`ttlSeconds` from the extension's commit, or to
   * `expiresAt`); the workflow's expiry timer follows.
   * @param {ExtendOptions} options
   * @returns {Promise<Hold>}
   */
  async extendHold(options) {
    const given = checkOptions(
      options,
      'extendHold',
      ['tenantId', 'holdId', 'idempotencyKey', 'ttlSeconds', 'expiresAt'],
      ['tenantId', 'holdId', 'idempotencyKey'],
    );
    const hasTtl = given.ttlSeconds !== undefined && given.ttlSeconds !== null;
    const hasInstant = given.expiresAt !== undefined && given.expiresAt !== null;
    if (hasTtl === hasInstant) {
      throw new LedgerError('invalid_entry', 'extendHold takes exactly one of ttlSeconds and expiresAt', {
        details: { field: 'ttlSeconds' },
      });
    }
    const wire = {
      tenant_id: checkTenantId(given.tenantId),
      idempotency_key: checkIdempotencyKey(given.idempotencyKey),
      ttl_seconds: hasTtl ? checkInteger(given.ttlSeconds, 'ttlSeconds', 'ttl_out_of_range') : null,
      expires_at: hasInstant ? instantText(given.expiresAt, 'expiresAt') : null,
    };
    return this.update(checkHoldId(given.holdId), 'extend', wire, null);
  }

  /**
   * Tries a refused payout (phase `payout_failed`) again, e.g. once the payee's account is
   * usable; resolves with the paid-out hold, or throws the payout's refusal again.
   * @param {ReleaseOptions} options
   * @returns {Promise<Hold>}
   */
  async retryPayout(options) {
    const { holdId, wire } = this.releaseRequest(options, 'retryPayout');
    return this.update(holdId, 'retry_payout', wire, null);
  }

  /**
   * The signal form of `captureHold`: resolves once Temporal recorded the signal (no worker
   * needed). A signal that could not apply shows in `getHold().lastSignalErrorCode`.
   * @param {Omit<CaptureOptions, 'idempotencyKey'> & {idempotencyKey?: string}} options
   * @returns {Promise<void>}
   */
  async confirmOrder(options) {
    const withKey = { idempotencyKey: CONFIRM_ORDER_KEY, ...options };
    const { holdId, wire } = this.captureRequest(withKey, 'confirmOrder');
    await this.signal(holdId, 'confirm_order', 'capture', wire, captureHash(wire));
  }

  /**
   * The signal form of `releaseHold`.
   * @param {Omit<ReleaseOptions, 'idempotencyKey'> & {idempotencyKey?: string}} options
   * @returns {Promise<void>}
   */
  async cancelOrder(options) {
    const withKey = { idempotencyKey: CANCEL_ORDER_KEY, ...options };
    const { holdId, wire } = this.releaseRequest(withKey, 'cancelOrder');
    await this.signal(holdId, 'cancel_order', 'release', wire, releaseHash(wire));
  }

  /**
   * Where the hold stands: its workflow's state (a query) while it runs, the workflow's final
   * state once it ended, the ledger's record (read API) once Temporal no longer keeps it.
   * @param {{tenantId: string, holdId: string}} options
   * @returns {Promise<HoldStatus>}
   */
  async getHold(options) {
    const given = checkOptions(options, 'getHold', ['tenantId', 'holdId'], ['tenantId', 'holdId']);
    const tenantId = checkTenantId(given.tenantId);
    const holdId = checkHoldId(given.holdId);
    const workflowId = holdWorkflowId(holdId);
    /** @type {Record<string, any>} */
    let state;
    try {
      state = await this.withinDeadline('getHold', () => this.queries.getHandle(workflowId).query('state'), RPC_TIMEOUT_MS);
    } catch (error) {
      if (error instanceof QueryRejectedError) {
        state = await this.finalState(workflowId, tenantId);
      } else if (workflowGone(error)) {
        return this.holdStatusFromLedger(tenantId, holdId);
      } else {
        throw mapTemporalError(error);
      }
    }
    if (state.tenant_id !== tenantId) {
      throw holdNotFound(holdId);
    }
    if (state.phase === 'rejected') {
      throw new LedgerError('hold_not_found', `no hold: the freeze was rejected (${state.error_code})`, {
        details: { hold_id: holdId },
      });
    }
    return holdStatusFromState(state);
  }

  /**
   * Waits until the hold's workflow ended (captured and paid out, released or expired) and
   * resolves with the ledger's final record of the hold.
   * @param {{tenantId: string, holdId: string, timeoutMs?: number}} options  `timeoutMs`:
   *   reject with a `TimeoutError` (a DOMException) after this long; the hold is untouched
   * @returns {Promise<Hold>}
   */
  async waitForHold(options) {
    const given = checkOptions(options, 'waitForHold', ['tenantId', 'holdId', 'timeoutMs'], ['tenantId', 'holdId']);
    const tenantId = checkTenantId(given.tenantId);
    const holdId = checkHoldId(given.holdId);
    const timeoutMs = given.timeoutMs === undefined ? null : checkInteger(given.timeoutMs, 'timeoutMs');
    const workflowId = holdWorkflowId(holdId);
    let state;
    if (timeoutMs === null) {
      state = await this.finalState(workflowId, tenantId, { waiting: true });
    } else {
      const signal = AbortSignal.timeout(timeoutMs);
      try {
        state = await this.temporal.withAbortSignal(signal, () =>
          this.finalState(workflowId, tenantId, { waiting: true }),
        );
      } catch (error) {
        if (signal.aborted) {
          throw new DOMException(`hold ${holdId} was not final within ${timeoutMs} ms`, 'TimeoutError');
        }
        throw error;
      }
    }
    if (!state.hold) {
      throw holdNotFound(holdId);
    }
    return holdFromWire(state.hold, { replayed: false });
  }

  // -------------------------------------------------------------------------------------------
  // Reads, through the read API.
  // -------------------------------------------------------------------------------------------

  /**
   * One page of an account's journal entries (LedgerEntry v1.0), in journal order,
   * `from <= time < to`. Pass `nextCursor` as `cursor` for the next page.
   * @param {{tenantId: string, accountId: string, from?: string | Date, to?: string | Date,
   *   cursor?: string, limit?: number, timeField?: 'occurred_at' | 'recorded_at'}} options
   * @returns {Promise<EntriesPage>}
   */
  async listLedgerEntries(options) {
    const given = checkOptions(
      options,
      'listLedgerEntries',
      ['tenantId', 'accountId', 'from', 'to', 'cursor', 'limit', 'timeField'],
      ['tenantId', 'accountId'],
    );
    const tenantId = checkTenantId(given.tenantId);
    const accountId = checkString(given.accountId, 'accountId');
    const body = await this.readApi.get(tenantId, `/v1/accounts/${encodeURIComponent(accountId)}/entries`, {
      from: given.from === undefined ? undefined : instantText(given.from, 'from'),
      to: given.to === undefined ? undefined : instantText(given.to, 'to'),
      cursor: checkOptionalString(given.cursor, 'cursor'),
      limit: checkOptionalInteger(given.limit, 'limit'),
      time_field: checkOptionalString(given.timeField, 'timeField'),
    });
    const page = entriesPageFromWire(body);
    for (const entry of page.entries) {
      checkTenantOf(entry.tenant_id, tenantId);
    }
    return page;
  }

  /**
   * An account's balance: posted (journal), held (active holds), available = posted - held.
   * @param {{tenantId: string, accountId: string, asOf?: string | Date}} options  `asOf`:
   *   the journal replayed up to this instant
   * @returns {Promise<Balance>}
   */
  async getBalance(options) {
    const given = checkOptions(options, 'getBalance', ['tenantId', 'accountId', 'asOf'], ['tenantId', 'accountId']);
    const tenantId = checkTenantId(given.tenantId);
    const accountId = checkString(given.accountId, 'accountId');
    const body = await this.readApi.get(tenantId, `/v1/accounts/${encodeURIComponent(accountId)}/balance`, {
      as_of: given.asOf === undefined ? undefined : instantText(given.asOf, 'asOf'),
    });
    const balance = balanceFromWire(body);
    checkTenantOf(balance.tenantId, tenantId);
    return balance;
  }

  // -------------------------------------------------------------------------------------------
  // Billing events.
  // -------------------------------------------------------------------------------------------

  /**
   * Calls `onEvent` with each of the tenant's billing events (INTENT_CREATED, ORDER_CREATED,
   * PAYMENT_SUCCEEDED, HOLD_RELEASED, HOLD_EXPIRED...), once per event ID, in order; resolves
   * once the subscription is established. An event counts as received when `onEvent` returned
   * (or its promise resolved); if it throws, the event comes again.
   * @param {SubscribeOptions} options
   * @param {EventHandler} onEvent
   * @returns {Promise<Subscription>}
   */
  async subscribeBillingEvents(options, onEvent) {
    const given = checkOptions(
      options,
      'subscribeBillingEvents',
      [
        'tenantId',
        'types',
        'afterSequence',
        'transport',
        'durableName',
        'deliverPolicy',
        'dedupeWindow',
        'onError',
        'reconnect',
      ],
      ['tenantId'],
    );
    if (typeof onEvent !== 'function') {
      throw new LedgerError('invalid_entry', 'subscribeBillingEvents needs an onEvent function', {
        details: { field: 'onEvent' },
      });
    }
    const tenantId = checkTenantId(given.tenantId);
    const types = checkEventTypes(given.types);
    const transport = given.transport ?? (this.nats === null ? 'websocket' : 'nats');
    if (transport !== 'nats' && transport !== 'websocket') {
      throw new LedgerError('invalid_entry', 'transport is "nats" or "websocket"', { details: { field: 'transport' } });
    }
    const afterSequence = given.afterSequence ?? 0;
    if (
      (typeof afterSequence !== 'number' || !Number.isSafeInteger(afterSequence) || afterSequence < 0) &&
      (typeof afterSequence !== 'bigint' || afterSequence < 0n)
    ) {
      throw new LedgerError('invalid_entry', 'afterSequence must be a non-negative integer', {
        details: { field: 'afterSequence' },
      });
    }
    const onError = typeof given.onError === 'function' ? /** @type {ErrorHandler} */ (given.onError) : warn;
    const delivery = new EventDelivery({
      tenantId,
      types,
      onEvent,
      dedupeWindow: given.dedupeWindow === undefined ? undefined : checkInteger(given.dedupeWindow, 'dedupeWindow'),
    });
    /** @type {Subscription} */
    let subscription;
    if (transport === 'nats') {
      if (this.nats === null) {
        throw new LedgerError('invalid_entry', 'transport "nats" needs natsUrl (or NATS_URL)', {
          details: { field: 'transport' },
        });
      }
      if (afterSequence !== 0 && afterSequence !== 0n) {
        // The bus carries no outbox sequence: the durable consumer keeps the position.
        throw new LedgerError(
          'invalid_entry',
          'afterSequence is an outbox position, which NATS messages do not carry: with NATS the durable ' +
            'consumer (durableName) keeps the position; use transport "websocket" to resume after a sequence',
          { details: { field: 'afterSequence' } },
        );
      }
      const deliverPolicy = given.deliverPolicy ?? 'all';
      if (deliverPolicy !== 'all' && deliverPolicy !== 'new') {
        throw new LedgerError('invalid_entry', 'deliverPolicy is "all" or "new"', { details: { field: 'deliverPolicy' } });
      }
      const durableName =
        given.durableName === undefined ? defaultDurableName(tenantId, types) : checkDurableName(given.durableName);
      subscription = await this.nats.subscribe({ tenantId, types, durableName, deliverPolicy, delivery, onError });
    } else {
      const events = new WebSocketEvents({
        api: this.readApi,
        tenantId,
        afterSequence,
        delivery,
        onError,
        reconnect: /** @type {ReconnectOptions | undefined} */ (given.reconnect),
      });
      subscription = await events.start();
    }
    this.subscriptions.add(subscription);
    const close = subscription.close;
    subscription.close = async () => {
      this.subscriptions.delete(subscription);
      await close();
    };
    return subscription;
  }

  /** Closes every subscription, the NATS connection and the Temporal connection. */
  async close() {
    if (this.closed) {
      return;
    }
    this.closed = true;
    await Promise.all([...this.subscriptions].map((subscription) => subscription.close()));
    await this.nats?.close();
    await this.connection.close();
  }

  // -------------------------------------------------------------------------------------------
  // Plumbing.
  // -------------------------------------------------------------------------------------------

  /**
   * @param {unknown} options
   * @param {string} operation
   * @returns {{holdId: string, wire: CaptureWire}}
   */
  captureRequest(options, operation) {
    const given = checkOptions(
      options,
      operation,
      ['tenantId', 'holdId', 'orderId', 'idempotencyKey', 'amount', 'payeeAccountId'],
      ['tenantId', 'holdId', 'orderId', 'idempotencyKey'],
    );
    const wire = captureWire({
      tenant_id: checkTenantId(given.tenantId),
      idempotency_key: checkIdempotencyKey(given.idempotencyKey),
      order_id: checkString(given.orderId, 'orderId'),
      amount: given.amount === undefined || given.amount === null ? null : checkAmount(given.amount),
      payee_account_id: checkOptionalString(given.payeeAccountId, 'payeeAccountId'),
    });
    return { holdId: checkHoldId(given.holdId), wire };
  }

  /**
   * @param {unknown} options
   * @param {string} operation
   * @returns {{holdId: string, wire: ReleaseWire}}
   */
  releaseRequest(options, operation) {
    const given = checkOptions(
      options,
      operation,
      ['tenantId', 'holdId', 'idempotencyKey'],
      ['tenantId', 'holdId', 'idempotencyKey'],
    );
    const wire = releaseWire({
      tenant_id: checkTenantId(given.tenantId),
      idempotency_key: checkIdempotencyKey(given.idempotencyKey),
    });
    return { holdId: checkHoldId(given.holdId), wire };
  }

  /**
   * A hold update (capture, release, extend, retry_payout); an ended workflow answers from its
   * final state, as the running workflow would have.
   * @param {string} holdId
   * @param {'capture' | 'release' | 'extend' | 'retry_payout'} step
   * @param {{tenant_id: string, idempotency_key: string}} wire
   * @param {string | null} requestHash  (capture, release) what a repeat is recognised by
   * @returns {Promise<Hold>}
   */
  async update(holdId, step, wire, requestHash) {
    const workflowId = holdWorkflowId(holdId);
    try {
      const hold = await this.withinDeadline(step, () =>
        this.temporal.workflow.getHandle(workflowId).executeUpdate(step, { args: [wire] }),
      );
      return holdFromWire(hold);
    } catch (error) {
      if (error instanceof WorkflowUpdateFailedError || !workflowGone(error)) {
        throw mapTemporalError(error);
      }
    }
    const state = await this.finalState(workflowId, wire.tenant_id);
    if (requestHash !== null && (step === 'capture' || step === 'release')) {
      raiseResolutionConflict(state, step, wire.idempotency_key, requestHash);
    } else if (!(step === 'retry_payout' && state.hold?.finalized)) {
      const code = ALREADY_RESOLVED_CODES[state.resolution ?? ''] ?? 'hold_not_found';
      throw new LedgerError(code, `hold ${holdId} was resolved by ${state.resolution}`);
    }
    if (!state.hold) {
      throw holdNotFound(holdId);
    }
    return holdFromWire(state.hold, { replayed: true });
  }

  /**
   * @param {string} holdId
   * @param {'confirm_order' | 'cancel_order'} name
   * @param {'capture' | 'release'} step
   * @param {CaptureWire | ReleaseWire} wire
   * @param {string} requestHash
   */
  async signal(holdId, name, step, wire, requestHash) {
    const workflowId = holdWorkflowId(holdId);
    try {
      await this.withinDeadline(name, () => this.temporal.workflow.getHandle(workflowId).signal(name, wire), RPC_TIMEOUT_MS);
      return;
    } catch (error) {
      if (!workflowGone(error)) {
        throw mapTemporalError(error);
      }
    }
    const state = await this.finalState(workflowId, wire.tenant_id);
    raiseResolutionConflict(state, step, wire.idempotency_key, requestHash);
  }

  /**
   * The final `HoldWorkflowState` of a hold's workflow (waiting for it to end), as the Python
   * client's `_final_state`: a rejected freeze is `hold_not_found`, a cancelled workflow is
   * read through its query (it settled the hold before it ended).
   *
   * `waiting` (the workflow may still run): another tenant's hold is refused at once, from the
   * workflow's `LedgerTenant` search attribute, instead of after its end.
   * @param {string} workflowId
   * @param {string} tenantId
   * @param {{waiting?: boolean}} [options]
   * @returns {Promise<Record<string, any>>}
   */
  async finalState(workflowId, tenantId, { waiting = false } = {}) {
    await this.ensureTemporal();
    const handle = this.temporal.workflow.getHandle(workflowId);
    /** @type {Record<string, any>} */
    let state;
    try {
      if (waiting) {
        const description = await handle.describe();
        const owner = description.typedSearchAttributes.get(TENANT_SEARCH_ATTRIBUTE);
        if (description.status.name === 'RUNNING' && owner !== tenantId) {
          throw new LedgerError('hold_not_found', `hold of workflow ${workflowId} not found`);
        }
      }
      state = await handle.result();
    } catch (error) {
      if (error instanceof WorkflowFailedError) {
        if (error.cause instanceof CancelledFailure) {
          state = await handle.query('state').catch((queryError) => {
            throw mapTemporalError(queryError);
          });
        } else {
          const mapped = mapTemporalError(error);
          if (mapped instanceof LedgerError && mapped.code !== 'idempotency_key_reused') {
            // A rejected freeze left no hold.
            throw new LedgerError('hold_not_found', `no hold: the freeze was rejected (${mapped.code})`, {
              cause: mapped,
            });
          }
          throw mapped;
        }
      } else if (workflowGone(error)) {
        throw new LedgerError('hold_not_found', `hold of workflow ${workflowId} not found`);
      } else {
        throw mapTemporalError(error);
      }
    }
    if (!state || state.tenant_id !== tenantId) {
      throw new LedgerError('hold_not_found', `hold of workflow ${workflowId} not found`);
    }
    return state;
  }

  /**
   * A hold whose workflow Temporal no longer keeps, from the ledger (the read API).
   * @param {string} tenantId
   * @param {string} holdId
   * @returns {Promise<HoldStatus>}
   */
  async holdStatusFromLedger(tenantId, holdId) {
    if (this.settings.apiKey === null) {
      throw holdNotFound(holdId);
    }
    const body = await this.readApi.get(tenantId, `/v1/holds/${encodeURIComponent(holdId)}`);
    const hold = holdFromWire(body, { replayed: false });
    checkTenantOf(hold.tenantId, tenantId);
    return holdStatusFromLedger(hold);
  }

  /** A lazy connection's first use: Temporal must answer, or `temporal_unavailable` at once. */
  async ensureTemporal() {
    if (!this.temporalChecked) {
      const { address, connectTimeoutMs = 10_000 } = this.settings.temporal;
      await checkTemporal(this.connection, address, connectTimeoutMs);
      this.temporalChecked = true;
    }
  }

  /**
   * `call`'s answer, or `ledger_unavailable` once `answerDeadlineMs` (or a query's or
   * signal's own `limitMs`) has passed (the Python client's `_within_deadline`): the request
   * may still complete, and the same request with the same idempotency key may be sent again.
   * @template T
   * @param {string} what
   * @param {() => Promise<T>} call
   * @param {number} [limitMs]
   * @returns {Promise<T>}
   */
  async withinDeadline(what, call, limitMs = Infinity) {
    await this.ensureTemporal();
    const waitMs = Math.min(this.settings.answerDeadlineMs, limitMs);
    const deadline = Date.now() + waitMs;
    try {
      return await this.temporal.withDeadline(deadline, call);
    } catch (error) {
      const timedOut = error instanceof WorkflowUpdateRPCTimeoutOrCancelledError || grpcStatusOf(error) === 4;
      if (timedOut && Date.now() >= deadline) {
        throw new LedgerError(
          'ledger_unavailable',
          `${what}: no answer within ${waitMs} ms (is a worker running?); it may still ` +
            'complete: send the same request again with the same idempotency key',
          { cause: error },
        );
      }
      throw error;
    }
  }
}

/**
 * @param {string} holdId
 */
function holdNotFound(holdId) {
  return new LedgerError('hold_not_found', `hold ${JSON.stringify(holdId)} not found`, { details: { hold_id: holdId } });
}

/**
 * A record of another tenant than the one asked for: the API key is another tenant's.
 * @param {unknown} recordTenant
 * @param {string} tenantId
 */
function checkTenantOf(recordTenant, tenantId) {
  if (recordTenant !== tenantId) {
    throw new LedgerError(
      'tenant_mismatch',
      `the read API key belongs to tenant ${JSON.stringify(recordTenant)}, not ${JSON.stringify(tenantId)}: ` +
        'pass apiKey as {[tenantId]: key}',
      { details: { tenant_id: tenantId } },
    );
  }
}

/**
 * An instant as ISO 8601 text with a zone (a `Date`, or text the server checks).
 * @param {unknown} value
 * @param {string} field
 */
function instantText(value, field) {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) {
      throw new LedgerError('invalid_entry', `${field} is an invalid Date`, { details: { field } });
    }
    return value.toISOString();
  }
  return checkString(value, field);
}

/**
 * A NATS durable consumer name: no '.', '*', '>' or whitespace.
 * @param {unknown} value
 */
function checkDurableName(value) {
  const name = checkString(value, 'durableName');
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(name)) {
    throw new LedgerError('invalid_entry', "durableName must be 1-200 letters, digits, '_' or '-'", {
      details: { field: 'durableName' },
    });
  }
  return name;
}

/**
 * The default `onError` of a subscription: a process warning, never silence.
 * @param {unknown} error
 */
function warn(error) {
  process.emitWarning(error instanceof Error ? error : String(error), { code: 'COMPUTE_LEDGER_SUBSCRIPTION' });
}
