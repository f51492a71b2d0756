"""Template filters for durations, times and scores, shared by the pages (registered
when this module is imported)."""

from __future__ import annotations

from datetime import datetime

from scitq_bench.server.bench.boards import display_text
from scitq_bench.server.gui.web import bp


@bp.app_template_filter("hms")
def hms(seconds: float | None) -> str:
    """A duration as 1h02m03s (or 4.2s): readable at a glance in a table."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


@bp.app_template_filter("utc")
def utc(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


@bp.app_template_filter("score")
def score(value: float | None, precision: int) -> str:
    """A score as leaderboards show it: the column's precision, whole numbers without
    decimals (the stored value stays exact)."""
    return display_text(None if value is None else float(value), precision)
