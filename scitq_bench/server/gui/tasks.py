"""Tasks pages."""

from __future__ import annotations

from typing import Any

from scitq_bench.server.gui.web import bp, page, render


@page("/tasks")
def tasks() -> Any:
    return render("tasks/list.html")


__all__ = ["bp"]
