"""A busy database answers 503 with Retry-After, never 500, and the client waits it out.

The contention is real: another connection holds SQLite's write lock (or a PostgreSQL
table lock) for longer than the server's bound."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, select, text

from scitq_bench.client import Client
from scitq_bench.exceptions import Busy
from scitq_bench.server.app import create_app
from scitq_bench.server.db import Database
from scitq_bench.server.queue.models import Batch
from scitq_bench.server.setup import init_server
from scitq_bench.settings import ServerSettings
from tests.conftest import serving
from tests.support.stack import wait_until

BOUND = 0.5  # seconds the server waits for the database in these tests


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """(url, admin token, database file) of a real HTTP server on SQLite whose
    requests wait at most BOUND seconds for the database."""
    path = tmp_path / "busy.db"
    settings = ServerSettings(data_dir=tmp_path / "data", database_url=f"sqlite:///{path}",
                              run_reaper=False, database_busy_timeout=BOUND)
    token = init_server(settings)
    app = create_app(settings, start_reaper=False)
    try:
        with serving(app) as port:
            yield f"http://127.0.0.1:{port}", token, path
    finally:
        app.extensions["scitq_bench"].db.dispose()


def hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another process's writer, as SQLite sees it: a connection holding the write lock."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("BEGIN IMMEDIATE")
    return connection


def test_a_write_that_cannot_get_the_lock_in_time_is_answered_503_with_retry_after(
        sqlite_server: tuple[str, str, Path]) -> None:
    url, token, path = sqlite_server
    headers = {"Authorization": f"Bearer {token}"}
    holder = hold_write_lock(path)
    try:
        began = time.monotonic()
        answer = requests.post(f"{url}/api/v1/batches", json={"name": "blocked"},
                               headers=headers, timeout=30)
        waited = time.monotonic() - began
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["Retry-After"]) >= 1
        assert answer.json()["error"] == "busy"
        assert waited >= BOUND * 0.9  # it did wait (bounded) before giving up
        reading = requests.get(f"{url}/api/v1/batches", headers=headers, timeout=30)
        assert reading.status_code == 200  # readers never wait for the writer
    finally:
        holder.rollback()
        holder.close()
    answer = requests.post(f"{url}/api/v1/batches", json={"name": "blocked"},
                           headers=headers, timeout=30)
    assert answer.status_code == 201, answer.text


def test_the_client_waits_out_a_busy_server_and_succeeds(
        sqlite_server: tuple[str, str, Path], caplog: pytest.LogCaptureFixture) -> None:
    url, token, path = sqlite_server
    caplog.set_level(logging.WARNING, logger="scitq_bench.client")
    client = Client(url, token, retry_for=30)
    outcome: dict[str, Any] = {}

    def create() -> None:
        try:
            outcome["batch"] = client.batch_create("patient")
        except Exception as exc:  # noqa: BLE001 - handed to the test's thread
            outcome["error"] = exc

    holder = hold_write_lock(path)
    worker = threading.Thread(target=create)
    try:
        worker.start()
        wait_until(lambda: any("is busy" in r.getMessage() for r in caplog.records),
                   timeout=20, interval=0.05, what="the client to be told the server is busy")
    finally:
        holder.rollback()
        holder.close()
    worker.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["batch"]["name"] == "patient"
    busy_lines = [r for r in caplog.records if "is busy" in r.getMessage()]
    assert len(busy_lines) == 1  # one line per outage, however many tries


def test_a_client_that_runs_out_of_time_raises_busy(
        sqlite_server: tuple[str, str, Path]) -> None:
    url, token, path = sqlite_server
    holder = hold_write_lock(path)
    try:
        with pytest.raises(Busy) as caught:
            Client(url, token, retry_for=0).batch_create("never")
    finally:
        holder.rollback()
        holder.close()
    assert caught.value.retry_after >= 1
    assert "busy" in str(caught.value)


def test_a_transaction_kept_waiting_past_the_bound_raises_busy(
        database_url: str, admin_token: str) -> None:
    """Both databases: the wait for a lock another connection holds ends with ``Busy``
    (SQLite: the write lock; PostgreSQL: a table lock, given up through lock_timeout)."""
    db = Database(database_url, busy_timeout=BOUND)
    holder = create_engine(database_url).connect()
    try:
        if db.is_sqlite:
            holder.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            holder.begin()
            holder.execute(text("LOCK TABLE batch IN ACCESS EXCLUSIVE MODE"))
        began = time.monotonic()
        with pytest.raises(Busy), db.write() as session:
            if not db.is_sqlite:
                session.execute(text("SET LOCAL lock_timeout = '300ms'"))
            session.execute(select(Batch)).all()
        assert time.monotonic() - began < BOUND + 5
    finally:
        holder.rollback()
        holder.close()
        holder.engine.dispose()
    with db.write() as session:  # free again: the same call goes through
        session.execute(select(Batch)).all()
    db.dispose()


def test_a_gui_change_on_a_busy_database_says_so_and_changes_nothing(
        sqlite_server: tuple[str, str, Path]) -> None:
    url, token, path = sqlite_server
    batch = requests.post(f"{url}/api/v1/batches", json={"name": "gui"}, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}).json()
    browser = requests.Session()

    def csrf(page: str) -> str:
        return browser.get(f"{url}{page}", timeout=30).text.split(
            'name="csrf-token" content="')[1].split('"')[0]

    signed = browser.post(f"{url}/ui/login", timeout=30, allow_redirects=False,
                          data={"token": token, "csrf_token": csrf("/ui/login")})
    assert signed.status_code == 302
    form = {"csrf_token": csrf("/ui/batches"), "signal": "none", "workers": "1"}
    holder = hold_write_lock(path)
    try:
        answer = browser.post(f"{url}/ui/batches/{batch['id']}/stop", data=form, timeout=30)
    finally:
        holder.rollback()
        holder.close()
    assert answer.status_code == 200 and "database is busy" in answer.text
    status = requests.get(f"{url}/api/v1/batches/{batch['id']}", timeout=30,
                          headers={"Authorization": f"Bearer {token}"}).json()["status"]
    assert status == "running"


def test_connections_the_database_dropped_cost_one_503_then_are_replaced(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """PostgreSQL restarted or its sessions killed: the pool holds dead connections, not
    checked at each checkout. The first request on one is answered 503 with
    Retry-After (nothing half-done: the client sends it again), and the pool replaces
    every connection older than that failure, so the next requests succeed."""
    from tests.conftest import fresh_database

    with fresh_database("postgresql", tmp_path, request) as database_url:
        settings = ServerSettings(data_dir=tmp_path / "data", database_url=database_url,
                                  run_reaper=False)
        token = init_server(settings)
        app = create_app(settings, start_reaper=False)
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with serving(app) as port:
                url = f"http://127.0.0.1:{port}/api/v1"
                for name in ("a", "b", "c"):  # several connections in the pool
                    assert requests.post(f"{url}/tasks", json={"command": "true", "batch": name},
                                         headers=headers, timeout=10).status_code == 201
                killer = create_engine(database_url)
                with killer.connect() as connection:
                    killed = connection.execute(text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )).scalar_one()
                killer.dispose()
                assert killed >= 1
                answers = [requests.get(f"{url}/tasks", headers=headers, timeout=10)
                           for _ in range(5)]
                codes = [a.status_code for a in answers]
                assert codes == [503, 200, 200, 200, 200], codes
                assert answers[0].headers["Retry-After"]
                assert "connection to it was lost" in answers[0].json()["message"]
                assert len(answers[-1].json()["tasks"]) == 3
        finally:
            app.extensions["scitq_bench"].db.dispose()
