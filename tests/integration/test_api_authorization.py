"""Every operation of the OpenAPI document, tried with every kind of token: none, an
enrollment token, a worker on its own records and on another worker's, a participant
on its own submission and on another's, an organizer on its own benchmark and on
another's, and an admin.

What each (operation, token) pair must get comes from two tables: OWNERSHIP says which
records an operation acts on, EXPECTED says, for an access level and that ownership,
who is let through and how the others are refused. An operation missing from them
fails the test, so a new route cannot escape it. "Allowed" means authorization let the
call through: any answer but 401 and 403 (the minimal bodies sent here are often
refused as invalid afterwards, which is fine). Authorization does not depend on the
database, so this runs on SQLite only, keeping the suite fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scitq_bench.server.setup import create_token
from scitq_bench.settings import ServerSettings
from tests.support.access_world import Side, World, build_world

ALLOW = "allowed"

# -- who acts on whose records --------------------------------------------------------

NONE, WORKER_OWNED, SUBMISSION, MANAGED = "none", "worker", "submission", "managed"
SUBMIT = "submit"  # participants submit to any phase they see, organizers to their own

# roles: (which token, whose records the path names)
ROLES = ("none", "enroll", "metrics", "worker_other", "participant_other", "organizer_other",
         "participant_own", "organizer_own", "worker_own", "admin")  # refusals first

OWNERSHIP: dict[str, str] = {
    # the queue (admin only, or a worker's own records)
    "GET /batches": NONE, "POST /batches": NONE, "GET /batches/{batch_id}": NONE,
    "PATCH /batches/{batch_id}": NONE, "POST /batches/{batch_id}/stop": NONE,
    "POST /batches/{batch_id}/go": NONE, "DELETE /batches/{batch_id}": NONE,
    "GET /executions": NONE, "GET /executions/{execution_id}": NONE,
    "GET /executions/{execution_id}/logs/{stream}": NONE,
    "PUT /executions/{execution_id}/logs/{stream}": WORKER_OWNED,
    "POST /tasks": NONE, "GET /tasks": NONE, "GET /tasks/{task_id}": NONE,
    "PATCH /tasks/{task_id}": NONE, "DELETE /tasks/{task_id}": NONE,
    "POST /tasks/{task_id}/relaunch": NONE, "POST /tasks/{task_id}/signal": NONE,
    "GET /tasks/{task_id}/executions": NONE, "GET /tasks/{task_id}/output": NONE,
    "POST /workers": NONE, "GET /workers": NONE, "GET /workers/{worker_id}": WORKER_OWNED,
    "PATCH /workers/{worker_id}": NONE, "DELETE /workers/{worker_id}": NONE,
    "POST /workers/{worker_id}/heartbeat": WORKER_OWNED,
    "POST /workers/{worker_id}/claim": WORKER_OWNED,
    "POST /workers/{worker_id}/report": WORKER_OWNED,
    "POST /workers/{worker_id}/evicted": WORKER_OWNED,
    "GET /files": WORKER_OWNED, "GET /files/{path}": WORKER_OWNED,
    "PUT /files/{path}": WORKER_OWNED, "DELETE /files/{path}": NONE,
    # meta
    "GET /health": NONE, "GET /openapi.json": NONE, "GET /package": NONE,
    # probes and metrics, at the root
    "GET /healthz": NONE, "GET /readyz": NONE, "GET /metrics": NONE,
    # recruitment (admin only)
    "GET /flavors": NONE, "POST /flavors/update": NONE, "GET /quotas": NONE,
    "PUT /quotas/{provider}/{region}": NONE, "POST /recruiters": NONE,
    "GET /recruiters": NONE, "PATCH /recruiters/{recruiter_id}": NONE,
    "DELETE /recruiters/{recruiter_id}": NONE, "POST /workers/deploy": NONE,
    "POST /workers/{worker_id}/undeploy": NONE, "GET /jobs": NONE, "GET /jobs/{job_id}": NONE,
    "GET /jobs/{job_id}/log": NONE, "POST /jobs/{job_id}/retry": NONE,
    "POST /jobs/{job_id}/cancel": NONE, "DELETE /jobs/{job_id}": NONE,
    "GET /providers": NONE, "POST /providers/{name}/check": NONE,
    "POST /providers/reconcile": NONE, "GET /costs": NONE,
    # benchmarks (both public: every account sees them and their phases)
    "POST /accounts": NONE, "GET /accounts": NONE, "POST /accounts/{account_id}/tokens": NONE,
    "DELETE /accounts/{account_id}": NONE, "GET /me": NONE,
    "POST /benchmarks": NONE, "GET /benchmarks": NONE, "GET /benchmarks/{benchmark_id}": NONE,
    "DELETE /benchmarks/{benchmark_id}": MANAGED, "PATCH /phases/{phase_id}": MANAGED,
    "PATCH /benchmarks/{benchmark_id}/tasks/{index}": MANAGED,
    "PATCH /benchmarks/{benchmark_id}": MANAGED,
    "PUT /benchmarks/{benchmark_id}/priority": MANAGED,
    "POST /phases/{phase_id}/submissions": SUBMIT, "GET /submissions": NONE,
    "GET /submissions/{submission_id}": SUBMISSION,
    "GET /submissions/{submission_id}/logs": SUBMISSION,
    "GET /submissions/{submission_id}/outputs": SUBMISSION,
    "GET /submissions/{submission_id}/outputs/{path}": SUBMISSION,
    "GET /submissions/{submission_id}/detailed_results": SUBMISSION,
    "POST /submissions/{submission_id}/rerun": SUBMISSION,
    "POST /phases/{phase_id}/rerun": MANAGED,
    "POST /submissions/{submission_id}/cancel": SUBMISSION,
    "DELETE /submissions/{submission_id}/attempts/{number}": SUBMISSION,
    "DELETE /submissions/{submission_id}": SUBMISSION,
    "PUT /submissions/{submission_id}/leaderboard": SUBMISSION,
    "GET /phases/{phase_id}/leaderboards/{key}": NONE,
    "GET /phases/{phase_id}/leaderboards/{key}/csv": NONE,
}


def _outcomes(allowed: set[str], refused: dict[str, int] | None = None) -> dict[str, Any]:
    """Every role's outcome: allowed, 401 without a token, the given refusals, else 403."""
    table: dict[str, Any] = {role: 403 for role in ROLES}
    table["none"] = 401
    table.update(refused or {})
    table.update({role: ALLOW for role in allowed})
    return table


