"""Helpers for GUI tests: the Flask test client as a browser uses it (cookies, CSRF),
signing a Chromium page in, screenshots kept as artifacts, and the accounts, workers
and tasks the pages show."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scitq_bench.server.bench.accounts import create_account

if TYPE_CHECKING:
    from tests.conftest import LiveServer

ARTIFACTS = Path(os.environ.get("SCITQ_BENCH_ARTIFACTS") or Path(__file__).parents[2] / "test-artifacts")


@contextmanager
def module_server(folder: Path) -> Iterator[LiveServer]:
    """A live server on its own SQLite database under ``folder``, for a whole test
    module (browser tests share one: starting Chromium pages is the slow part)."""
    from scitq_bench.server.app import create_app
    from scitq_bench.server.setup import init_server
    from scitq_bench.settings import ServerSettings
    from tests.conftest import LiveServer, serving

    settings = ServerSettings(data_dir=folder / "data", database_url=f"sqlite:///{folder / 'db'}",
                              lease_seconds=30.0, reaper_interval=0.2, run_reaper=False,
                              claim_max_wait=1.0)
    token = init_server(settings)
    application = create_app(settings, start_reaper=False)
    try:
        with serving(application) as port:
            yield LiveServer(f"http://127.0.0.1:{port}", token, application, settings)
    finally:
        application.extensions["scitq_bench"].db.dispose()


CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


class GuiClient:
    """The Flask test client as a browser would use it: cookies kept, the CSRF token
    read from the last page and sent with every form."""

    def __init__(self, flask_client: Any) -> None:
        self.flask = flask_client
        self.csrf = ""

    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.flask.get(path, **kwargs)
        found = CSRF.search(response.get_data(as_text=True))
        if found:
            self.csrf = found.group(1)
        return response

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True,
             **kwargs: Any) -> Any:
        if not self.csrf:
            self.get("/ui/login")
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.csrf)
        return self.flask.post(path, data=form, **kwargs)

    def sign_in(self, token: str) -> Any:
        self.get("/ui/login")
        response = self.post("/ui/login", {"token": token})
        assert response.status_code == 302, response.get_data(as_text=True)
        self.get("/ui/benchmarks")  # the session's own CSRF token
        return response


def sign_in(page: Any, base_url: str, token: str, next_path: str = "/ui/") -> None:
    page.goto(f"{base_url}/ui/login?next={next_path}")
    page.fill("#f-token", token)
    page.click("#login-form button[type=submit]")
    page.wait_for_load_state("load")


def screenshot(page: Any, name: str) -> Path:
    """Keep a picture of the page as a test artifact."""
    target = ARTIFACTS / "screenshots" / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    return target


def account_token(app, name: str, role: str) -> str:
    with app.extensions["scitq_bench"].db.write() as session:
        return create_account(session, name, role)[1]


def create(api, batch: str = "b1", **fields) -> dict:
    answer = api.post("/tasks", json={"command": "true", "batch": batch, **fields})
    assert answer.status_code == 201, answer.json
    return answer.json["tasks"][0]


def batch_of(api, name: str) -> dict:
    return api.get(f"/batches?name={name}").json["batches"][0]


def register(api, name: str = "w1", concurrency: int = 2) -> tuple[int, str]:
    answer = api.post("/workers", json={"name": name, "concurrency": concurrency})
    return answer.json["worker"]["id"], answer.json["token"]
