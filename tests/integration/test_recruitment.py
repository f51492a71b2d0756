"""Recruitment decisions on both databases: which offer is hired, when to recycle,
when to stop (caps, budgets, quotas, exclusions), how many tasks a machine runs, when
an idle machine goes back; and the recruiters/jobs/deploy API."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from scitq_bench.server.queue.models import Batch, Execution, Task, Worker, utcnow
from scitq_bench.server.queue.tasks import get_or_create_batch
from scitq_bench.server.recruit import catalog
from scitq_bench.server.recruit.engine import RecruitSettings, plan
from scitq_bench.server.recruit.models import Job
from tests.support.recruitment import RecordingRunner, hired, setup
from tests.support.stack import wait_until


def test_hires_the_cheapest_fitting_offer_up_to_the_maximum(db) -> None:
    with db.write() as session:
        setup(session)
        result = plan(session, RecruitSettings())
        workers = hired(session)
        assert len(result.deploy_jobs) == 3
        # eviction <= 5 by default keeps the spot offer out; cheapest first
        assert {(w.flavor, w.region) for w in workers} == {("small", "r1")}
        assert all(w.cost_per_hour == 0.10 and w.concurrency == 2 for w in workers)
        jobs = list(session.scalars(select(Job)))
        assert {j.kind for j in jobs} == {"deploy"} and "small" in jobs[0].log
        assert plan(session, RecruitSettings()).deploy_jobs == []  # no more than maximum


def test_tasks_per_worker_quota_exclusion_and_caps(db) -> None:
    with db.write() as session:
        setup(session, pending=5, tasks_per_worker=2, maximum_workers=10)
        catalog.set_quota(session, "fake", "r1", max_instances=1)
        catalog.exclude(session, "fake", "r2", "small", utcnow() + timedelta(hours=1))
        result = plan(session, RecruitSettings())
        # 3 wanted (5 tasks, 2 each); r1 holds one; r2's small is excluded; next: big in r1?
        # no: r1 is full (1 instance), so only one hire this pass
        assert len(result.deploy_jobs) == 1
        assert "no offer fits" in " ".join(result.notes)
    with db.write() as session:
        batch = session.scalar(select(Batch))
        batch.budget = 0.0
        assert plan(session, RecruitSettings()).deploy_jobs == []
    with db.write() as session:
        session.scalar(select(Batch)).budget = None
        catalog.set_quota(session, "fake", "r1", max_instances=None)
        result = plan(session, RecruitSettings(max_workers=2))
        assert len(result.deploy_jobs) == 1  # 1 alive + 1 = the global cap
        assert plan(session, RecruitSettings(max_cost_per_hour=0.25)).deploy_jobs == []


def test_concurrency_from_task_needs_and_gpu_offers(db) -> None:
    with db.write() as session:
        batch, rec = setup(session, pending=0, flavor="auto:tags#G", maximum_workers=1)
        for _ in range(3):
            session.add(Task(batch_id=batch.id, command="x", status="pending", cpu=2, mem=10,
                             gpu=1))
        session.flush()
        plan(session, RecruitSettings())
        (worker,) = hired(session)
        assert worker.flavor == "gpu" and worker.gpus == 2
        assert worker.concurrency == 2  # min(8 cpu / 2, 32 GB / 10, 2 GPUs / 1)


def test_idle_workers_are_recycled_then_given_back(db) -> None:
    now = datetime(2030, 1, 1)
    with db.write() as session:
        setup(session, pending=0, maximum_workers=1)
        other = get_or_create_batch(session, "other")
        session.flush()
        idle = Worker(name="idle-one", status="running", permanent=False, provider="fake",
                      region="r1", flavor="small", cpus=2, batch_id=other.id,
                      last_contact_at=now, instance_id="i-1", stats={})
        session.add(idle)
        session.flush()
        plan(session, RecruitSettings(), now=now)  # marks it idle (no work anywhere)
        assert idle.idle_since == now
        session.add(Task(batch_id=session.scalar(select(Batch.id).where(Batch.name == "b")),
                         command="true", status="pending"))
        session.flush()
        result = plan(session, RecruitSettings(), now=now + timedelta(seconds=1))
        assert result.recycled == [idle.id] and result.deploy_jobs == []
        assert idle.batch.name == "b"
        session.execute(Task.__table__.update().values(status="succeeded"))
        session.add(Execution(task_id=session.scalar(select(Task.id)), worker_id=idle.id,
                              status="succeeded"))
        session.flush()
        plan(session, RecruitSettings(), now=now + timedelta(seconds=2))
        settings = RecruitSettings(idle_timeout=600, idle_after_work=60)
        assert plan(session, settings, now=now + timedelta(seconds=30)).destroy_jobs == []
        later = plan(session, settings, now=now + timedelta(seconds=200))
        assert len(later.destroy_jobs) == 1  # it worked: the shorter timeout applies
        job = session.get(Job, later.destroy_jobs[0])
        session.refresh(idle)
        assert job.arguments["instance_id"] == "i-1" and idle.status == "paused"


# -- API -------------------------------------------------------------------------------


def test_recruiters_api(api) -> None:
    created = api.post("/recruiters", json={"batch": "b", "flavor": "auto:cpu>=4:ram>=8",
                                            "maximum_workers": 2})
    assert created.status_code == 201, created.json
    assert api.post("/recruiters", json={"batch": "b", "flavor": "x"}).status_code == 409
    bad = api.post("/recruiters", json={"batch": "b", "rank": 2, "flavor": "auto:cpu>=ten"})
    assert bad.status_code == 400 and "cpu>=ten" in bad.json["message"]
    listed = api.get("/recruiters?batch=b").json
    assert [r["flavor"] for r in listed] == ["auto:cpu>=4:ram>=8"]
    changed = api.patch(f"/recruiters/{created.json['id']}", json={"maximum_workers": 5})
    assert changed.json["maximum_workers"] == 5
    assert api.delete(f"/recruiters/{created.json['id']}").status_code == 200
    assert api.get("/recruiters").json == []


def test_deploy_needs_recruitment_and_a_fitting_offer(api, app) -> None:
    answer = api.post("/workers/deploy", json={"flavor": "small"})
    assert answer.status_code == 400 and "recruitment is not running" in answer.json["message"]
    from scitq_bench.server.app import start_recruitment

    start_recruitment(app, "http://127.0.0.1:1", start=False)
    answer = api.post("/workers/deploy", json={"flavor": "nothing-like-this", "provider": "aws"})
    assert answer.status_code == 400 and "unknown provider 'aws'" in answer.json["message"]
    providers = api.get("/providers").json
    assert [p["name"] for p in providers] == ["local"]
    assert api.get("/jobs").json == []
    assert api.get("/jobs/7").status_code == 404


def test_the_server_serves_its_own_worker_package(api, settings) -> None:
    import zipfile
    from io import BytesIO

    import scitq_bench
    from scitq_bench.server.setup import create_token

    assert api.get("/package", token=None).status_code == 401
    _, worker_token = register_worker(api)
    assert api.get("/package", token=worker_token).status_code == 403
    answer = api.get("/package", token=create_token(settings, "enroll"))
    assert answer.status_code == 200, answer.get_data()[:300]
    with zipfile.ZipFile(BytesIO(answer.get_data())) as wheel:
        metadata = next(n for n in wheel.namelist() if n.endswith("METADATA"))
        assert f"Version: {scitq_bench.__version__}" in wheel.read(metadata).decode()


def register_worker(api) -> tuple[int, str]:
    from tests.support.api import register

    return register(api, "w-package")


def test_a_flavor_named_is_hired_even_metal_or_spot(db) -> None:
    with db.write() as session:
        setup(session, pending=3, flavor="cheap-spot", maximum_workers=1)
        plan(session, RecruitSettings())
        (worker,) = hired(session)
        assert worker.flavor == "cheap-spot"  # eviction 20 %, which auto: would refuse
        job = session.scalar(select(Job))
        assert job.arguments["spot"] is True


def test_unknown_provider_region_or_flavor_is_named(db) -> None:
    from scitq_bench.server.recruit.engine import hire

    with db.write() as session:
        setup(session, pending=0)
        settings = RecruitSettings()
        reasons = [hire(session, settings, batch=None, flavor=flavor, provider=provider,
                        region=region, concurrency=None, prefetch=0)
                   for flavor, provider, region in (("small", "nebula", "auto"),
                                                    ("small", "fake", "mars"),
                                                    ("tiny", "fake", "auto"),
                                                    ("auto:cpu>=999", "fake", "auto"))]
    texts = [reason.reason for reason in reasons]
    assert "unknown provider 'nebula'" in texts[0] and "fake" in texts[0]
    assert "unknown region 'mars'" in texts[1] and "r1, r2" in texts[1]
    assert "unknown flavor 'tiny'" in texts[2]
    assert "no offer fits auto:cpu>=999" in texts[3]
    # each refusal names the field of a deploy request it is about
    assert [reason.field for reason in reasons] == ["provider", "region", "flavor", "flavor"]


def test_evicted_worker_is_replaced_and_given_back(db) -> None:
    from scitq_bench.server.queue import workers

    with db.write() as session:
        setup(session, pending=4, maximum_workers=1)
        plan(session, RecruitSettings())
        (first,) = hired(session)
        first.status, first.last_contact_at, first.instance_id = "running", utcnow(), "i-9"
        session.flush()
        workers.evict(session, first.id, "spot")
        result = plan(session, RecruitSettings())
        assert len(result.deploy_jobs) == 1  # a replacement: work remains
        assert len(result.destroy_jobs) == 1  # and the reclaimed machine is closed
        job = session.get(Job, result.destroy_jobs[0])
        assert (job.worker_id, job.arguments["instance_id"]) == (first.id, "i-9")
        assert plan(session, RecruitSettings()).destroy_jobs == []  # once only


def test_batch_budget_and_cost_api(api) -> None:
    api.post("/tasks", json={"command": "true", "batch": "paid"})
    batch_id = api.get("/batches?name=paid").json["batches"][0]["id"]
    answer = api.patch(f"/batches/{batch_id}", json={"budget": 12.5})
    assert answer.status_code == 200 and answer.json["budget"] == 12.5
    listed = api.get("/batches?name=paid").json["batches"]
    assert listed[0]["budget"] == 12.5 and listed[0]["cost"] == 0
    assert api.patch(f"/batches/{batch_id}", json={"budget": None}).json["budget"] is None
    assert api.patch(f"/batches/{batch_id}", json={"priority": None}).status_code == 400
    assert api.patch(f"/batches/{batch_id}", json={"budget": -1}).status_code == 400


class RefusingProvider:
    """Has no capacity for ``small`` in r1; anything else is created and 'runs'."""

    starts_worker = False

    def __init__(self) -> None:
        self.created: list[Any] = []
        self.deleted: list[str] = []

    def create(self, spec: Any) -> Any:
        from scitq_bench.recruiters.providers.base import CapacityError, Instance

        if (spec.flavor, spec.region) == ("small", "r1"):
            raise CapacityError("InsufficientInstanceCapacity: no small left in r1")
        self.created.append(spec)
        return Instance(provider="fake", instance_id=f"i-{len(self.created)}", name=spec.name,
                        region=spec.region, status="pending")

    def state(self, instance_id: str, region: str) -> Any:
        from scitq_bench.recruiters.providers.base import Instance

        return Instance(provider="fake", instance_id=instance_id, name="x", region=region,
                        status="running", address=None)

    def delete(self, instance_id: str, region: str) -> None:
        self.deleted.append(instance_id)


def test_capacity_failure_moves_to_the_next_offer(db) -> None:

    from scitq_bench.server.recruit.jobs import JobRunner, JobSettings

    provider = RefusingProvider()
    runner = JobRunner(db=db, providers=lambda name: provider, server_url="http://x",
                       enroll_token=lambda name: "token",
                       settings=JobSettings(deploy_timeout=1.0, boot_poll=0.05))
    with db.write() as session:
        setup(session, pending=2, maximum_workers=1, flavor="small")
        first = plan(session, RecruitSettings()).deploy_jobs
    runner.submit(first[0])

    def failed() -> bool:
        with db.read() as session:
            return session.get(Job, first[0]).status == "failed"
    wait_until(failed, timeout=10, interval=0.05, what="the first job failed")
    with db.read() as session:
        job = session.get(Job, first[0])
        assert job.status == "failed" and "refused for capacity" in job.log
        assert "fake/r1/small" in job.log and "InsufficientInstanceCapacity" in job.log
        (failed,) = hired(session)
        assert failed.status == "failed" and failed.released_at is not None
    with db.write() as session:
        second = plan(session, RecruitSettings()).deploy_jobs
        worker = session.get(Worker, session.get(Job, second[0]).worker_id)
        assert (worker.flavor, worker.region) == ("small", "r2")  # the next cheapest
    runner.submit(second[0])
    wait_until(lambda: provider.deleted, timeout=10, interval=0.05,
               what="the instance given back")
    # it never registered: the watchdog gave the instance back and failed the job
    assert provider.deleted == ["i-1"]
    runner.shutdown()


def test_jobs_cut_short_by_a_restart_are_failed_and_their_machines_given_back(db) -> None:
    from scitq_bench.server.recruit.engine import Engine

    with db.write() as session:
        setup(session, pending=1, maximum_workers=1)
        (job_id,) = plan(session, RecruitSettings()).deploy_jobs
        job = session.get(Job, job_id)
        job.status = "running"  # the server died while it ran
        session.get(Worker, job.worker_id).instance_id = "i-77"

    runner = RecordingRunner()
    Engine(db, runner, RecruitSettings()).recover()  # type: ignore[arg-type]
    with db.read() as session:
        jobs = session.execute(select(Job.id, Job.kind, Job.status, Job.error, Job.arguments)
                               .order_by(Job.id)).all()
    assert (jobs[0].status, jobs[0].error) == ("failed", "interrupted by a server restart")
    assert jobs[1].kind == "destroy" and jobs[1].arguments["instance_id"] == "i-77"
    assert runner.submitted == [jobs[1].id]


def test_a_job_cancelled_before_its_machine_was_given_back_gets_a_destroy_at_restart(db) -> None:
    """The server stopped between a cancel and the give-back: the next start gives the
    machine back, and only for the worker's latest job."""
    from scitq_bench.server.recruit.engine import Engine

    with db.write() as session:
        setup(session, pending=2, maximum_workers=2)
        first, second = plan(session, RecruitSettings()).deploy_jobs
        for job_id, instance in ((first, "i-1"), (second, "i-2")):
            job = session.get(Job, job_id)
            job.status = "cancelled"
            session.get(Worker, job.worker_id).instance_id = instance
        reused = session.get(Job, second)  # the second worker was deployed again since
        session.add(Job(kind="deploy", worker_id=reused.worker_id, status="succeeded",
                        arguments=dict(reused.arguments)))

    runner = RecordingRunner()
    Engine(db, runner, RecruitSettings()).recover()  # type: ignore[arg-type]
    with db.read() as session:
        destroys = session.execute(select(Job.id, Job.arguments).where(
            Job.kind == "destroy")).all()
    assert [d.arguments["instance_id"] for d in destroys] == ["i-1"]
    assert runner.submitted == [destroys[0].id]


