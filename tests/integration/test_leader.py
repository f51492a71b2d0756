"""Leadership on real databases: one leader among processes sharing PostgreSQL, a
takeover within about a second of its session ending, a frozen leader (no beat) taken
over after a lease and stepping down before its next pass, a frozen transaction that
does not keep the new leader from planning; plans that never overlap; and the jobs
API processes queue, run by the leader."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from scitq_bench.server.app import create_app
from scitq_bench.server.background import Background
from scitq_bench.server.db import Database
from scitq_bench.server.leader import (
    FileLeaderLock,
    Leader,
    Leadership,
    PostgresLeaderLock,
    build_lock,
    exclusive_plan,
    named_url,
)
from scitq_bench.server.migrate import upgrade
from scitq_bench.server.notify import build_notifier
from scitq_bench.server.queue.models import Worker
from scitq_bench.server.reaper import Reaper
from scitq_bench.server.recruit import catalog
from scitq_bench.server.recruit import engine as engine_module
from scitq_bench.server.recruit.engine import Engine, RecruitSettings
from scitq_bench.server.recruit.models import Job
from scitq_bench.server.recruit.runtime import EXTENSION as RECRUITMENT
from scitq_bench.server.recruit.runtime import Recruitment, build
from scitq_bench.settings import ServerSettings
from tests.conftest import (
    SUMMARY_PROPERTY,
    ApiClient,
    _drop_postgres_database,
    _fresh_postgres_database,
)
from tests.support.leadership import attempts
from tests.support.recruitment import (
    OFFERS,
    NeverUp,
    RecordingRunner,
    add_job,
    hired,
    job_of,
    setup,
    worker_of,
)
from tests.support.stack import wait_until

POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
STALE = 1.5  # seconds without a beat before a follower ends the leader's sessions


@pytest.fixture
def pg_database(postgres_url: str) -> Iterator[str]:
    url, handle = _fresh_postgres_database(postgres_url)
    upgrade(url)
    yield url
    _drop_postgres_database(handle)


def pg_leadership(url: str, holder: str, stale_after: float = STALE) -> Leadership:
    return Leadership(PostgresLeaderLock(url, holder, stale_after), interval=0.2)


def campaigning(leadership: Leadership) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=leadership.campaign, args=(stop,), daemon=True)
    thread.start()
    return thread, stop


def backend_of(leadership: Leadership) -> int:
    return leadership.lock._backend  # type: ignore[attr-defined]


def terminate(url: str, pid: int) -> None:
    """End a session as an operator (or a crash) would."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    engine.dispose()


def test_exactly_one_of_several_leads_and_the_table_says_who(pg_database: str) -> None:
    group = [pg_leadership(pg_database, f"host:{i}") for i in range(4)]
    start = threading.Barrier(len(group))
    won: dict[str, bool] = {}

    def attempt(leadership: Leadership) -> None:
        start.wait()
        won[leadership.holder] = leadership.try_lead()

    threads = [threading.Thread(target=attempt, args=(member,)) for member in group]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    leaders = [member for member in group if won[member.holder]]
    assert len(leaders) == 1 and sum(member.is_leader() for member in group) == 1
    engine = create_engine(pg_database)
    with engine.connect() as connection:
        row = connection.execute(select(Leader)).one()
    engine.dispose()
    assert (row.name, row.holder, row.backend_pid) == ("background", leaders[0].holder,
                                                        backend_of(leaders[0]))
    for member in group:
        member.close()


@pytest.mark.parametrize("how", ["terminated", "closed"])
def test_a_follower_leads_within_a_second_or_two_of_the_leaders_session_ending(
        pg_database: str, how: str, record_property: Any) -> None:
    leader, follower = pg_leadership(pg_database, "host:1"), pg_leadership(pg_database, "host:2")
    assert leader.try_lead()
    tries = attempts(follower)
    thread, stop = campaigning(follower)
    wait_until(lambda: len(tries) >= 2, what="the follower tried twice", timeout=10)
    assert not follower.is_leader()
    ended = time.monotonic()
    if how == "terminated":
        terminate(pg_database, backend_of(leader))
    else:  # what the server sees of a process that died
        leader.lock.release()
    thread.join(5)
    took = time.monotonic() - ended
    assert follower.is_leader() and took < 2, took
    assert not leader.verify() and not leader.is_leader()
    record_property(SUMMARY_PROPERTY, f"takeover after the leader's session {how}: {took:.2f} s")
    stop.set()
    follower.close()
    leader.close()


