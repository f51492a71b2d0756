"""/metrics against what the API answers for the same queue, the probes, request ids
and JSON logs; on SQLite and PostgreSQL. Several processes: tests/e2e/test_metrics_processes.py."""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text, update

from scitq_bench.server.db import Database
from scitq_bench.server.logformat import JsonFormatter
from scitq_bench.server.metrics import METRIC_NAMES
from scitq_bench.server.queue.models import Worker
from scitq_bench.server.recruit.models import Job
from scitq_bench.server.request_ids import RequestIdFilter
from scitq_bench.server.setup import create_token
from tests.support.api import FakeWorker, account, import_bundle, register, submit
from tests.support.bundles import make_bundle, make_submission


def scrape(api: Any, token: str | None = "default") -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label pairs: value}} of one scrape."""
    answer = api.call("GET", "/metrics", token=token, prefix="")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.content_type.startswith("text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = \
                sample.value
    return samples


def by(samples: dict[tuple, float], *names: str) -> dict[tuple, float]:
    """Values keyed by the given labels' values, zero values left out."""
    return {tuple(dict(labels)[n] for n in names): value
            for labels, value in samples.items() if value}


def family_names(api: Any) -> set[str]:
    """The families one scrape declares, under the names queries use."""
    text_ = api.call("GET", "/metrics", prefix="").get_data(as_text=True)
    return {f.name + ("_total" if f.type == "counter" else "")
            for f in text_string_to_metric_families(text_)}


def test_every_family_is_exposed(api) -> None:
    assert set(METRIC_NAMES) <= family_names(api)
    assert by(scrape(api)["scitq_bench_build_info"], "version")


def test_the_queue_metrics_equal_what_the_api_answers(api, settings) -> None:
    for batch, commands in (("metrics-a", ["true"] * 3 + ["false"] * 2),
                            ("metrics-b", ["true"] * 4)):
        answer = api.post("/tasks", json={"tasks": [{"command": c, "batch": batch}
                                                    for c in commands]})
        assert answer.status_code == 201, answer.json
    worker_id, token = register(api, "m1", concurrency=3)
    register(api, "m2")
    claimed = api.post(f"/workers/{worker_id}/claim?max=3", token=token).json["executions"]
    events = [{"execution_id": e["execution_id"], "status": "running"} for e in claimed]
    events += [{"execution_id": claimed[0]["execution_id"], "status": "succeeded",
                "duration": 0.1, "return_code": 0},
               {"execution_id": claimed[1]["execution_id"], "status": "failed",
                "duration": 0.2, "return_code": 3, "reason": "exit_code"}]
    answer = api.post(f"/workers/{worker_id}/report", token=token, json={"events": events})
    assert answer.status_code == 200, answer.json
    assert api.patch(f"/workers/{worker_id}", json={"status": "paused"}).status_code == 200

    exposed = scrape(api)
    tasks = Counter((t["batch"], t["status"]) for t in api.get("/tasks?limit=1000").json["tasks"])
    assert by(exposed["scitq_bench_tasks"], "batch", "status") == dict(tasks)
    executions = api.get("/executions").json["executions"]
    ended = Counter((e["status"], e.get("reason") or "none") for e in executions
                    if e["status"] not in ("pending", "accepted", "running"))
    assert by(exposed["scitq_bench_executions_ended_total"], "outcome", "reason") == \
        dict(ended) == {("succeeded", "none"): 1, ("failed", "exit_code"): 1}
    started = sum(1 for e in executions if e.get("started_at"))
    assert exposed["scitq_bench_executions_started_total"][()] == started == 3
    workers = Counter((w["status"], w.get("provider") or "none")
                      for w in api.get("/workers").json["workers"])
    assert by(exposed["scitq_bench_workers"], "status", "provider") == dict(workers)


def test_machines_jobs_submissions_and_scoring(api, settings, tmp_path: Path) -> None:
    for name, provider, cost in (("h1", "aws", 0.5), ("h2", "aws", 0.25), ("h3", "azure", 1.0)):
        register(api, name)
        with Database(settings.database_url).write() as session:
            session.execute(update(Worker).where(Worker.name == name).values(
                provider=provider, instance_id=f"i-{name}", cost_per_hour=cost))
    with Database(settings.database_url).write() as session:
        session.execute(update(Worker).where(Worker.name == "h3").values(
            released_at=datetime(2026, 1, 1)))
        session.add_all([Job(kind="deploy", status="running"),
                         Job(kind="deploy", status="failed"),
                         Job(kind="destroy", status="failed")])
    bench = import_bundle(api, make_bundle(tmp_path)).json
    alice = account(api, "alice")
    phase = bench["phases"][0]["id"]
    for name in ("a", "b"):
        assert submit(api, phase, alice, make_submission(tmp_path / name, "result", 40)) \
            .status_code == 201
    worker = FakeWorker(api)
    first, second = worker.claim()
    worker.finish(first, scores={"score": 1.0, "error": 0.0}, duration=42.0)
    worker.finish(second, status="failed", return_code=1, duration=3.5)

    exposed = scrape(api)
    assert by(exposed["scitq_bench_machines_hired"], "provider") == {("aws",): 2}
    assert by(exposed["scitq_bench_machines_hourly_cost"], "provider") == {("aws",): 0.75}
    assert by(exposed["scitq_bench_recruitment_jobs"], "kind", "status") == {
        ("deploy", "running"): 1, ("deploy", "failed"): 1, ("destroy", "failed"): 1}
    submissions = Counter(s["status"] for s in api.get("/submissions").json)
    assert by(exposed["scitq_bench_submissions"], "status") == \
        {(k,): v for k, v in submissions.items()} == {("finished",): 1, ("failed",): 1}
    assert exposed["scitq_bench_scoring_seconds_count"][()] == 2
    assert exposed["scitq_bench_scoring_seconds_sum"][()] == pytest.approx(45.5)
    buckets = by(exposed["scitq_bench_scoring_seconds_bucket"], "le")
    assert ("1.0",) not in buckets and buckets[("5.0",)] == 1 and buckets[("30.0",)] == 1
    assert buckets[("60.0",)] == 2 and buckets[("+Inf",)] == 2


