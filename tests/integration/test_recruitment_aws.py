"""The AWS catalog through recruitment, against moto: the server's configured provider
refreshes its flavors and prices (on demand through the API, and on the loop's
schedule), and recruitment hires from them; a refused hire keeps that offer out."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws
from sqlalchemy import select

from scitq_bench.server.app import start_recruitment
from scitq_bench.server.recruit.engine import RecruitSettings, Refusal, hire
from scitq_bench.server.recruit.models import FlavorMetric
from tests.support.aws import aws_config


@pytest.fixture
def ec2() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def aws_app(app: Any, tmp_path: Any, ec2: None) -> Any:
    context = app.extensions["scitq_bench"]
    context.settings = dataclasses.replace(context.settings, recruitment={
        "providers": {"aws": aws_config(tmp_path)}})
    start_recruitment(app, "http://127.0.0.1:1", start=False)
    return app


def test_catalog_refresh_and_hire(api: Any, aws_app: Any) -> None:
    answer = api.post("/flavors/update?provider=aws")
    assert answer.status_code == 200, answer.json
    assert answer.json["updated"]["aws"]["offers_created"] > 0
    offers = api.get("/flavors?provider=aws&protofilters=tags%23G").json["flavors"]
    assert offers and all(o["gpu_count"] >= 1 for o in offers)
    priced = [o for o in offers if o["region"] == "us-east-1" and o["flavor"] == "g4dn.xlarge"
              and not o["spot"]]
    assert priced and priced[0]["cost"] == 0.526
    assert api.post("/flavors/update?provider=gcp").status_code == 400
    everything = api.post("/flavors/update").json
    assert set(everything["updated"]) == {"local", "aws"} and everything["errors"] == {}

    db = aws_app.extensions["scitq_bench"].db
    with db.write() as session:
        job = hire(session, RecruitSettings(), batch=None, flavor="auto:tags#G:cost<=1",
                   provider="aws", region="us-east-1", concurrency=None, prefetch=0)
        assert not isinstance(job, Refusal), job
        assert job.arguments["flavor"].startswith("g4dn")


def test_catalog_refresh_on_schedule(aws_app: Any) -> None:
    runtime = aws_app.extensions["scitq_bench_recruit"]
    runtime.engine.catalog_interval = 0.0
    runtime.engine._maybe_refresh_catalogs()  # noqa: SLF001 - what the loop does each pass
    db = aws_app.extensions["scitq_bench"].db
    with db.read() as session:
        assert session.scalars(select(FlavorMetric)).first() is not None