def test_a_beating_leader_keeps_the_lead(pg_database: str) -> None:
    leader, follower = pg_leadership(pg_database, "host:1"), pg_leadership(pg_database, "host:2")
    assert leader.try_lead()
    holding_stop = threading.Event()
    holding = threading.Thread(target=leader.hold, args=(holding_stop,), daemon=True)
    holding.start()
    thread, stop = campaigning(follower)
    time.sleep(STALE * 2.5)  # long past the staleness a missed beat would show
    assert leader.is_leader() and leader.verify() and not follower.is_leader()
    stop.set()
    holding_stop.set()
    thread.join(5)
    holding.join(5)
    follower.close()
    leader.close()


@POSTGRES_ONLY  # SQLite: one host, and a frozen leader keeps its file lock
def test_a_frozen_leader_is_taken_over_and_steps_down_before_its_next_pass(
        db: Database, settings: ServerSettings, record_property: Any) -> None:
    url = settings.database_url
    leader, follower = pg_leadership(url, "host:frozen"), pg_leadership(url, "host:2")
    assert leader.try_lead()  # then freezes: no beat, no pass
    frozen = time.monotonic()
    thread, stop = campaigning(follower)
    thread.join(STALE + 5)
    took = time.monotonic() - frozen
    assert follower.is_leader() and STALE < took < STALE + 3, took
    # the leader resumes: its reaper asks before its next pass, and ends without one
    passes: list[float] = []
    reaper = Reaper(db, 30.0, 0.05, leading=leader.verify)
    reaper.run_once = lambda: passes.append(time.monotonic())  # type: ignore[method-assign]
    resumed = threading.Thread(target=reaper.run_forever, daemon=True)
    resumed.start()
    resumed.join(3)
    assert not resumed.is_alive() and passes == []
    assert not leader.is_leader() and leader.ended.is_set()
    assert follower.verify()
    record_property(SUMMARY_PROPERTY, f"frozen leader taken over after {took:.2f} s "
                                      f"(beat stale after {STALE} s)")
    stop.set()
    follower.close()
    leader.close()


def test_a_transaction_the_frozen_leader_holds_does_not_block_the_new_one(
        pg_database: str) -> None:
    """The leader froze halfway through a plan, holding the plan's lock: the follower
    ends that transaction with the leader's session, and plans."""
    holder = "host:frozen"
    frozen_db = Database(named_url(pg_database, holder))
    new_db = Database(pg_database)
    leader, follower = pg_leadership(pg_database, holder), pg_leadership(pg_database, "host:2")
    assert leader.try_lead()
    resume = threading.Event()
    outcome: dict[str, Any] = {}

    def plan_and_freeze() -> None:
        try:
            with frozen_db.write() as session:
                exclusive_plan(session)
                outcome["locked"] = True
                resume.wait(30)
        except Exception as exc:  # noqa: BLE001 - ended under it, as expected
            outcome["error"] = exc

    frozen = threading.Thread(target=plan_and_freeze, daemon=True)
    frozen.start()
    wait_until(lambda: outcome.get("locked"), timeout=5, what="the frozen plan's lock")
    thread, stop = campaigning(follower)
    thread.join(STALE + 5)
    assert follower.is_leader()
    began = time.monotonic()
    with new_db.write() as session:
        exclusive_plan(session)  # would wait for ever behind the frozen transaction
    assert time.monotonic() - began < 2
    resume.set()
    frozen.join(5)
    assert "error" in outcome  # the frozen process finds its transaction gone
    stop.set()
    for member in (follower, leader):
        member.close()
    frozen_db.dispose()
    new_db.dispose()


def test_the_lock_fits_the_database(tmp_path: Any) -> None:
    sqlite = build_lock(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, 30.0, "host:1")
    assert isinstance(sqlite, FileLeaderLock) and sqlite.path == tmp_path / "leader.lock"
    postgres = build_lock("postgresql+psycopg2://u@127.0.0.1:1/x", tmp_path, 30.0, "host:1")
    assert isinstance(postgres, PostgresLeaderLock)
    postgres.close()
    assert named_url("sqlite:///x.db", "h:1") == "sqlite:///x.db"
    assert "application_name=scitq-bench+h%3A1" in named_url("postgresql://u@h/x", "h:1")


