// connect()'s settings: the options, else the same environment variables as the Python side.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { LedgerError } from '../../src/domain/errors.js';
import { DEFAULT_ANSWER_DEADLINE_MS, resolveSettings } from '../../src/infrastructure/config.js';

describe('resolveSettings', () => {
  test('the defaults are the Python side\'s', () => {
    const settings = resolveSettings({ env: {} });
    assert.equal(settings.temporal.address, '127.0.0.1:7233');
    assert.equal(settings.temporal.namespace, 'default');
    assert.equal(settings.taskQueue, 'compute-ledger');
    assert.equal(settings.apiUrl, 'http://127.0.0.1:8700');
    assert.equal(settings.apiKey, null);
    assert.equal(settings.natsUrl, null);
    assert.equal(settings.natsStream, 'BILLING');
    assert.equal(settings.natsSubjectPrefix, 'billing');
    assert.equal(settings.answerDeadlineMs, DEFAULT_ANSWER_DEADLINE_MS);
  });

  test('the environment, with the same names as starter/config.py', () => {
    const settings = resolveSettings({
      env: {
        TEMPORAL_ADDRESS: 'temporal.internal:7233',
        TEMPORAL_NAMESPACE: 'ledger',
        TEMPORAL_API_KEY: 'secret',
        LEDGER_TASK_QUEUE: 'ledger-q',
        LEDGER_API_URL: 'https://ledger.internal/',
        LEDGER_API_KEY: 'clk_1',
        NATS_URL: 'nats://bus:4222',
        NATS_STREAM: 'BILLING_EU',
        NATS_SUBJECT_PREFIX: 'eu.billing',
      },
    });
    assert.equal(settings.temporal.address, 'temporal.internal:7233');
    assert.equal(settings.temporal.namespace, 'ledger');
    assert.equal(settings.temporal.apiKey, 'secret');
    assert.equal(settings.temporal.tls, true, 'an API key turns TLS on, as temporalio.envconfig does');
    assert.equal(settings.taskQueue, 'ledger-q');
    assert.equal(settings.apiUrl, 'https://ledger.internal');
    assert.equal(settings.apiKey, 'clk_1');
    assert.equal(settings.natsUrl, 'nats://bus:4222');
    assert.equal(settings.natsStream, 'BILLING_EU');
    assert.equal(settings.natsSubjectPrefix, 'eu.billing');
  });

  test('options win over the environment; natsUrl null means the WebSocket', () => {
    const settings = resolveSettings({
      temporalAddress: '127.0.0.1:9000',
      natsUrl: null,
      apiKey: { demo: 'clk_demo' },
      env: { TEMPORAL_ADDRESS: 'elsewhere:7233', NATS_URL: 'nats://bus:4222' },
    });
    assert.equal(settings.temporal.address, '127.0.0.1:9000');
    assert.equal(settings.natsUrl, null);
    assert.deepEqual(settings.apiKey, { demo: 'clk_demo' });
  });

  test('an unknown option, a bad deadline or a missing profile is refused', () => {
    assert.throws(() => resolveSettings(/** @type {any} */ ({ temporalAdress: 'x', env: {} })), LedgerError);
    assert.throws(() => resolveSettings({ answerDeadlineMs: -1, env: {} }), LedgerError);
    assert.throws(
      () => resolveSettings({ env: { TEMPORAL_PROFILE: 'no-such-profile', TEMPORAL_CONFIG_FILE: '/nonexistent.toml' } }),
      (error) => error instanceof LedgerError && error.code === 'temporal_config_invalid',
    );
  });
});
