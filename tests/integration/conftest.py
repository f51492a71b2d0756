"""Fixtures of the integration tests that sweep the whole API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from scitq_bench.server import web
from scitq_bench.server.app import create_app
from scitq_bench.server.recruit.runtime import EXTENSION as RECRUITMENT
from scitq_bench.server.setup import init_server
from scitq_bench.settings import ServerSettings

WAIT = 0.01  # long polls (claims, heartbeats, log tails) answer at once


@pytest.fixture
def fuzzed_app(tmp_path: Any, database_url: str,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """(app, admin token) on a fresh database: no reaper, no recruitment (nothing a
    sweep sends can start a worker, a machine or Ansible), long polls cut short."""
    monkeypatch.setattr(web, "MAX_WAIT", WAIT)
    server_settings = ServerSettings(data_dir=tmp_path / "data", database_url=database_url,
                                     run_reaper=False, claim_max_wait=WAIT)
    token = init_server(server_settings)
    app = create_app(server_settings, start_reaper=False)
    assert RECRUITMENT not in app.extensions
    yield app, token
    app.extensions["scitq_bench"].db.dispose()