# -- plans never overlap -----------------------------------------------------------------


# without the lock (the control) only on PostgreSQL: SQLite's writers take turns
# whatever the plan does
@pytest.mark.parametrize(("database_url", "locked"), [
    ("sqlite", True), ("postgresql", True), ("postgresql", False)], indirect=["database_url"])
def test_two_processes_planning_at_once_hire_once(
        db: Database, settings: ServerSettings, monkeypatch: pytest.MonkeyPatch,
        locked: bool) -> None:
    with db.write() as session:
        setup(session, pending=10, maximum_workers=3)
    slow = catalog.find_offers

    def find_offers(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.2)  # a wide window for the other plan to overlap
        return slow(*args, **kwargs)

    monkeypatch.setattr(engine_module.catalog, "find_offers", find_offers)
    if not locked:  # the control: without the lock, two plans hire twice
        monkeypatch.setattr(engine_module, "exclusive_plan", lambda session: None)
    other = Database(settings.database_url)
    start = threading.Barrier(2)

    def plan(database: Database) -> None:
        start.wait()
        Engine(database, RecordingRunner(), RecruitSettings()).run_once()  # type: ignore[arg-type]

    threads = [threading.Thread(target=plan, args=(d,)) for d in (db, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with db.read() as session:
        deploys = session.scalar(select(func.count()).select_from(Job).where(
            Job.kind == "deploy"))
        workers = len(hired(session))
    other.dispose()
    if locked:
        assert (deploys, workers) == (3, 3)
    else:
        assert deploys > 3


# -- jobs queued by API processes, run by the leader ----------------------------------------


@pytest.fixture
def recruiting_settings(settings: ServerSettings) -> ServerSettings:
    return replace(settings, public_url="http://127.0.0.1:1", run_reaper=True,
                   recruitment={"interval": 0.5, "deploy_timeout": 60,
                                "providers": {"fake": {}}})  # played by a stand-in


@pytest.fixture
def api_process(recruiting_settings: ServerSettings, admin_token: str) -> Iterator[Any]:
    """An app as an API process runs it: no loop, and a recruitment that dispatches."""
    notifier = build_notifier(recruiting_settings.database_url)
    notifier.start()
    app = create_app(recruiting_settings, start_reaper=False, start_recruiter=False,
                     notifier=notifier)
    context = app.extensions["scitq_bench"]
    app.extensions[RECRUITMENT] = build(recruiting_settings, context.db,
                                        "http://127.0.0.1:1", dispatch=notifier)
    yield app
    notifier.close()
    context.db.dispose()


class LeaderProcess:
    """The background process's body, in a thread, recruiting from ``provider``."""

    def __init__(self, settings: ServerSettings, provider: Any) -> None:
        self.db = Database(settings.database_url)
        self.notifier = build_notifier(settings.database_url)
        self.notifier.start()
        self.leadership = Leadership(build_lock(settings.database_url, settings.data_dir,
                                                settings.lease_seconds, "host:leader"),
                                     interval=0.2)

        def recruitment(leading: Any) -> Recruitment:
            runtime = build(settings, self.db, "http://127.0.0.1:1", leading=leading)
            runtime.runner.providers = lambda name: provider
            runtime.runner.settings.boot_poll = 0.2
            return runtime

        self.background = Background(settings, self.db, self.notifier, self.leadership,
                                     recruitment=recruitment)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.background.run, args=(self.stop,),
                                       daemon=True)
        self.thread.start()
        wait_until(lambda: self.background.term is not None, timeout=10, what="the lead")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.leadership.close()
        self.notifier.close()
        self.db.dispose()


@pytest.fixture
def fake_offers(db: Database) -> None:
    with db.write() as session:
        catalog.upsert_offers(session, "fake", OFFERS)


def test_the_leader_runs_what_api_processes_queue_and_cancel(
        api_process: Any, db: Database, recruiting_settings: ServerSettings,
        admin_token: str, fake_offers: None, record_property: Any) -> None:
    provider = NeverUp()
    leader = LeaderProcess(recruiting_settings, provider)
    api = ApiClient(api_process.test_client(), admin_token)
    try:
        queued = time.monotonic()
        answer = api.post("/workers/deploy", json={"flavor": "small", "provider": "fake"})
        assert answer.status_code == 201, answer.json
        job_id = answer.json["jobs"][0]["id"]
        wait_until(lambda: provider.created, timeout=5, what="the leader to start the job")
        picked = time.monotonic() - queued
        assert job_of(db, job_id).status == "running"

        cancelled = time.monotonic()
        assert api.post(f"/jobs/{job_id}/cancel").json["status"] == "cancelled"
        wait_until(lambda: provider.deleted == ["i-1"], timeout=5, what="the instance back")
        stopped = time.monotonic() - cancelled
        job = wait_until(lambda: (j := job_of(db, job_id)).error != "cancelled by admin" and j,
                         timeout=5, what="the job to say where it stopped")
        assert job.error == "cancelled by admin in step 'wait for the instance to run'"

        # a destroy cancelled before it ran: the leader gives its machine back
        destroy_id, destroyed = add_job(db, "destroy", instance_id="i-9", status="cancelled")
        api_process.extensions[RECRUITMENT].runner.cancel(destroy_id, "pending")
        wait_until(lambda: "i-9" in provider.deleted, timeout=5, what="i-9 back")
        wait_until(lambda: worker_of(db, destroyed).released_at is not None, timeout=5,
                   what="the worker's record to close")
        record_property(SUMMARY_PROPERTY, f"job picked up by the leader {picked:.2f} s after "
                                          f"it was queued, stopped {stopped:.2f} s after a cancel")
    finally:
        leader.close()


def test_jobs_of_a_leader_that_lost_its_lead_are_recovered_by_the_next(
        api_process: Any, db: Database, recruiting_settings: ServerSettings,
        admin_token: str, fake_offers: None) -> None:
    provider = NeverUp()
    leader = LeaderProcess(recruiting_settings, provider)
    api = ApiClient(api_process.test_client(), admin_token)
    try:
        job_id = api.post("/workers/deploy", json={"flavor": "small",
                                                   "provider": "fake"}).json["jobs"][0]["id"]
        wait_until(lambda: provider.created, timeout=5, what="the deploy to run")
        wait_until(lambda: "instance i-1 created" in job_of(db, job_id).log, timeout=5,
                   what="the instance recorded")
        first_term = leader.background.term
        leader.leadership.lock.release()  # its session is gone: it must step down
        wait_until(lambda: leader.background.term not in (None, first_term), timeout=10,
                   what="the next term (the same process, elected again)")
        job = wait_until(lambda: (j := job_of(db, job_id)).status == "failed" and j,
                         timeout=10, what="the recovery")
        assert job.error == "interrupted by a server restart"
        assert "left in step 'wait for the instance to run'" in job.log
        with db.read() as session:
            destroy = session.scalars(select(Job.id).where(Job.kind == "destroy")).one()
        wait_until(lambda: job_of(db, destroy).status == "succeeded", timeout=10,
                   what="the destroy")
        assert provider.deleted == ["i-1"]  # once: the abandoned deploy did not clean up
        with db.read() as session:
            assert session.get(Worker, job.worker_id).released_at is not None
    finally:
        leader.close()


def test_recovery_runs_interrupted_destroys_again_and_spares_the_leaders_own_jobs(
        db: Database) -> None:
    """A destroy cut short runs again (a machine must not be left behind), up to three
    tries; a later pass fails only the running jobs no job thread of the leader holds."""
    again, _ = add_job(db, "destroy", instance_id="i-1", status="running")
    spent, _ = add_job(db, "destroy", instance_id="i-2", status="running")
    mine, _ = add_job(db, "deploy", status="running")
    with db.write() as session:
        session.get(Job, again).attempts = 1
        session.get(Job, spent).attempts = 3
    runner = RecordingRunner()
    Engine(db, runner, RecruitSettings()).recover_strays(lambda: {mine})  # type: ignore[arg-type]
    assert job_of(db, again).status == "pending" and "it runs again" in job_of(db, again).log
    assert job_of(db, spent).status == "failed"
    assert job_of(db, mine).status == "running"
    assert runner.submitted == []  # a later pass: the pick-up starts pending jobs
