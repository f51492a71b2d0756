"""Shared fixtures: every database test runs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server

from scitq_bench.client import Client
from scitq_bench.server.app import create_app
from scitq_bench.server.db import Database
from scitq_bench.server.setup import init_server
from scitq_bench.settings import ServerSettings
from tests.support.engine import TEST_IMAGE, ensure_test_image, start_engine
from tests.support.postgres import start_postgres

BACKENDS = ["sqlite", "postgresql"]
SUMMARY_PROPERTY = "scenario_summary"  # a test's figures, shown at the end of the run


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Show the figures that fault and load tests recorded (``record_property`` with
    SUMMARY_PROPERTY), so a run's log states what each scenario measured, with xdist too."""
    lines = [
        f"{report.nodeid}: {value}"
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        if report.when == "call"
        for name, value in report.user_properties
        if name == SUMMARY_PROPERTY
    ]
    if lines:
        terminalreporter.section("scenario figures")
        for line in sorted(lines):
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    explicit = os.environ.get("SCITQ_BENCH_TEST_PG_URL")
    if explicit:
        yield explicit
        return
    server = start_postgres()
    try:
        yield server.url
    finally:
        server.stop()


def _fresh_postgres_database(admin_url: str) -> tuple[str, Any]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    return admin_url.rsplit("/", 1)[0] + f"/{name}", (engine, name)


def _drop_postgres_database(handle: Any) -> None:
    engine, name = handle
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@contextmanager
def fresh_database(backend: str, folder: Path, request: pytest.FixtureRequest,
                   name: str = "test.db") -> Iterator[str]:
    """The URL of a fresh, empty database on ``backend``: a SQLite file ``name`` in
    ``folder``, or a PostgreSQL database dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / name}"
        return
    url, handle = _fresh_postgres_database(request.getfixturevalue("postgres_url"))
    try:
        yield url
    finally:
        _drop_postgres_database(handle)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend."""
    with fresh_database(request.param, tmp_path, request) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> ServerSettings:
    return ServerSettings(
        data_dir=tmp_path / "data", database_url=database_url, lease_seconds=30.0,
        reaper_interval=0.2, run_reaper=False, claim_max_wait=5.0,
    )


@pytest.fixture
def admin_token(settings: ServerSettings) -> str:
    return init_server(settings)


@pytest.fixture
def db(settings: ServerSettings, admin_token: str) -> Iterator[Database]:
    database = Database(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture
def app(settings: ServerSettings, admin_token: str) -> Iterator[Any]:
    application = create_app(settings, start_reaper=False)
    yield application
    application.extensions["scitq_bench"].db.dispose()


class ApiClient:
    """Flask test client with a token and JSON helpers."""

    def __init__(self, flask_client: Any, token: str | None) -> None:
        self.flask = flask_client
        self.token = token

    def call(self, method: str, path: str, token: str | None = "default",
             prefix: str = "/api/v1", **kwargs: Any) -> Any:
        use = self.token if token == "default" else token
        headers = kwargs.pop("headers", {})
        if use:
            headers["Authorization"] = f"Bearer {use}"
        return self.flask.open(f"{prefix}{path}", method=method, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.call("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.call("PATCH", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.call("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.call("DELETE", path, **kwargs)


@pytest.fixture
def api(app: Any, admin_token: str) -> ApiClient:
    return ApiClient(app.test_client(), admin_token)


@contextmanager
def serving(application: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[int]:
    """``application`` behind a real threaded HTTP server in this process, on ``port``
    (0: a free one, yielded), shut down on exit."""
    server = make_server(host, port, application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()


@dataclass
class LiveServer:
    url: str
    token: str
    app: Any
    settings: ServerSettings

    def client(self, **kwargs: Any) -> Client:
        return Client(self.url, self.token, **kwargs)


@pytest.fixture
def live_server(settings: ServerSettings, admin_token: str) -> Iterator[LiveServer]:
    """The real app behind a real HTTP server (threaded, in this process), with the
    lease reaper running."""
    live_settings = ServerSettings(
        data_dir=settings.data_dir, database_url=settings.database_url, lease_seconds=3.0,
        reaper_interval=0.2, run_reaper=True, claim_max_wait=5.0,
    )
    application = create_app(live_settings)
    try:
        with serving(application) as port:
            yield LiveServer(f"http://127.0.0.1:{port}", admin_token, application,
                             live_settings)
    finally:
        application.extensions["scitq_bench_reaper"].stop()
        application.extensions["scitq_bench"].db.dispose()


# -- container engine ------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Docker-API engine with the busybox test image: the one ``DOCKER_HOST``
    names (the test command starts Podman's service and sets it), else a Podman service
    started here. Skips only when neither exists and the engine is not required; the
    test command requires it, so in CI these tests run or fail, never skip."""
    import docker

    explicit = os.environ.get("DOCKER_HOST")
    if explicit:
        client = docker.DockerClient(base_url=explicit, timeout=60)
        ensure_test_image(client, TEST_IMAGE, tmp_path_factory.mktemp("image"))
        client.close()
        yield explicit
        return
    if shutil.which("podman") is None:
        if os.environ.get("SCITQ_BENCH_TEST_ENGINE") == "required":
            pytest.fail("a container engine is required: podman is not installed")
        pytest.skip("no container engine: install podman or set DOCKER_HOST")
    engine = start_engine()
    try:
        yield engine.docker_host
    finally:
        engine.stop()


@pytest.fixture
def docker_client(docker_host: str) -> Iterator[Any]:
    import docker

    client = docker.DockerClient(base_url=docker_host, timeout=60)
    yield client
    client.close()


# -- the CLI ------------------------------------------------------------------------------


@pytest.fixture
def run(live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``run("task", "list", token=...)``: the CLI against the live server, with the
    admin token unless another is given, and no config file or environment of the
    machine running the tests. Returns click's ``Result``."""
    from click.testing import CliRunner

    from scitq_bench.cli.main import cli

    monkeypatch.setenv("SCITQ_BENCH_CONFIG", str(tmp_path / "absent-client.json"))
    monkeypatch.delenv("SCITQ_BENCH_SERVER", raising=False)
    monkeypatch.delenv("SCITQ_BENCH_TOKEN", raising=False)
    runner = CliRunner()

    def invoke(*args: Any, token: str | None = None, input: str | None = None) -> Any:
        return runner.invoke(cli, ["--server", live_server.url, "--token",
                                   token or live_server.token, *(str(a) for a in args)],
                             input=input)

    return invoke