def test_only_configured_providers_are_hired(db) -> None:
    """An offer in the catalog of a provider the server has no settings for is never
    hired: ``auto`` skips it, naming it is refused."""
    from scitq_bench.server.recruit.engine import Refusal, hire

    with db.write() as session:
        setup(session, provider="auto")
        elsewhere = RecruitSettings(providers=frozenset({"local"}))
        assert plan(session, elsewhere).deploy_jobs == [] and hired(session) == []
        refused = hire(session, elsewhere, batch=None, flavor="auto:cpu>=2", provider="fake",
                       region="auto", concurrency=None, prefetch=0)
        assert isinstance(refused, Refusal) and refused.field == "provider"
        assert "'fake' is not configured" in refused.reason and "local" in refused.reason
        configured = RecruitSettings(providers=frozenset({"local", "fake"}))
        assert len(plan(session, configured).deploy_jobs) == 3


def test_recruiter_bounds_of_their_own_are_kept(api) -> None:
    """A rank below 1 or a negative minimum is refused (a field's own bound is not lost
    to the bound every stored integer has)."""
    for field, value in (("rank", 0), ("minimum_tasks", -5), ("rank", 2**40)):
        answer = api.post("/recruiters", json={"batch": "b", "flavor": "x", field: value})
        assert answer.status_code == 400 and field in answer.json["message"], answer.json
    assert api.get("/recruiters").json == []
