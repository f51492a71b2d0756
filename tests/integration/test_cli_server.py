"""Server-side commands: ``server init`` and ``server token`` in process (on SQLite and
PostgreSQL), ``server run`` as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from scitq_bench.cli.main import cli
from tests.support.postgres import free_port


@pytest.fixture
def server_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Path:
    """A temp client config path and the backend's database; returns the config path."""
    config = tmp_path / "config" / "client.json"
    monkeypatch.setenv("SCITQ_BENCH_CONFIG", str(config))
    monkeypatch.setenv("SCITQ_BENCH_DATABASE_URL", database_url)
    for name in ("SCITQ_BENCH_SERVER", "SCITQ_BENCH_TOKEN", "SCITQ_BENCH_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    return config


def test_server_init_and_token(server_env: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    data_dir = tmp_path / "data"
    first = runner.invoke(cli, ["server", "init", "--data-dir", str(data_dir),
                                "--url", "http://127.0.0.1:5999/"])
    assert first.exit_code == 0, first.output
    stored = json.loads(server_env.read_text())
    assert stored["server"] == "http://127.0.0.1:5999"
    assert stored["token"] in first.stdout and str(server_env) in first.stdout
    assert stat.S_IMODE(server_env.stat().st_mode) == 0o600

    again = runner.invoke(cli, ["server", "init", "--data-dir", str(data_dir)])
    assert again.exit_code == 1 and "Traceback" not in again.output
    assert "already initialised" in again.stderr and "--new-token" in again.stderr
    assert json.loads(server_env.read_text()) == stored  # the config is left alone

    renewed = runner.invoke(cli, ["server", "init", "--data-dir", str(data_dir), "--new-token"])
    assert renewed.exit_code == 0, renewed.output
    assert json.loads(server_env.read_text())["token"] not in (stored["token"], None)

    minted = runner.invoke(cli, ["server", "token", "--role", "enroll", "--name", "ci",
                                 "--data-dir", str(data_dir)])
    assert minted.exit_code == 0, minted.output
    assert minted.stdout.strip().startswith("sqb_")
    bad_role = runner.invoke(cli, ["server", "token", "--role", "worker"])
    assert bad_role.exit_code == 2


def test_server_run_answers_health(tmp_path: Path) -> None:
    """``scitq-bench server run`` (gunicorn) on a free port with a temp data dir."""
    port = free_port()
    env: dict[str, Any] = {k: v for k, v in os.environ.items()
                           if not k.startswith("SCITQ_BENCH_")}
    script = Path(sys.executable).with_name("scitq-bench")
    command = ([str(script)] if script.exists() else [sys.executable, "-m", "scitq_bench.cli.main"])
    process = subprocess.Popen(
        [*command, "server", "run", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
            try:
                answer = requests.get(f"{url}/api/v1/health", timeout=5)
                break
            # refused before gunicorn listens; accepted but unanswered while its API
            # processes boot
            except (requests.ConnectionError, requests.Timeout):
                assert time.monotonic() < deadline, "server run did not answer in 30 s"
                time.sleep(0.1)
        assert answer.status_code == 200 and answer.json()["status"] == "ok"
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output.decode()
    assert f"listening on {url}" in output.decode()
