"""Batches pages."""

from __future__ import annotations

from typing import Any

from scitq_bench.server.gui.web import bp, page, render


@page("/batches")
def batches() -> Any:
    return render("batches/list.html")


__all__ = ["bp"]
