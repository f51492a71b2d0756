"""The deploy form and undeploy through the Flask test client, on a server whose
recruitment is set up (jobs are recorded, not run: the browser test runs a real one)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy import select

from scitq_bench.recruiters.protofilter import Offer
from scitq_bench.server import auth
from scitq_bench.server.app import start_recruitment
from scitq_bench.server.queue.models import Worker
from scitq_bench.server.recruit import catalog
from scitq_bench.server.recruit.models import Job
from scitq_bench.server.recruit.runtime import EXTENSION, NOT_RUNNING
from tests.support.api import register
from tests.support.gui import GuiClient, account_token

OFFERS = [
    Offer(provider="fake", region="r1", flavor="small", cpu=2, ram_gb=4, cost=0.10),
    Offer(provider="fake", region="r2", flavor="big", cpu=16, ram_gb=64, cost=0.80),
]
VALID = {"flavor": "small", "provider": "fake", "region": "auto", "batch": "b",
         "number": "2", "concurrency": "3", "prefetch": "1"}


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def error_for(page: str, field: str) -> str:
    assert f'data-error-for="{field}"' in page, page
    return page.split(f'data-error-for="{field}"')[1].split("</p>")[0]


@pytest.fixture
def submitted(app: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Recruitment set up on the app with a catalog; the jobs it is asked to run."""
    start_recruitment(app, "http://127.0.0.1:1", start=False)
    with app.extensions["scitq_bench"].db.write() as session:
        catalog.upsert_offers(session, "fake", OFFERS)
    runtime = app.extensions[EXTENSION]
    # hired as if configured (its jobs are recorded, never run)
    runtime.settings = dataclasses.replace(runtime.settings,
                                           providers=frozenset({"local", "fake"}))
    started: list[int] = []
    monkeypatch.setattr(app.extensions[EXTENSION].runner, "submit", started.append)
    return started


def jobs_and_workers(app: Any) -> tuple[list[Job], list[Worker]]:
    with app.extensions["scitq_bench"].db.read() as session:
        jobs = list(session.scalars(select(Job).order_by(Job.id)))
        workers = list(session.scalars(select(Worker).where(Worker.provider.is_not(None))
                                       .order_by(Worker.id)))
        session.expunge_all()
    return jobs, workers


def test_without_recruitment_the_form_says_so(admin_gui: GuiClient, app) -> None:
    page = text(admin_gui.get("/ui/workers/deploy"))
    assert "Recruitment is not running on this server" in page and "public_url" in page
    assert "<fieldset disabled>" in page
    assert "Recruitment is not running" in text(admin_gui.get("/ui/workers"))
    response = admin_gui.post("/ui/workers/deploy", VALID)
    assert response.status_code == 400
    assert error_for(text(response), "_form").strip(">").startswith(NOT_RUNNING[:40])
    assert jobs_and_workers(app) == ([], [])


def test_the_form_offers_the_catalog(admin_gui: GuiClient, submitted) -> None:
    register_batch = admin_gui.get("/ui/workers/deploy")
    page = text(register_batch)
    assert "<fieldset>" in page and "not running" not in page
    flavors = page.split('id="flavor-suggestions"')[1].split("</datalist>")[0]
    assert '<option value="small">' in flavors and '<option value="big">' in flavors
    assert '<option value="auto:cpu&gt;=8:ram&gt;=32">' in flavors
    providers = page.split('id="f-provider"')[1].split("</select>")[0]
    assert '<option value="local">local</option>' in providers  # the configured ones
    assert '"fake"' not in providers  # in the catalog, but no configuration to hire with
    assert '<option value="r2">' in page.split('id="region-suggestions"')[1]
    assert 'data-suggest="/ui/workers/deploy/flavors"' in page
    assert 'id="deploy-form"' in text(admin_gui.get("/ui/workers"))  # on the workers page too


