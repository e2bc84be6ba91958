"""``starter.config``: the Temporal connection comes from the SDK's environment configuration
(a TOML profile, then the ``TEMPORAL_*`` variables), TLS and API key included; the rest of the
configuration from ``LEDGER_*`` and ``NATS_*``. (That a plain dev server still connects is
tested against a real one in ``test_cli_end_to_end.py``.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from starter.config import (
    DEFAULT_TEMPORAL_ADDRESS,
    ApiSettings,
    ClientConfig,
    TemporalConfigError,
    temporal_connect_options,
)

PROFILES = """
[profile.default]
address = "temporal.internal:7233"
namespace = "ledger"

[profile.cloud]
address = "ledger.a1b2c.tmprl.cloud:7233"
namespace = "ledger.a1b2c"
api_key = "cloud-api-key"

[profile.mtls]
address = "ledger.a1b2c.tmprl.cloud:7233"
namespace = "ledger.a1b2c"
[profile.mtls.tls]
client_cert_path = "{cert}"
client_key_path = "{key}"
server_name = "ledger.a1b2c.tmprl.cloud"
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_bytes(b"-----BEGIN CERTIFICATE-----\ncert\n-----END CERTIFICATE-----\n")
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n")
    path = tmp_path / "temporal.toml"
    path.write_text(PROFILES.format(cert=cert, key=key))
    return path


def test_no_configuration_is_the_local_dev_server(tmp_path: Path) -> None:
    config = ClientConfig.from_env({"TEMPORAL_CONFIG_FILE": str(tmp_path / "absent.toml")})
    options = temporal_connect_options(config)
    assert (options["target_host"], options["namespace"]) == (DEFAULT_TEMPORAL_ADDRESS, "default")
    assert (options["api_key"], options["tls"], options["rpc_metadata"]) == (None, False, {})
    assert options["data_converter"].payload_converter is not None
    assert config.profile is None


def test_the_default_profile_of_the_config_file(config_file: Path) -> None:
    config = ClientConfig.from_env({"TEMPORAL_CONFIG_FILE": str(config_file)})
    assert (config.temporal_address, config.namespace) == ("temporal.internal:7233", "ledger")
    assert config.tls is False and config.api_key is None


def test_a_cloud_profile_with_an_api_key_turns_tls_on(config_file: Path) -> None:
    config = ClientConfig.from_env(
        {"TEMPORAL_CONFIG_FILE": str(config_file), "TEMPORAL_PROFILE": "cloud"}
    )
    options = temporal_connect_options(config)
    assert options["target_host"] == "ledger.a1b2c.tmprl.cloud:7233"
    assert options["namespace"] == "ledger.a1b2c"
    assert options["api_key"] == "cloud-api-key"
    assert options["tls"] is True
    assert config.profile == "cloud"
    # Secrets stay out of logs.
    assert "cloud-api-key" not in repr(config)


def test_an_mtls_profile_reads_the_client_certificate(config_file: Path) -> None:
    config = ClientConfig.from_env(
        {"TEMPORAL_CONFIG_FILE": str(config_file), "TEMPORAL_PROFILE": "mtls"}
    )
    tls = temporal_connect_options(config)["tls"]
    assert isinstance(tls, TLSConfig)
    assert tls.client_cert is not None and b"BEGIN CERTIFICATE" in tls.client_cert
    assert tls.client_private_key is not None and b"PRIVATE KEY" in tls.client_private_key
    assert tls.domain == "ledger.a1b2c.tmprl.cloud"
    assert "PRIVATE KEY" not in repr(config)


def test_temporal_variables_override_the_profile(config_file: Path, tmp_path: Path) -> None:
    config = ClientConfig.from_env(
        {
            "TEMPORAL_CONFIG_FILE": str(config_file),
            "TEMPORAL_PROFILE": "cloud",
            "TEMPORAL_ADDRESS": "other.tmprl.cloud:7233",
            "TEMPORAL_NAMESPACE": "other",
            "TEMPORAL_API_KEY": "env-api-key",
            "LEDGER_TASK_QUEUE": "q",
            "LEDGER_DATABASE_URL": "sqlite:///x.db",
            "NATS_URL": "nats://bus:4222",
        }
    )
    assert (config.temporal_address, config.namespace) == ("other.tmprl.cloud:7233", "other")
    assert (config.api_key, config.tls) == ("env-api-key", True)
    assert (config.task_queue, config.database_url, config.nats_url) == (
        "q",
        "sqlite:///x.db",
        "nats://bus:4222",
    )
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_bytes(b"cert")
    key.write_bytes(b"key")
    mtls = ClientConfig.from_env(
        {
            "TEMPORAL_CONFIG_FILE": str(tmp_path / "absent.toml"),
            "TEMPORAL_ADDRESS": "secure:7233",
            "TEMPORAL_TLS": "true",
            "TEMPORAL_TLS_CLIENT_CERT_PATH": str(cert),
            "TEMPORAL_TLS_CLIENT_KEY_PATH": str(key),
            "TEMPORAL_TLS_SERVER_NAME": "secure.example",
        }
    )
    assert isinstance(mtls.tls, TLSConfig)
    assert (mtls.tls.client_cert, mtls.tls.client_private_key, mtls.tls.domain) == (
        b"cert",
        b"key",
        "secure.example",
    )


def test_a_bad_profile_is_a_configuration_error(config_file: Path, tmp_path: Path) -> None:
    with pytest.raises(TemporalConfigError, match="nowhere"):
        ClientConfig.from_env(
            {"TEMPORAL_CONFIG_FILE": str(config_file), "TEMPORAL_PROFILE": "nowhere"}
        )
    broken = tmp_path / "broken.toml"
    broken.write_text(
        '[profile.default]\naddress = "x:1"\n[profile.default.tls]\nclient_cert_path = "/absent/c.pem"\nclient_key_path = "/absent/k.pem"\n'
    )
    with pytest.raises(TemporalConfigError):
        ClientConfig.from_env({"TEMPORAL_CONFIG_FILE": str(broken)})


def test_the_cli_reports_a_bad_profile_with_its_code(config_file: Path, tmp_path: Path) -> None:
    from cli_helpers import Cli, clean_environment

    cli = Cli(
        tmp_path,
        clean_environment(TEMPORAL_CONFIG_FILE=str(config_file), TEMPORAL_PROFILE="nowhere"),
    )
    cli.run(
        "freeze", "--tenant", "t", "--account", "a", "--amount", "1.00", "--idempotency-key", "k"
    ).expect_error("temporal_config_invalid", 2)


def test_api_settings_from_the_environment() -> None:
    settings = ApiSettings.from_env(
        {
            "LEDGER_API_HOST": "0.0.0.0",
            "LEDGER_API_PORT": "9000",
            "LEDGER_API_STREAM_QUEUE_SIZE": "16",
            "LEDGER_API_CORS_ORIGINS": "https://a.example, https://b.example",
            "NATS_URL": "nats://bus:4222",
            "NATS_SUBJECT_PREFIX": "bill",
        }
    )
    assert (settings.host, settings.port, settings.stream_queue_size) == ("0.0.0.0", 9000, 16)
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.nats is not None and settings.nats.subject_prefix == "bill"
    assert ApiSettings.from_env({}).nats is None
