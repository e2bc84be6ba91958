/**
 * Temporal: the connection, the client with the runtime's payload converter, and the mapping
 * of what the Temporal SDK throws to the runtime's two error classes.
 *
 * A refusal by the hold workflow (an update validator, a ledger step) arrives as an
 * `ApplicationFailure` whose `type` is the stable code, inside a `WorkflowUpdateFailedError` or
 * a `WorkflowFailedError`: it becomes a `LedgerError` with that code, as the Python client's
 * `ledger_error_from` does. An unreachable server, a broken connection or a gRPC failure
 * becomes a `LedgerTransportError` (`temporal_unavailable`).
 */

import { fileURLToPath } from 'node:url';

import { Client, Connection, WorkflowClient, isGrpcServiceError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';

import { LedgerError, LedgerTransportError } from '../domain/errors.js';

const PAYLOAD_CONVERTER_PATH = fileURLToPath(new URL('./payload-converter.cjs', import.meta.url));

// A snake_case code, as every code of the ledger is; the SDKs' own failure types
// (`ValueError`, `NondeterminismError`...) never are.
const CODE = /^[a-z][a-z0-9_]*$/;

// gRPC statuses that say nothing about the request: the way to the server failed.
const TRANSPORT_STATUSES = new Set([
  1, // CANCELLED
  2, // UNKNOWN
  4, // DEADLINE_EXCEEDED
  8, // RESOURCE_EXHAUSTED
  13, // INTERNAL
  14, // UNAVAILABLE
]);

/**
 * @typedef {import('../infrastructure/config.js').Settings['temporal']} TemporalSettings
 */

/**
 * Connects to Temporal and returns a client whose payloads are the Python side's JSON, and a
 * workflow client whose queries of ended workflows the server refuses (instead of handing them
 * to a worker to replay): an ended hold is answered from its workflow's result.
 * With `lazy`, nothing is sent until the first call that needs the server (for a client that
 * only reads, or whose server comes up later); the first such call then fails if it is down.
 * @param {TemporalSettings} settings
 * @param {{lazy?: boolean}} [options]
 * @returns {Promise<{connection: Connection, client: Client, queries: WorkflowClient}>}
 */
export async function connectTemporal(settings, { lazy = false } = {}) {
  const options = {
    address: settings.address,
    connectTimeout: settings.connectTimeoutMs ?? 10_000,
    ...(settings.apiKey === undefined ? {} : { apiKey: settings.apiKey }),
    ...(settings.tls === undefined ? {} : { tls: /** @type {any} */ (settings.tls) }),
    ...(settings.metadata === undefined ? {} : { metadata: settings.metadata }),
  };
  let connection;
  try {
    connection = lazy ? Connection.lazy(options) : await Connection.connect(options);
  } catch (error) {
    throw new LedgerTransportError(
      'temporal_unavailable',
      `Temporal is unreachable at ${settings.address}: ${error instanceof Error ? error.message : error}`,
      { cause: error },
    );
  }
  const dataConverter = { payloadConverterPath: PAYLOAD_CONVERTER_PATH };
  const client = new Client({ connection, namespace: settings.namespace, dataConverter });
  const queries = new WorkflowClient({
    connection,
    namespace: settings.namespace,
    dataConverter,
    queryRejectCondition: 'NOT_OPEN',
  });
  return { connection, client, queries };
}

/**
 * Checks that Temporal answers (one cheap call within `timeoutMs`), so that a lazy connection
 * to a server that is down fails fast with `temporal_unavailable` instead of after the SDK's
 * retries, and works once the server is up.
 * @param {Connection} connection
 * @param {string} address
 * @param {number} timeoutMs
 */
export async function checkTemporal(connection, address, timeoutMs) {
  try {
    await connection.withDeadline(Date.now() + timeoutMs, () => connection.workflowService.getSystemInfo({}));
  } catch (error) {
    throw new LedgerTransportError(
      'temporal_unavailable',
      `Temporal is unreachable at ${address}: ${error instanceof Error ? error.message : error}`,
      { cause: error },
    );
  }
}

/**
 * The errors in `error`'s cause chain, outermost first (bounded: causes may loop).
 * @param {unknown} error
 * @returns {unknown[]}
 */
function causes(error) {
  /** @type {unknown[]} */
  const chain = [];
  /** @type {unknown} */
  let current = error;
  while (current !== undefined && current !== null && chain.length < 16 && !chain.includes(current)) {
    chain.push(current);
    current = current instanceof Error ? current.cause : undefined;
  }
  return chain;
}

/**
 * The ledger error a Temporal failure carries (its `ApplicationFailure.type`), if any.
 * @param {unknown} error
 * @returns {LedgerError | null}
 */
export function ledgerErrorFrom(error) {
  for (const cause of causes(error)) {
    if (cause instanceof LedgerError) {
      return cause;
    }
    if (cause instanceof ApplicationFailure && cause.type && CODE.test(cause.type)) {
      return new LedgerError(cause.type, cause.message, { details: failureDetails(cause), cause: error });
    }
  }
  return null;
}

/**
 * The `details` a ledger activity attached (`LedgerError.to_dict()`), when they crossed over.
 * @param {ApplicationFailure} failure
 * @returns {Record<string, unknown>}
 */
function failureDetails(failure) {
  const [first] = failure.details ?? [];
  if (typeof first === 'object' && first !== null && 'details' in first) {
    const details = /** @type {{details: unknown}} */ (first).details;
    if (typeof details === 'object' && details !== null) {
      return /** @type {Record<string, unknown>} */ (details);
    }
  }
  return {};
}

/**
 * The gRPC status of the first gRPC error in `error`'s cause chain.
 * @param {unknown} error
 * @returns {number | undefined}
 */
export function grpcStatusOf(error) {
  for (const cause of causes(error)) {
    if (isGrpcServiceError(cause)) {
      return cause.code;
    }
  }
  return undefined;
}

/**
 * `error` as the runtime throws it: a `LedgerError`, a `LedgerTransportError`, or (a failure
 * that is neither, e.g. a terminated workflow) as it is.
 * @param {unknown} error
 * @returns {unknown}
 */
export function mapTemporalError(error) {
  if (error instanceof LedgerError || error instanceof LedgerTransportError) {
    return error;
  }
  const ledgerError = ledgerErrorFrom(error);
  if (ledgerError !== null) {
    return ledgerError;
  }
  const status = grpcStatusOf(error);
  if (status !== undefined && TRANSPORT_STATUSES.has(status)) {
    return new LedgerTransportError(
      'temporal_unavailable',
      `Temporal did not answer: ${error instanceof Error ? error.message : error}`,
      { cause: error },
    );
  }
  return error;
}
