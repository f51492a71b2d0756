"""Jobs pages."""

from __future__ import annotations

from typing import Any

from scitq_bench.server.gui.web import bp, page, render


@page("/jobs")
def jobs() -> Any:
    return render("jobs/list.html")


__all__ = ["bp"]