def test_a_valid_form_deploys_as_the_api_does(admin_gui: GuiClient, app, submitted) -> None:
    response = admin_gui.post("/ui/workers/deploy", VALID)
    assert response.status_code == 302 and response.headers["Location"] == "/ui/workers"
    jobs, workers = jobs_and_workers(app)
    assert [j.kind for j in jobs] == ["deploy", "deploy"] and submitted == [j.id for j in jobs]
    assert [(w.flavor, w.region, w.concurrency, w.prefetch, w.cost_per_hour) for w in workers] \
        == [("small", "r1", 3, 1, 0.10)] * 2
    page = text(admin_gui.get("/ui/workers"))
    assert "2 deploy job(s) started" in page
    assert workers[0].name in page and "small" in page  # offline until its machine is up
    answer = admin_gui.post("/ui/workers/deploy", {**VALID, "number": "1", "concurrency": "",
                                                   "name": "named-one", "permanent": "1",
                                                   "batch": ""})
    assert answer.status_code == 302
    _, workers = jobs_and_workers(app)
    assert (workers[-1].name, workers[-1].permanent, workers[-1].batch_id) == \
        ("named-one", True, None)
    assert workers[-1].concurrency == 2  # from the flavor: one per cpu


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"flavor": "auto:cpu>=ten"}, "flavor", "&#39;cpu&gt;=ten&#39;: cpu needs a number"),
    ({"flavor": ""}, "flavor", "Field required"),
    ({"flavor": "tiny"}, "flavor", "unknown flavor &#39;tiny&#39;"),
    ({"flavor": "auto:cpu>=999"}, "flavor", "no offer fits auto:cpu&gt;=999"),
    ({"provider": "nebula"}, "provider", "unknown provider &#39;nebula&#39;"),
    ({"region": "mars"}, "region", "unknown region &#39;mars&#39;"),
    ({"number": "0"}, "number", "at least 1"),
    ({"number": "two"}, "number", "whole number"),
    ({"number": "1001"}, "number", "less than or equal to 1000"),
    ({"concurrency": "0"}, "concurrency", "at least 1"),
    ({"prefetch": "-1"}, "prefetch", "at least 0"),
    ({"batch": "no/slash"}, "batch", "should match pattern"),
    ({"name": "two-of-me"}, "_form", "only when deploying one machine"),
])
def test_bad_input_is_refused_next_to_its_field(admin_gui: GuiClient, app, submitted,
                                                changes, field, message) -> None:
    response = admin_gui.post("/ui/workers/deploy", {**VALID, **changes})
    assert response.status_code == 400
    page = text(response)
    assert message in error_for(page, field)
    assert 'id="deploy-form"' in page
    if changes.get("flavor"):
        assert 'value="' + changes["flavor"].replace(">", "&gt;") + '"' in page  # kept
    assert jobs_and_workers(app) == ([], []) and submitted == []


def test_deploy_needs_the_csrf_token_and_the_admin_role(admin_gui: GuiClient, gui_client,
                                                        app, submitted) -> None:
    response = admin_gui.post("/ui/workers/deploy", VALID, csrf=False)
    assert response.status_code == 400 and "security token" in text(response)
    other = GuiClient(app.test_client())
    other.sign_in(account_token(app, "org", auth.ORGANIZER))
    assert other.post("/ui/workers/deploy", VALID).status_code == 403
    assert other.get("/ui/workers/deploy").status_code == 403
    assert jobs_and_workers(app) == ([], []) and submitted == []