EXPECTED: dict[tuple[str, str], dict[str, Any]] = {
    ("public", NONE): {role: ALLOW for role in ROLES},
    ("admin", NONE): _outcomes({"admin"}),
    ("enroll", NONE): _outcomes({"admin", "enroll"}),
    ("metrics", NONE): _outcomes({"admin", "metrics"}),
    ("worker", WORKER_OWNED): _outcomes({"admin", "worker_own"}),
    ("bench", NONE): _outcomes({"admin", "participant_own", "participant_other",
                                "organizer_own", "organizer_other"}),
    ("bench", SUBMIT): _outcomes({"admin", "participant_own", "participant_other",
                                  "organizer_own"}),
    ("bench", SUBMISSION): _outcomes({"admin", "participant_own", "organizer_own"},
                                     {"participant_other": 404, "organizer_other": 404}),
    ("organize", NONE): _outcomes({"admin", "organizer_own", "organizer_other"}),
    ("organize", MANAGED): _outcomes({"admin", "organizer_own"}),
    ("organize", SUBMISSION): _outcomes({"admin", "organizer_own"}, {"organizer_other": 404}),
}

# -- requests -------------------------------------------------------------------------

# bodies valid enough to reach the view's ownership check (default: {})
BODIES: dict[str, dict[str, Any]] = {
    "POST /workers/{worker_id}/report": {"events": []},
    "PUT /submissions/{submission_id}/leaderboard": {"on": True},
    "PATCH /benchmarks/{benchmark_id}/tasks/{index}": {"gpu": 0},
    "PATCH /benchmarks/{benchmark_id}": {"docker_image": ""},
    "PUT /benchmarks/{benchmark_id}/priority": {"priority": None},
}


# calls that leave every record and token of the world as the next operations need it
# (the others, when they go through, are followed by a fresh world)
KEEP_WORLD = frozenset({
    "PUT /files/{path}", "PUT /executions/{execution_id}/logs/{stream}",
    "POST /workers/{worker_id}/claim", "POST /workers/{worker_id}/report",
    "POST /accounts/{account_id}/tokens", "PATCH /phases/{phase_id}",
    "PATCH /benchmarks/{benchmark_id}/tasks/{index}", "PUT /quotas/{provider}/{region}",
    "POST /flavors/update", "PATCH /benchmarks/{benchmark_id}",
    "PUT /benchmarks/{benchmark_id}/priority",
})


