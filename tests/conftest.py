"""Shared fixtures: every database test runs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server

from scitq_bench.client import Client
from scitq_bench.server.app import create_app
from scitq_bench.server.db import Database
from scitq_bench.server.setup import init_server
from scitq_bench.settings import ServerSettings
from tests.support import objectstores
from tests.support.engine import TEST_IMAGE, ensure_test_image, start_engine
from tests.support.objectstores import AzureContainer, FtpSite, Missing, Processes
from tests.support.postgres import start_postgres

BACKENDS = ["sqlite", "postgresql"]
SUMMARY_PROPERTY = "scenario_summary"  # a test's figures, shown at the end of the run
T = TypeVar("T")


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


# -- object stores: moto's S3 server, Azurite, FTP and FTPS --------------------------------


@contextmanager
def _object_store(what: str, variable: str, start: Callable[[Processes], T]) -> Iterator[T]:
    """``start`` under a directory of its own, stopped afterwards. A component this
    machine lacks skips the tests, or fails them when the object stores are required
    (the test command requires them: it starts them and exports ``variable``)."""
    processes = Processes.create()
    try:
        try:
            value = start(processes)
        except Missing as exc:
            if objectstores.required():
                pytest.fail(f"{what} is required ({objectstores.REQUIRED}=required) but "
                            f"cannot start: {exc}")
            pytest.skip(f"{what} unavailable: {exc} (or set {variable})")
        yield value
    finally:
        processes.stop()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server: the one SCITQ_BENCH_TEST_S3_ENDPOINT names, else one started here."""
    explicit = os.environ.get(objectstores.S3_ENDPOINT)
    if explicit:
        yield explicit
        return
    with _object_store("moto's S3 server", objectstores.S3_ENDPOINT,
                       objectstores.start_moto) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """The connection string of Azurite's blob service (SCITQ_BENCH_TEST_AZURITE, else
    one started here, installing Azurite with npm when needed)."""
    explicit = os.environ.get(objectstores.AZURITE)
    if explicit:
        yield explicit
        return
    with _object_store("Azurite", objectstores.AZURITE,
                       objectstores.start_azurite) as connection_string:
        yield connection_string


@pytest.fixture(scope="session")
def ftp_servers() -> Iterator[tuple[FtpSite, FtpSite]]:
    """An FTP and an FTPS server sharing one served directory (SCITQ_BENCH_TEST_FTP...,
    else two started here)."""
    explicit = objectstores.ftp_sites_from(os.environ)
    if explicit:
        yield explicit
        return
    with _object_store("the FTP servers", objectstores.FTP,
                       objectstores.start_ftp_pair) as sites:
        yield sites


def _aws_environment(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """boto3 reaches ``endpoint`` with moto's test keys, whatever this machine's own
    AWS settings say."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                 "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh bucket on moto's S3 server; boto3's environment points at that server."""
    import boto3
    from botocore.exceptions import ClientError

    _aws_environment(monkeypatch, s3_endpoint)
    client = boto3.client("s3")
    name = f"t-{uuid.uuid4().hex[:20]}"
    client.create_bucket(Bucket=name)
    yield name
    with suppress(ClientError):  # frees moto's memory; a test may have removed it
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=item["Key"])
        client.delete_bucket(Bucket=name)


@pytest.fixture
def azure_container(azurite: str) -> Iterator[AzureContainer]:
    """A fresh container on Azurite (nothing global is set: stores get the connection
    string through StorageConfig, see storage_config_for)."""
    from azure.core.exceptions import AzureError
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite)
    name = f"t{uuid.uuid4().hex[:20]}"
    service.create_container(name)
    yield AzureContainer(objectstores.AZURITE_ACCOUNT, name, azurite)
    with suppress(AzureError):
        service.delete_container(name)
    service.close()


def _ftp_folder(site: FtpSite) -> Iterator[FtpSite]:
    test_site = replace(site, base=f"t-{uuid.uuid4().hex[:12]}")
    test_site.folder.mkdir()
    yield test_site
    shutil.rmtree(test_site.folder, ignore_errors=True)


@pytest.fixture
def ftp_site(ftp_servers: tuple[FtpSite, FtpSite]) -> Iterator[FtpSite]:
    """The plain FTP server, with a fresh folder ``base`` under its served ``root``."""
    yield from _ftp_folder(ftp_servers[0])


@pytest.fixture
def ftps_site(ftp_servers: tuple[FtpSite, FtpSite]) -> Iterator[FtpSite]:
    """The FTPS server (explicit TLS required; ``cafile`` trusts its certificate), with a
    fresh folder ``base`` under its served ``root``."""
    yield from _ftp_folder(ftp_servers[1])
