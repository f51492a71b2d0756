"""/metrics and /readyz from a real ``server run`` on PostgreSQL: with one API process
and with several, the metrics add up every process's observations and equal what the
API answers; /readyz fails while the database is unreachable and recovers after."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from scitq_bench.server.setup import create_token
from scitq_bench.settings import ServerSettings
from tests.conftest import _drop_postgres_database, _fresh_postgres_database
from tests.support.balancer import Balancer
from tests.support.stack import Stack, wait_until

pytestmark = pytest.mark.e2e

LONG_POLLS = 24


def scrape(stack: Stack, token: str) -> dict[str, dict[tuple, float]]:
    answer = requests.get(f"{stack.url}/metrics", timeout=10,
                          headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = \
                sample.value
    return samples


def total(samples: dict[str, dict[tuple, float]], name: str, **labels: str) -> float:
    return sum(value for key, value in samples.get(name, {}).items()
               if all(dict(key).get(k) == v for k, v in labels.items()))


def api(stack: Stack, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
    answer = requests.request(method, f"{stack.url}/api/v1{path}", timeout=30,
                              headers={"Authorization": f"Bearer {token or stack.token}"},
                              **kwargs)
    assert answer.status_code < 300, (answer.status_code, answer.text)
    return answer.json()


@pytest.mark.parametrize("processes", [1, 2])
def test_metrics_add_up_every_process(pg_stack: Stack, tmp_path: Path, processes: int) -> None:
    metrics_dir = tmp_path / "metrics"
    pg_stack.extra_env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    pg_stack.start_server(processes=processes)
    token = create_token(ServerSettings(data_dir=pg_stack.data_dir,
                                        database_url=pg_stack.database_url), "metrics")
    # every answer is counted once, whichever process gave it
    before = total(scrape(pg_stack, token), "scitq_bench_http_requests_total")
    for _ in range(20):
        requests.get(f"{pg_stack.url}/api/v1/batches", timeout=10,
                     headers={"Authorization": f"Bearer {pg_stack.token}", "Connection": "close"})
    after = scrape(pg_stack, token)
    assert total(after, "scitq_bench_http_requests_total") - before == 20 + 1  # + the scrape
    assert total(after, "scitq_bench_http_requests_total", method="GET", status="200") >= 21

    # long polls waiting, summed over the processes holding them
    registered = api(pg_stack, "POST", "/workers", json={"name": "poller", "concurrency": 1})
    worker_id, worker_token = registered["worker"]["id"], registered["token"]
    answers: list[int] = []

    def long_poll() -> None:
        answer = requests.post(f"{pg_stack.url}/api/v1/workers/{worker_id}/claim?wait=3",
                               headers={"Authorization": f"Bearer {worker_token}",
                                        "Connection": "close"}, timeout=30)
        answers.append(answer.status_code)

    polls = [threading.Thread(target=long_poll) for _ in range(LONG_POLLS)]
    for poll in polls:
        poll.start()
    wait_until(lambda: total(scrape(pg_stack, token), "scitq_bench_long_polls_waiting")
               == LONG_POLLS, 10, what=f"{LONG_POLLS} long polls counted")
    for poll in polls:
        poll.join()
    assert answers == [200] * LONG_POLLS
    done = scrape(pg_stack, token)
    assert total(done, "scitq_bench_long_polls_waiting") == 0
    assert total(done, "scitq_bench_worker_call_seconds_count", call="claim") == LONG_POLLS
    # each call's server time, its three seconds of waiting excluded
    assert total(done, "scitq_bench_worker_call_seconds_sum", call="claim") < LONG_POLLS * 0.5
    writers = {path.stem.rsplit("_", 1)[-1] for path in metrics_dir.glob("*.db")}
    assert 1 <= len(writers) <= processes

    # the queue's state equals what the API answers, with a real worker running it
    pg_stack.start_worker("metrics-worker", concurrency=2)
    api(pg_stack, "POST", "/tasks", json={"tasks": [
        {"command": command, "batch": "metered"}
        for command in ["true"] * 4 + ["false"] * 2 + ["sleep 60"]]})
    wait_until(lambda: Counter(t["status"] for t in api(pg_stack, "GET", "/tasks")["tasks"])
               == {"succeeded": 4, "failed": 2, "running": 1}, 60, what="six tasks ended")
    queue = scrape(pg_stack, token)
    tasks = api(pg_stack, "GET", "/tasks")["tasks"]
    for status, count in Counter(t["status"] for t in tasks).items():
        assert total(queue, "scitq_bench_tasks", batch="metered", status=status) == count
    executions = api(pg_stack, "GET", "/executions")["executions"]
    ended = Counter(e["status"] for e in executions if e["status"] in ("succeeded", "failed"))
    for outcome, count in ended.items():
        assert total(queue, "scitq_bench_executions_ended_total", outcome=outcome) == count
    assert total(queue, "scitq_bench_executions_started_total") == \
        sum(1 for e in executions if e.get("started_at")) == 7
    # workers change state by themselves (a lease ends): the gauge and the list agree
    # once both are read while nothing moves
    def workers_agree() -> bool:
        workers = Counter(w["status"] for w in api(pg_stack, "GET", "/workers")["workers"])
        scraped = scrape(pg_stack, token)
        return all(total(scraped, "scitq_bench_workers", status=status) == count
                   for status, count in workers.items())

    wait_until(workers_agree, 30, what="the workers' gauge to match the worker list")
    assert total(queue, "scitq_bench_worker_call_seconds_count", call="report") >= 1
    print(f"{processes} process(es): metrics files from {len(writers)} process(es)")


def test_readyz_fails_while_the_database_is_unreachable(tmp_path: Path,
                                                        postgres_url: str) -> None:
    url, handle = _fresh_postgres_database(postgres_url)
    database = make_url(url)
    proxy = Balancer([(database.host or "127.0.0.1", database.port or 5432)]).start()
    stack = Stack(root=tmp_path / "stack",
                  database_url=database.set(port=proxy.port).render_as_string(False))
    try:
        stack.init()
        stack.start_server(processes=1)
        ready = f"{stack.url}/readyz"
        assert requests.get(ready, timeout=10).json() == {"status": "ready"}
        proxy.stop()  # the database is gone: connections cut, new ones refused
        answers: list[requests.Response] = []
        wait_until(lambda: answers.append(requests.get(ready, timeout=30))
                   or answers[-1].status_code == 503, 30, what="/readyz to fail")
        answer = answers[-1]
        assert answer.json() == {"status": "not ready"} and answer.headers["Retry-After"]
        assert requests.get(f"{stack.url}/healthz", timeout=10).status_code == 200
        proxy = Balancer(proxy.backends, port=proxy.port).start()  # back
        wait_until(lambda: requests.get(ready, timeout=30).status_code == 200, 30,
                   what="/readyz to recover")
        assert "not ready: database unreachable" in stack.tail("server.log", 20000)
    finally:
        stack.stop()
        proxy.stop()
        _drop_postgres_database(handle)
