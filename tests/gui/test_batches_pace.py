"""The batch page's chart of tasks ended per minute, counted by the database: on
SQLite and on PostgreSQL, whose date arithmetic differs."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from scitq_bench.server.queue.models import Execution
from tests import conftest as shared
from tests.support.gui import GuiClient, batch_of, create, register

database_url = shared.database_url  # both backends, not the GUI tests' SQLite only


@pytest.mark.parametrize("spread_minutes", [3, 600])
def test_chart_counts_tasks_ended_per_minute_in_the_database(admin_gui: GuiClient, api, app,
                                                             spread_minutes):
    for _ in range(5):
        create(api, "alpha")
    worker_id, token = register(api, concurrency=5)
    claimed = api.post(f"/workers/{worker_id}/claim?max=5", token=token).json["executions"]
    events = [{"execution_id": c["execution_id"], "status": s, "return_code": 0, "duration": 1}
              for c, s in zip(claimed, ["succeeded"] * 3 + ["failed"] * 2, strict=True)]
    api.post(f"/workers/{worker_id}/report", token=token, json={"events": events})
    start = datetime(2026, 1, 1, 12, 0, 10)
    ends = [start, start + timedelta(seconds=20), start + timedelta(minutes=spread_minutes),
            start, start + timedelta(minutes=spread_minutes)]
    with app.extensions["scitq_bench"].db.write() as session:
        for claim, end in zip(claimed, ends, strict=True):
            session.execute(update(Execution).where(Execution.id == claim["execution_id"])
                            .values(finished_at=end))
    batch_id = batch_of(api, "alpha")["id"]
    chart = admin_gui.get(f"/ui/batches/{batch_id}/done.json").json
    assert chart["kind"] == "line" and chart["x"] == "time"
    succeeded, failed = (s["points"] for s in chart["series"])
    first = int((datetime(2026, 1, 1, 12, 0) - datetime(1970, 1, 1)).total_seconds())
    if spread_minutes == 3:
        assert succeeded == [[first, 2], [first + 60, 0], [first + 120, 0], [first + 180, 1]]
        assert failed == [[first, 1], [first + 60, 0], [first + 120, 0], [first + 180, 1]]
    else:  # ten hours: three-minute buckets, still a rate per minute
        assert "3-minute buckets" in chart["x_label"]
        assert succeeded[0] == [first, round(2 / 3, 3)] and len(succeeded) == 201
        assert sum(p[1] for p in succeeded) * 3 == pytest.approx(3)
