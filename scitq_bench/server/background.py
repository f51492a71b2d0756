"""The background process: the lease reaper and recruitment, run once across every
server process and replica sharing the database, by whichever process leads (see
``leader.py``).

``server run`` starts one per replica next to the processes that serve the API (those
run no loop and no job: their recruitment runtime only dispatches, see
``recruit/runtime.py``); ``server scheduler`` runs one in the foreground. Each
campaigns for the lead; the leader runs, for as long as it leads:

- the reaper: every live lease granted a full lease at takeover (the previous leader
  may have been away), then a pass every ``reaper_interval``, waking claimers
  (``WORK``) when it re-queued;
- recruitment, where the server knows its public URL: recovery of the jobs the
  previous leader left, the plan every ``interval``, catalogs and orphans on their
  schedules, and the deploy and destroy jobs themselves, picked up when ``JOBS`` wakes
  it and on every pass (at most a second apart) anyway;
- on PostgreSQL, fresh planner statistics for the queue's busiest tables
  (``statistics.py``).

Each loop verifies the lead before each pass. On losing it, the process stops both at
once (its jobs stop where they stand, left to the next leader's recovery) and
campaigns again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from scitq_bench.server import wiring
from scitq_bench.server.db import Database
from scitq_bench.server.leader import Leadership, build_lock, named_url, process_name
from scitq_bench.server.notify import Notifier, build_notifier
from scitq_bench.server.reaper import Reaper
from scitq_bench.server.recruit.runtime import Recruitment
from scitq_bench.server.statistics import StatisticsKeeper
from scitq_bench.settings import ServerSettings

log = logging.getLogger(__name__)

RecruitmentFactory = Callable[[Callable[[], bool]], Recruitment]


@dataclass
class Term:
    """What runs while this process leads."""

    reaper: Reaper | None = None
    recruitment: Recruitment | None = None
    statistics: StatisticsKeeper | None = None

    def stop(self) -> None:
        """Stop the loops (waiting for their current pass) and abandon running jobs."""
        if self.recruitment is not None:
            self.recruitment.engine.stop(abandon=True)
        if self.reaper is not None:
            self.reaper.stop()
        if self.statistics is not None:
            self.statistics.stop()


class Background:
    """Campaign, run the loops while leading, stop them on losing the lead, again."""

    def __init__(self, settings: ServerSettings, db: Database, notifier: Notifier,
                 leadership: Leadership, *,
                 recruitment: RecruitmentFactory | None = None) -> None:
        """``recruitment(leading)``: builds the leader's recruitment for one term (None:
        this server does not recruit)."""
        self.settings, self.db, self.notifier = settings, db, notifier
        self.leadership = leadership
        self.recruitment = recruitment
        self.term: Term | None = None

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set; the lead is released on the way out."""
        try:
            while self.leadership.campaign(stop):
                try:
                    self.term = self._begin()
                except Exception:  # noqa: BLE001 - the database failed us: try again
                    log.exception("background: could not start the loops")
                    self.leadership.release()
                    stop.wait(self.leadership.interval)
                    continue
                try:
                    self.leadership.hold(stop)
                finally:
                    self.term.stop()
                    self.term = None
        finally:
            self.leadership.release()

    def _begin(self) -> Term:
        leading = self.leadership.verify
        term = Term()
        if self.settings.run_reaper:
            term.reaper = Reaper(self.db, self.settings.lease_seconds,
                                 self.settings.reaper_interval, self.notifier, leading=leading)
            term.reaper.grant_grace()  # the previous leader may have been away
            term.reaper.start()
        if self.recruitment is not None:
            term.recruitment = self.recruitment(leading)
            term.recruitment.engine.start_leading(leading, self.notifier)
        if not self.db.is_sqlite:
            term.statistics = StatisticsKeeper(self.db, leading)
            term.statistics.start()
        return term


def leader_recruitment(settings: ServerSettings, db: Database) -> RecruitmentFactory | None:
    """The leader's recruitment, where the server recruits (it knows the URL workers
    reach it at, and recruitment is not switched off)."""
    server_url = settings.public_url
    if not server_url or not settings.run_recruiter:
        return None
    from scitq_bench.server.recruit.runtime import build

    def factory(leading: Callable[[], bool]) -> Recruitment:
        return build(settings, db, server_url, leading=leading)

    return factory


def run_background(settings: ServerSettings, stop: threading.Event, *,
                   on_change: Callable[[bool], None] | None = None) -> None:
    """The background process's body, until ``stop`` is set: its own database engine
    and notifier, a campaign for the lead, and the loops while it leads.
    ``on_change(leading)`` hears of each election and step-down. The schema must be
    migrated already."""
    wiring.connect()
    holder = process_name()
    db = Database(named_url(settings.database_url, holder),
                  busy_timeout=settings.database_busy_timeout,
                  pool_size=settings.database_pool_size,
                  prepare=settings.database_prepare)
    notifier = build_notifier(settings.session_database_url)
    lock = build_lock(settings.session_database_url, settings.data_dir,
                      settings.lease_seconds, holder)
    leadership = Leadership(lock, on_change=on_change)
    notifier.start()
    try:
        Background(settings, db, notifier, leadership,
                   recruitment=leader_recruitment(settings, db)).run(stop)
    finally:
        leadership.close()
        notifier.close()
        db.dispose()
