"""Settings: environment over the settings file over defaults; bad values are named."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from scitq_bench.exceptions import InvalidInput
from scitq_bench.settings import (
    SUBMISSION_LIMITS,
    ServerSettings,
    load_client_settings,
    write_client_config,
)


def test_defaults_settings_file_and_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SCITQ_BENCH_DATABASE_URL", raising=False)
    monkeypatch.delenv("SCITQ_BENCH_LEASE_SECONDS", raising=False)
    monkeypatch.delenv("SCITQ_BENCH_REAPER_INTERVAL", raising=False)
    default = ServerSettings.from_env(tmp_path)
    assert default.database_url == f"sqlite:///{tmp_path / 'scitq_bench.db'}"
    assert (default.lease_seconds, default.reaper_interval) == (30, 1)
    (tmp_path / "settings.yaml").write_text(
        "database_url: postgresql+psycopg2://u@db/x\nlease_seconds: 12\nreaper_interval: 3\n")
    from_file = ServerSettings.from_env(tmp_path)
    assert (from_file.database_url, from_file.lease_seconds, from_file.reaper_interval) == (
        "postgresql+psycopg2://u@db/x", 12, 3)
    monkeypatch.setenv("SCITQ_BENCH_DATABASE_URL", "sqlite:////tmp/env.db")
    monkeypatch.setenv("SCITQ_BENCH_LEASE_SECONDS", "7")
    monkeypatch.setenv("SCITQ_BENCH_REAPER_INTERVAL", "0.5")
    from_env = ServerSettings.from_env(tmp_path)
    assert (from_env.database_url, from_env.lease_seconds, from_env.reaper_interval) == (
        "sqlite:////tmp/env.db", 7, 0.5)


def test_bad_settings_are_named(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SCITQ_BENCH_LEASE_SECONDS", "soon")
    with pytest.raises(InvalidInput, match="lease_seconds"):
        ServerSettings.from_env(tmp_path)
    monkeypatch.delenv("SCITQ_BENCH_LEASE_SECONDS")
    (tmp_path / "settings.yaml").write_text("- not\n- a mapping\n")
    with pytest.raises(InvalidInput, match="mapping"):
        ServerSettings.from_env(tmp_path)


def test_prepared_statements_setting(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SCITQ_BENCH_DATABASE_PREPARE", raising=False)
    assert ServerSettings.from_env(tmp_path).database_prepare is True
    (tmp_path / "settings.yaml").write_text("database_prepare: false\n")
    assert ServerSettings.from_env(tmp_path).database_prepare is False
    for text, value in (("1", True), ("yes", True), ("0", False), ("Off", False)):
        monkeypatch.setenv("SCITQ_BENCH_DATABASE_PREPARE", text)
        assert ServerSettings.from_env(tmp_path).database_prepare is value
    monkeypatch.setenv("SCITQ_BENCH_DATABASE_PREPARE", "sometimes")
    with pytest.raises(InvalidInput, match="database_prepare must be true or false"):
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


def test_submission_archive_limits_from_the_settings_file(tmp_path: Path) -> None:
    assert ServerSettings.from_env(tmp_path).submission_limits == SUBMISSION_LIMITS
    (tmp_path / "settings.yaml").write_text(
        "submission_archive:\n  max_bytes: 1000000\n  max_ratio: null\n")
    limits = ServerSettings.from_env(tmp_path).submission_limits
    assert (limits.max_bytes, limits.max_files, limits.max_ratio) == (
        1_000_000, SUBMISSION_LIMITS.max_files, None)
    for text, message in (
            ("{max_files: 0}", "submission_archive.max_files: 0 is not a positive"),
            ("{max_size: 5}", "submission_archive.max_size: unknown"),
            ("[1, 2]", "submission_archive must be a mapping")):
        (tmp_path / "settings.yaml").write_text(f"submission_archive: {text}\n")
        with pytest.raises(InvalidInput, match=message):
            ServerSettings.from_env(tmp_path)


def test_store_and_log_directories(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SCITQ_BENCH_STORE_DIR", raising=False)
    monkeypatch.delenv("SCITQ_BENCH_LOG_DIR", raising=False)
    default = ServerSettings.from_env(tmp_path)
    assert (default.store_dir, default.log_dir) == (tmp_path / "store", tmp_path / "logs")
    built = ServerSettings(data_dir=tmp_path, database_url="sqlite://")  # as tests build it
    assert (built.store_dir, built.log_dir) == (tmp_path / "store", tmp_path / "logs")
    (tmp_path / "settings.yaml").write_text("store_dir: /shared/store\nlog_dir: ~/logs\n")
    from_file = ServerSettings.from_env(tmp_path)
    assert (from_file.store_dir, from_file.log_dir) == (
        Path("/shared/store"), Path.home() / "logs")
    monkeypatch.setenv("SCITQ_BENCH_STORE_DIR", "/mnt/nfs/store")
    monkeypatch.setenv("SCITQ_BENCH_LOG_DIR", "/mnt/nfs/logs")
    from_env = ServerSettings.from_env(tmp_path)
    assert (from_env.store_dir, from_env.log_dir) == (
        Path("/mnt/nfs/store"), Path("/mnt/nfs/logs"))


def test_relative_store_and_log_directories_are_refused(tmp_path: Path, monkeypatch) -> None:
    """Processes sharing a store may run from different folders: only an absolute path
    names the same directory for all of them."""
    monkeypatch.setenv("SCITQ_BENCH_STORE_DIR", "store")
    with pytest.raises(InvalidInput, match="store_dir must be an absolute path, got 'store'"):
        ServerSettings.from_env(tmp_path)
    monkeypatch.delenv("SCITQ_BENCH_STORE_DIR")
    monkeypatch.delenv("SCITQ_BENCH_LOG_DIR", raising=False)
    (tmp_path / "settings.yaml").write_text("log_dir: ./logs\n")
    with pytest.raises(InvalidInput, match="log_dir must be an absolute path"):
        ServerSettings.from_env(tmp_path)
    (tmp_path / "settings.yaml").write_text("log_dir: [a, b]\n")
    with pytest.raises(InvalidInput, match="log_dir must be a directory path"):
        ServerSettings.from_env(tmp_path)


def test_worker_transactions_setting(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SCITQ_BENCH_WORKER_TRANSACTIONS", raising=False)
    assert ServerSettings.from_env(tmp_path).worker_transactions == 8
    (tmp_path / "settings.yaml").write_text("worker_transactions: 12\n")
    assert ServerSettings.from_env(tmp_path).worker_transactions == 12
    monkeypatch.setenv("SCITQ_BENCH_WORKER_TRANSACTIONS", "3")
    assert ServerSettings.from_env(tmp_path).worker_transactions == 3
    monkeypatch.setenv("SCITQ_BENCH_WORKER_TRANSACTIONS", "0")
    with pytest.raises(InvalidInput, match="worker_transactions"):
        ServerSettings.from_env(tmp_path)
