"""Benchmarks pages."""

from __future__ import annotations

from typing import Any

from scitq_bench.server.gui.web import EVERYONE, bp, page, render


@page("/benchmarks", roles=EVERYONE)
def benchmarks() -> Any:
    return render("benchmarks/list.html")


__all__ = ["bp"]
