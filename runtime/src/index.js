/**
 * The compute ledger's JS runtime. See README.md for the API reference.
 */

export { ComputeLedger } from './domain/compute-ledger.js';
export { RecentIds } from './domain/dedupe.js';
export {
  ERROR_CODES,
  LEDGER_ERROR_CODES,
  LedgerError,
  LedgerTransportError,
  RUNTIME_ERROR_CODES,
  TRANSPORT_ERROR_CODES,
  errorCodeInfo,
  isLedgerError,
} from './domain/errors.js';
export { deriveHoldId, holdIdFromWorkflowId, holdWorkflowId } from './domain/ids.js';
export { checkAmount, formatMinor } from './domain/money.js';
export { DEFAULT_ANSWER_DEADLINE_MS, resolveSettings } from './infrastructure/config.js';