def test_worker_calls_are_timed_without_their_wait(api) -> None:
    earlier = scrape(api)
    before = earlier.get("scitq_bench_worker_call_seconds_count", {})
    worker_id, token = register(api, "timed")
    answer = api.post(f"/workers/{worker_id}/claim?max=1&wait=0.5", token=token)
    assert answer.status_code == 200 and answer.json["executions"] == []
    assert api.post(f"/workers/{worker_id}/heartbeat", token=token, json={}).status_code == 200
    after = scrape(api)
    counts = {labels: value - before.get(labels, 0)
              for labels, value in after["scitq_bench_worker_call_seconds_count"].items()}
    assert by(counts, "call") == {("claim",): 1, ("heartbeat",): 1}
    claim = (("call", "claim"),)
    spent = after["scitq_bench_worker_call_seconds_sum"][claim] - \
        earlier.get("scitq_bench_worker_call_seconds_sum", {}).get(claim, 0.0)
    assert spent < 0.4  # the half-second wait for work is not the server's time
    assert after["scitq_bench_long_polls_waiting"][()] == 0


def test_the_metrics_token_reads_metrics_and_nothing_else(api, settings) -> None:
    token = create_token(settings, "metrics")
    assert scrape(api, token)["scitq_bench_build_info"]
    assert api.call("GET", "/metrics", token=None, prefix="").status_code == 401
    _, worker_token = register(api, "not-metrics")
    assert api.call("GET", "/metrics", token=worker_token, prefix="").status_code == 403
    for path in ("/tasks", "/workers", "/batches", "/benchmarks", "/files"):
        assert api.get(path, token=token).status_code == 403, path


def test_probes_answer_without_a_token_and_say_nothing_else(api) -> None:
    live = api.call("GET", "/healthz", token=None, prefix="")
    assert live.status_code == 200 and live.json == {"status": "ok"}
    ready = api.call("GET", "/readyz", token=None, prefix="")
    assert ready.status_code == 200 and ready.json == {"status": "ready"}


def test_readyz_fails_while_the_schema_is_not_the_expected_one(api, settings, caplog) -> None:
    db = Database(settings.database_url)
    with db.read() as session:
        head = session.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    with db.write() as session:
        session.execute(text("UPDATE alembic_version SET version_num = 'someoldrevision'"))
    with caplog.at_level(logging.WARNING):
        answer = api.call("GET", "/readyz", token=None, prefix="")
    assert answer.status_code == 503 and answer.json == {"status": "not ready"}
    assert answer.headers["Retry-After"]
    assert "someoldrevision" in caplog.text and head in caplog.text  # in the log only
    assert "someoldrevision" not in answer.get_data(as_text=True)
    with db.write() as session:
        session.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head})
    assert api.call("GET", "/readyz", token=None, prefix="").status_code == 200


def test_a_request_id_is_echoed_or_made(api) -> None:
    given = api.get("/batches", headers={"X-Request-Id": "edge-7f3a.1"})
    assert given.headers["X-Request-Id"] == "edge-7f3a.1"
    made = api.get("/batches", headers={"X-Request-Id": "bad id\twith spaces"})
    assert len(made.headers["X-Request-Id"]) == 32 and " " not in made.headers["X-Request-Id"]
    assert api.get("/batches").headers["X-Request-Id"] != made.headers["X-Request-Id"]


def test_json_log_lines_carry_the_request_id(app) -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    probe = logging.getLogger("scitq_bench.server.api.probes")
    probe.addHandler(handler)
    try:
        with app.test_request_context("/readyz", headers={"X-Request-Id": "req-42"}):
            app.preprocess_request()
            probe.warning("not ready: %s", "a \"quoted\"\nreason")
        probe.warning("outside any request")
    finally:
        probe.removeHandler(handler)
    inside, outside = (json.loads(line) for line in records)
    assert inside["request_id"] == "req-42" and inside["level"] == "WARNING"
    assert inside["message"] == 'not ready: a "quoted"\nreason'
    assert inside["logger"] == "scitq_bench.server.api.probes" and inside["time"].endswith("Z")
    assert "request_id" not in outside
