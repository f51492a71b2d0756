"""GUI pages with 100,000 tasks, against the same pages with 1,000 tasks in the same run.

Each page is fetched the way a browser does (signed in, through the Flask app, with
its live-region fragment too), a few times; the median time is reported. A page that
counts, filters and paginates in the database costs about the same whatever the size
of the queue, so the ratio (large / small) is the figure to watch.

    python -m benchmarks.gui_pages --tasks 100000
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scitq_bench.server.app import create_app  # noqa: E402
from scitq_bench.server.queue.tasks import create_tasks  # noqa: E402
from scitq_bench.server.schemas import TaskCreate  # noqa: E402
from scitq_bench.server.setup import init_server  # noqa: E402
from scitq_bench.settings import ServerSettings  # noqa: E402

CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')
BATCHES = 10
CHUNK = 20_000


def populate(app: Any, tasks: int) -> None:
    """``tasks`` tasks over ``BATCHES`` batches; a third of them marked succeeded, so the
    status filter has something to skip."""
    from sqlalchemy import text

    db = app.extensions["scitq_bench"].db
    per_batch = tasks // BATCHES
    for batch in range(BATCHES):
        for start in range(0, per_batch, CHUNK):
            count = min(CHUNK, per_batch - start)
            with db.write() as session:
                create_tasks(db, session, [
                    TaskCreate(command=f"echo {batch}-{start + i}", batch=f"batch{batch}",
                               name=f"task-{batch}-{start + i}")
                    for i in range(count)], bulk=True)
    with db.write() as session:
        session.execute(text("UPDATE task SET status = 'succeeded' WHERE id % 3 = 0"))


def signed_in(app: Any, token: str) -> Any:
    client = app.test_client()
    page = client.get("/ui/login").get_data(as_text=True)
    csrf = CSRF.search(page).group(1)  # type: ignore[union-attr]
    answer = client.post("/ui/login", data={"token": token, "csrf_token": csrf})
    assert answer.status_code == 302, answer.get_data(as_text=True)[:500]
    return client


def pages(total: int) -> dict[str, str]:
    return {
        "tasks, first page": "/ui/tasks",
        "tasks, last page": f"/ui/tasks?offset={total - 10}",
        "tasks, one status": "/ui/tasks?status=succeeded",
        "tasks, name search": "/ui/tasks?name=task-7-12",
        "tasks, one batch, live fragment": "/ui/tasks?batch=batch3&fragment=1",
        "batches": "/ui/batches",
        "a task": "/ui/tasks/12345",
    }


def timings(tasks: int, repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="scitq-bench-gui-") as tmp:
        settings = ServerSettings(data_dir=Path(tmp), database_url=f"sqlite:///{tmp}/gui.db",
                                  run_reaper=False)
        token = init_server(settings)
        app = create_app(settings, start_reaper=False)
        try:
            populate(app, tasks)
            client = signed_in(app, token)
            figures = {}
            for label, path in pages(tasks).items():
                path = path.replace("12345", str(min(12345, tasks)))
                seconds = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    answer = client.get(path)
                    seconds.append(time.perf_counter() - start)
                    assert answer.status_code == 200, (path, answer.status_code)
                figures[label] = statistics.median(seconds) * 1000
            return figures
        finally:
            app.extensions["scitq_bench"].db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--baseline-tasks", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    small = timings(args.baseline_tasks, args.repeats)
    large = timings(args.tasks, args.repeats)
    print(f"GUI pages, SQLite, median of {args.repeats} fetches (ms):")
    print(f"{'page':36} {args.baseline_tasks:>10,} {args.tasks:>10,}  ratio")
    for label in small:
        print(f"{label:36} {small[label]:10.1f} {large[label]:10.1f}  "
              f"{large[label] / small[label]:5.2f}")


if __name__ == "__main__":
    main()
