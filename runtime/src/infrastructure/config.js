/**
 * Where the ledger lives, from the options of `ComputeLedger.connect` or else the environment,
 * with the same variable names as the Python side (`starter/config.py`):
 *
 * | option | variable | default |
 * |---|---|---|
 * | `temporalAddress` | `TEMPORAL_ADDRESS` | `127.0.0.1:7233` |
 * | `namespace` | `TEMPORAL_NAMESPACE` | `default` |
 * | (TLS, API key, gRPC metadata) | `TEMPORAL_API_KEY`, `TEMPORAL_TLS*`, `TEMPORAL_GRPC_META_*`, `TEMPORAL_PROFILE`, `TEMPORAL_CONFIG_FILE` | none |
 * | `taskQueue` | `LEDGER_TASK_QUEUE` | `compute-ledger` |
 * | `apiUrl` | `LEDGER_API_URL` | `http://127.0.0.1:8700` |
 * | `apiKey` | `LEDGER_API_KEY` | none (reads need one) |
 * | `natsUrl` | `NATS_URL` | none: events come from the read API's WebSocket |
 * | `natsStream` | `NATS_STREAM` | `BILLING` |
 * | `natsSubjectPrefix` | `NATS_SUBJECT_PREFIX` | `billing` |
 *
 * The Temporal part is read by `@temporalio/envconfig`, the SDKs' and the Temporal CLI's own
 * reading of the TOML profile and the `TEMPORAL_*` variables, as `temporalio.envconfig` does
 * for the Python side (an API key turns TLS on, for Temporal Cloud).
 */

import { loadClientConnectConfig } from '@temporalio/envconfig';

import { CONTRACT } from '../domain/contract.js';
import { LedgerError } from '../domain/errors.js';

/**
 * @typedef {object} ConnectOptions
 * @property {string} [temporalAddress]  host:port of the Temporal frontend
 * @property {string} [namespace]
 * @property {string} [taskQueue]  the ledger worker's task queue
 * @property {string} [apiUrl]  the read API (`compute-ledger serve`)
 * @property {ApiKeys} [apiKey]  a read API key, one per tenant ID, or a function of the tenant ID
 * @property {string | null} [natsUrl]  NATS for billing events (null: the read API's WebSocket)
 * @property {string} [natsStream]
 * @property {string} [natsSubjectPrefix]
 * @property {number} [answerDeadlineMs]  how long a hold operation may wait for its answer
 *   before it fails with `ledger_unavailable` (default: the saga's own outage budget plus
 *   a margin, as the Python client)
 * @property {number} [requestTimeoutMs]  one read API request (default 30 s)
 * @property {number} [connectTimeoutMs]  how long reaching Temporal may take (default 10 s)
 * @property {boolean} [lazy]  connect to Temporal on the first hold operation, not in
 *   `connect()` (default false: `connect()` fails at once when Temporal is unreachable)
 * @property {Record<string, string | undefined>} [env]  the environment to read (default `process.env`)
 */

/**
 * A read API key names one tenant: one key, a key per tenant, or a lookup (a secret store).
 * @typedef {string | Record<string, string> | ((tenantId: string) => string | undefined)} ApiKeys
 */

/**
 * @typedef {object} Settings
 * @property {{address: string, namespace: string, apiKey?: string, tls?: unknown,
 *   metadata?: Record<string, string>, connectTimeoutMs?: number}} temporal
 * @property {string} taskQueue
 * @property {string} apiUrl
 * @property {ApiKeys | null} apiKey
 * @property {string | null} natsUrl
 * @property {string} natsStream
 * @property {string} natsSubjectPrefix
 * @property {number} answerDeadlineMs
 * @property {number} requestTimeoutMs
 * @property {boolean} lazy
 */

