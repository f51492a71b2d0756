"""Fresh planner statistics for the queue's busiest tables (PostgreSQL).

The claim's plan depends on how many tasks are pending and executions live, and those
change by thousands within seconds (a batch created, a fleet's first claims), while
autovacuum looks at a table at most once a minute and waits for a tenth of its rows to
change. Planned on stale figures (a live-execution table thought nearly empty), the
claim scanned every live execution for each candidate task: two and a half times its
time with fresh figures, in ``benchmarks/swarm.py``. So the leader looks every few
seconds at how much each of these tables changed since its last ``ANALYZE``, and
analyzes those that changed by more than a fifth of their rows (and at least
``MIN_CHANGES``). An ``ANALYZE`` samples a bounded number of rows and blocks no reader
or writer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import bindparam, text

from scitq_bench.server.db import Database

log = logging.getLogger(__name__)

TABLES = ("task", "execution", "worker")
CHECK_EVERY = 5.0  # seconds
MIN_CHANGES = 500
SHARE = 0.2

_CHANGES = text(
    "SELECT relname, n_mod_since_analyze, n_live_tup FROM pg_stat_user_tables "
    "WHERE schemaname = current_schema() AND relname IN :names"
).bindparams(bindparam("names", expanding=True))
# one statement per table of the constant list above: nothing comes from outside
_ANALYZE = {name: text(f'ANALYZE "{name}"') for name in TABLES}


def stale_tables(db: Database) -> list[str]:
    """The tables whose statistics are out of date, by the rule above."""
    with db.read() as session:
        rows = session.execute(_CHANGES, {"names": list(TABLES)}).all()
    return sorted(row.relname for row in rows
                  if row.n_mod_since_analyze >= max(MIN_CHANGES, SHARE * row.n_live_tup))


def refresh(db: Database) -> list[str]:
    """``ANALYZE`` the stale tables; returns their names."""
    tables = stale_tables(db)
    for name in tables:
        with db.write() as session:
            session.execute(_ANALYZE[name])
    return tables


class StatisticsKeeper:
    """The leader's loop around ``refresh`` (PostgreSQL only: SQLite's planner takes
    no statistics of this kind, and the embedded server has no leader)."""

    def __init__(self, db: Database, leading: Callable[[], bool],
                 interval: float = CHECK_EVERY) -> None:
        self.db, self.leading, self.interval = db, leading, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_forever(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.leading():
                return
            try:
                analyzed = refresh(self.db)
            except Exception:  # a failed pass is tried again at the next
                log.exception("statistics: ANALYZE failed")
                continue
            if analyzed:
                log.debug("statistics: analyzed %s", ", ".join(analyzed))

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="statistics",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