def _path_value(name: str, key: str, side: Side) -> Any:
    """The value of a path parameter, taken from ``side``'s records."""
    if name == "path":
        if key.startswith("GET /files"):
            return side.reference_path  # an input of the side's live execution
        if key.startswith("PUT /files"):
            return f"{side.output_path}/probe.txt"  # under its output
        return "scores.json"
    values = {
        "worker_id": side.worker_id, "execution_id": side.execution_id,
        "task_id": side.task_id, "batch_id": side.batch_id, "stream": "stdout",
        "benchmark_id": side.benchmark_id, "phase_id": side.phase_id,
        "submission_id": side.submission_id, "number": 2, "index": 0,
        "key": side.leaderboard_key, "account_id": side.participant_account_id,
        "recruiter_id": 999_999, "job_id": 999_999, "provider": "local",
        "region": "local", "name": "local",
    }
    if name not in values:
        raise AssertionError(f"{key}: no value for path parameter {name!r}; add one")
    return values[name]


def _url(key: str, side: Side) -> str:
    _, template = key.split(" ", 1)
    url = template
    for segment in template.split("/"):
        if segment.startswith("{"):
            name = segment.strip("{}")
            url = url.replace(segment, str(_path_value(name, key, side)), 1)
    if key == "GET /files":
        url += f"?prefix={side.reference_path}"
    return url


@dataclasses.dataclass
class Tokens:
    enroll: str
    admin: str
    metrics: str


def _token_and_side(role: str, world: World, tokens: Tokens) -> tuple[str | None, Side]:
    kind, _, whose = role.partition("_")
    side = world.other if whose == "other" else world.mine
    token = {
        "none": None, "enroll": tokens.enroll, "admin": tokens.admin, "metrics": tokens.metrics,
        "worker": world.mine.worker_token, "participant": world.mine.participant_token,
        "organizer": world.mine.organizer_token,
    }[kind]
    return token, side


def _call(api: Any, key: str, operation: dict[str, Any], token: str | None,
          side: Side) -> Any:
    method = key.split(" ", 1)[0]
    content = operation.get("requestBody", {}).get("content", {})
    kwargs: dict[str, Any] = {}
    if "application/json" in content:
        kwargs["json"] = BODIES.get(key, {})
    elif content:
        kwargs["data"] = b""
    url = _url(key, side)
    if url.startswith(ROOT_PATHS):  # served at the root, not under /api/v1
        return api.call(method, url, token=token, prefix="", **kwargs)
    return api.call(method, url, token=token, **kwargs)


ROOT_PATHS = ("/healthz", "/readyz", "/metrics")


def _agrees(expected: Any, status: int) -> bool:
    return status not in (401, 403) if expected == ALLOW else status == expected


# -- the test -------------------------------------------------------------------------


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite only: authorization does not depend on the database, and PostgreSQL
    would double this test's time."""
    yield f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def settings(settings: ServerSettings, tmp_path: Path) -> ServerSettings:
    """A worker package to serve that is already there (building one takes a while)."""
    wheel = tmp_path / "scitq_bench-0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    return dataclasses.replace(settings, recruitment={"package": str(wheel)})


def _operations(api: Any) -> list[tuple[str, dict[str, Any]]]:
    """(``METHOD /path``, operation) for each operation of the document; reads first,
    so that the fewest calls change the world before others are tried on it."""
    document = api.get("/openapi.json", token=None).json
    found = [(f"{method.upper()} {path.removeprefix('/api/v1')}", operation)
             for path, methods in document["paths"].items()
             for method, operation in methods.items()]
    return sorted(found, key=lambda item: (not item[0].startswith("GET "), item[0]))


def test_the_tables_cover_every_operation(api) -> None:
    """A route added without deciding who may call it fails here."""
    missing = []
    for key, operation in _operations(api):
        rule = OWNERSHIP.get(key)
        if rule is None or (operation["x-access"], rule) not in EXPECTED:
            missing.append(f"{key} (access {operation['x-access']}, ownership {rule})")
    assert not missing, "no expected outcome for: " + ", ".join(missing)


def test_every_operation_for_every_role(api, settings, tmp_path) -> None:
    tokens = Tokens(enroll=create_token(settings, "enroll"), admin=api.token,
                    metrics=create_token(settings, "metrics"))
    world = build_world(api, tmp_path)
    wrong: list[str] = []
    for key, operation in _operations(api):
        expected = EXPECTED[(operation["x-access"], OWNERSHIP[key])]
        changed = False
        for role in ROLES:
            token, side = _token_and_side(role, world, tokens)
            answer = _call(api, key, operation, token, side)
            if not _agrees(expected[role], answer.status_code):
                wrong.append(f"{key} as {role}: expected {expected[role]}, got "
                             f"{answer.status_code} {answer.get_data()[:200]!r}")
            changed |= (not key.startswith("GET ") and key not in KEEP_WORLD
                        and answer.status_code < 300)
        if changed:  # a call went through and may have spent the world: a fresh one
            world = build_world(api, tmp_path)

    assert not wrong, "\n".join(wrong)