// The Python client's DEFAULT_ANSWER_DEADLINE (generated): the workflow's own outage budget plus
// a margin, so that the workflow's `ledger_unavailable`, not this deadline, is what a caller
// normally sees.
export const DEFAULT_ANSWER_DEADLINE_MS = CONTRACT.temporal.answer_deadline_seconds * 1000;
// The Python client's _RPC_TIMEOUT: one query or signal (a query needs a worker to answer).
export const RPC_TIMEOUT_MS = CONTRACT.temporal.rpc_timeout_seconds * 1000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

const KNOWN_OPTIONS = new Set([
  'temporalAddress',
  'namespace',
  'taskQueue',
  'apiUrl',
  'apiKey',
  'natsUrl',
  'natsStream',
  'natsSubjectPrefix',
  'answerDeadlineMs',
  'requestTimeoutMs',
  'connectTimeoutMs',
  'lazy',
  'env',
]);

/**
 * @param {Record<string, string | undefined>} env
 * @param {string} name
 */
function variable(env, name) {
  const value = env[name];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

/**
 * @param {unknown} value
 * @param {string} field
 * @param {number} fallback
 */
function positiveMilliseconds(value, field, fallback) {
  if (value === undefined) {
    return fallback;
  }
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new LedgerError('invalid_entry', `${field} must be a positive number of milliseconds`, {
      details: { field },
    });
  }
  return value;
}

/**
 * The settings of a connection: the options given, else the environment, else the defaults.
 * @param {ConnectOptions} options
 * @returns {Settings}
 */
export function resolveSettings(options) {
  for (const key of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(key)) {
      throw new LedgerError('invalid_entry', `connect: unknown option ${JSON.stringify(key)}`, {
        details: { field: key },
      });
    }
  }
  const env = options.env ?? process.env;
  /** @type {Record<string, string>} */
  const envVars = Object.fromEntries(
    Object.entries(env).filter(/** @returns {entry is [string, string]} */ (entry) => entry[1] !== undefined),
  );
  let profile;
  try {
    profile = loadClientConnectConfig({ overrideEnvVars: envVars, profile: variable(env, 'TEMPORAL_PROFILE') });
  } catch (error) {
    throw new LedgerError(
      'temporal_config_invalid',
      `the Temporal client configuration is invalid: ${error instanceof Error ? error.message : error}`,
      { cause: error },
    );
  }
  const connection = profile.connectionOptions ?? {};
  return {
    temporal: {
      address: options.temporalAddress ?? connection.address ?? CONTRACT.temporal.default_address,
      namespace: options.namespace ?? profile.namespace ?? CONTRACT.temporal.default_namespace,
      apiKey: typeof connection.apiKey === 'string' ? connection.apiKey : undefined,
      tls: connection.tls,
      metadata: connection.metadata,
      connectTimeoutMs: positiveMilliseconds(options.connectTimeoutMs, 'connectTimeoutMs', DEFAULT_CONNECT_TIMEOUT_MS),
    },
    taskQueue: options.taskQueue ?? variable(env, 'LEDGER_TASK_QUEUE') ?? CONTRACT.temporal.default_task_queue,
    apiUrl: (options.apiUrl ?? variable(env, 'LEDGER_API_URL') ?? CONTRACT.read_api.default_url).replace(/\/+$/, ''),
    apiKey: options.apiKey ?? variable(env, 'LEDGER_API_KEY') ?? null,
    natsUrl: options.natsUrl === undefined ? variable(env, 'NATS_URL') ?? null : options.natsUrl,
    natsStream: options.natsStream ?? variable(env, 'NATS_STREAM') ?? CONTRACT.nats.default_stream,
    natsSubjectPrefix:
      options.natsSubjectPrefix ?? variable(env, 'NATS_SUBJECT_PREFIX') ?? CONTRACT.nats.default_subject_prefix,
    answerDeadlineMs: positiveMilliseconds(options.answerDeadlineMs, 'answerDeadlineMs', DEFAULT_ANSWER_DEADLINE_MS),
    requestTimeoutMs: positiveMilliseconds(options.requestTimeoutMs, 'requestTimeoutMs', DEFAULT_REQUEST_TIMEOUT_MS),
    lazy: options.lazy === true,
  };
}
