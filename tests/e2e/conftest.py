from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _drop_postgres_database, _fresh_postgres_database
from tests.support.stack import Stack


@pytest.fixture
def stack(tmp_path: Path, database_url: str, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A real server process on a fresh database (SQLite or PostgreSQL)."""
    system = Stack(root=tmp_path / "stack", database_url=database_url, lease_seconds=3.0)
    system.init()
    system.start_server()
    yield system
    system.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print("---- server log ----\n" + system.tail("server.log"))
        for name in system.workers:
            print(f"---- worker {name} log ----\n" + system.tail(f"worker-{name}.log"))


@pytest.fixture
def pg_stack(tmp_path: Path, postgres_url: str, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A stack on a fresh PostgreSQL database, no server started yet (what needs
    several processes or replicas: SQLite serves from one process)."""
    url, handle = _fresh_postgres_database(postgres_url)
    stack = Stack(root=tmp_path / "stack", database_url=url, access_log=True)
    stack.init()
    try:
        yield stack
    finally:
        stack.stop()
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            for log in ["server.log", *(r.log for r in stack.replicas),
                        *(f"worker-{name}.log" for name in stack.workers)]:
                print(f"---- {log} ----\n" + stack.tail(log))
        _drop_postgres_database(handle)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
