"""Workers page: every worker with its load, counts and machine, live."""

from __future__ import annotations

from typing import Any

from scitq_bench.server import workers as domain
from scitq_bench.server.gui.web import bp, page, reading, render
from scitq_bench.server.serialize import worker_dict


@page("/workers")
def workers() -> Any:
    with reading() as session:
        live = domain.live_counts(session)
        rows = [worker_dict(w, live.get(w.id)) for w in domain.list_workers(session)]
    return render("workers/list.html", fragment="workers/_table.html", workers=rows)


__all__ = ["bp"]
