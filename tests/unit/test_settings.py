"""Settings: environment over the settings file over defaults; bad values are named."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from scitq_bench.exceptions import InvalidInput
from scitq_bench.settings import ServerSettings, load_client_settings, write_client_config


def test_defaults_settings_file_and_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SCITQ_BENCH_DATABASE_URL", raising=False)
    monkeypatch.delenv("SCITQ_BENCH_LEASE_SECONDS", raising=False)
    default = ServerSettings.from_env(tmp_path)
    assert default.database_url == f"sqlite:///{tmp_path / 'scitq_bench.db'}"
    assert default.lease_seconds == 30
    (tmp_path / "settings.yaml").write_text(
        "database_url: postgresql+psycopg2://u@db/x\nlease_seconds: 12\n")
    from_file = ServerSettings.from_env(tmp_path)
    assert (from_file.database_url, from_file.lease_seconds) == ("postgresql+psycopg2://u@db/x", 12)
    monkeypatch.setenv("SCITQ_BENCH_DATABASE_URL", "sqlite:////tmp/env.db")
    monkeypatch.setenv("SCITQ_BENCH_LEASE_SECONDS", "7")
    from_env = ServerSettings.from_env(tmp_path)
    assert (from_env.database_url, from_env.lease_seconds) == ("sqlite:////tmp/env.db", 7)


def test_bad_settings_are_named(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SCITQ_BENCH_LEASE_SECONDS", "soon")
    with pytest.raises(InvalidInput, match="lease_seconds"):
        ServerSettings.from_env(tmp_path)
    monkeypatch.delenv("SCITQ_BENCH_LEASE_SECONDS")
    (tmp_path / "settings.yaml").write_text("- not\n- a mapping\n")
    with pytest.raises(InvalidInput, match="mapping"):
        ServerSettings.from_env(tmp_path)


def test_client_config_is_private_and_used(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SCITQ_BENCH_CONFIG", str(tmp_path / "conf" / "client.json"))
    monkeypatch.delenv("SCITQ_BENCH_SERVER", raising=False)
    monkeypatch.delenv("SCITQ_BENCH_TOKEN", raising=False)
    path = write_client_config("http://h:5000/", "sqb_secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_client_settings()
    assert (loaded.server, loaded.token) == ("http://h:5000", "sqb_secret")
    monkeypatch.setenv("SCITQ_BENCH_TOKEN", "sqb_env")
    assert load_client_settings().token == "sqb_env"