def test_flavor_suggestions_follow_what_is_typed(admin_gui: GuiClient, app, submitted) -> None:
    def suggest(typed: str) -> list[str]:
        answer = admin_gui.get("/ui/workers/deploy/flavors", query_string={"q": typed})
        assert answer.status_code == 200
        return answer.get_json()["suggestions"]

    assert suggest("sm") == ["small"]
    assert "big" in suggest("") and "auto:cpu>=8:ram>=32" in suggest("")
    assert suggest("a")[0].startswith("auto:")
    after = suggest("auto:cpu>=8:")
    assert "auto:cpu>=8:ram>=8" in after and not any("cpu" in s[12:] for s in after)
    assert suggest("auto:cpu>=8:ra") == ["auto:cpu>=8:ram>=8", "auto:cpu>=8:ram>=32",
                                         "auto:cpu>=8:ram>=128"]
    assert suggest("auto:provider==") == ["auto:provider==fake"]
    complete = suggest("auto:gpu>=1")
    assert complete[0] == "auto:gpu>=1" and "auto:gpu>=1:gpumem>=24" in complete
    assert all(s.startswith("auto:gpu>=1") for s in complete)
    assert suggest("100%_") == []  # LIKE wildcards are plain text here


def test_undeploy_gives_a_recruited_machine_back(admin_gui: GuiClient, app, api,
                                                 submitted) -> None:
    admin_gui.post("/ui/workers/deploy", {**VALID, "number": "1"})
    _, (worker,) = jobs_and_workers(app)
    page = text(admin_gui.get(f"/ui/workers/{worker.id}"))
    assert "Undeploy" in page and "small (fake/r1)" in page
    assert 'data-confirm="Give machine ' in page
    with app.extensions["scitq_bench"].db.write() as session:  # the machine is up
        session.get(Job, worker_deploy_job(app)).status = "succeeded"
    response = admin_gui.post(f"/ui/workers/{worker.id}/undeploy")
    jobs, _ = jobs_and_workers(app)
    assert [j.kind for j in jobs] == ["deploy", "destroy"] and submitted[-1] == jobs[-1].id
    assert response.status_code == 302 and response.headers["Location"] == f"/ui/jobs/{jobs[-1].id}"
    assert "the machine is being given back" in text(admin_gui.get(response.headers["Location"]))
    by_hand, _ = register(api, "by-hand")
    assert "Undeploy" not in text(admin_gui.get(f"/ui/workers/{by_hand}"))
    admin_gui.post(f"/ui/workers/{by_hand}/undeploy")
    assert "was not deployed here" in text(admin_gui.get(f"/ui/workers/{by_hand}"))
    assert admin_gui.post(f"/ui/workers/{worker.id}/undeploy", csrf=False).status_code == 400
    assert len(jobs_and_workers(app)[0]) == 2


def worker_deploy_job(app: Any) -> int:
    return jobs_and_workers(app)[0][0].id


def test_undeploy_while_deploying_cancels_the_deploy(admin_gui: GuiClient, app,
                                                     submitted) -> None:
    admin_gui.post("/ui/workers/deploy", {**VALID, "number": "1"})
    (deploy,), (worker,) = jobs_and_workers(app)
    response = admin_gui.post(f"/ui/workers/{worker.id}/undeploy")
    assert response.headers["Location"] == f"/ui/jobs/{deploy.id}"
    (job,), (worker,) = jobs_and_workers(app)  # no second job on the same machine
    assert job.status == "cancelled" and job.cancelled_by == "admin"
    assert worker.status == "failed" and worker.released_at is not None
    assert f"Deploy job {deploy.id} cancelled" in text(admin_gui.get(f"/ui/jobs/{deploy.id}"))


def test_undeploy_without_recruitment_says_why(admin_gui: GuiClient, app, api) -> None:
    worker_id, _ = register(api, "w1")
    with app.extensions["scitq_bench"].db.write() as session:
        worker = session.get(Worker, worker_id)
        worker.provider, worker.region, worker.flavor = "fake", "r1", "small"
    page = text(admin_gui.get(f"/ui/workers/{worker_id}"))
    assert "undeploy needs recruitment" in page
    admin_gui.post(f"/ui/workers/{worker_id}/undeploy")
    assert "recruitment is not running" in text(admin_gui.get(f"/ui/workers/{worker_id}"))
