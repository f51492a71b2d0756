"""How many more submissions a participant may make to a phase, today and in all,
counted as ``submissions.check_quota`` counts them (every submission but cancelled
ones; the daily quota per UTC day), so the form says what a submit would be told."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scitq_bench.server.bench.models import Phase, Submission
from scitq_bench.server.queue.models import utcnow
from scitq_bench.server.serialize import iso
from scitq_bench.states import SubmissionStatus


def remaining(session: Session, phase: Phase, owner_id: int | None,
              now: datetime | None = None) -> dict[str, Any]:
    """{used, used_today, total_left, today_left, resets_at}: ``*_left`` is None
    where the phase sets no limit, never below 0; ``resets_at`` is when the daily count
    starts again (None without a daily limit)."""
    now = now or utcnow()
    day = datetime(now.year, now.month, now.day)
    mine = select(func.count()).select_from(Submission).where(
        Submission.phase_id == phase.id, Submission.owner_id == owner_id,
        Submission.status != SubmissionStatus.CANCELLED.value)
    used = session.scalar(mine) or 0
    used_today = session.scalar(mine.where(Submission.created_at >= day)) or 0
    total = phase.max_submissions
    daily = phase.max_submissions_per_day
    return {
        "used": used, "used_today": used_today,
        "total_left": None if total is None else max(total - used, 0),
        "today_left": None if daily is None else max(daily - used_today, 0),
        "resets_at": None if daily is None else iso(day + timedelta(days=1)),
    }


def phases_remaining(session: Session, phases: list[Phase],
                     owner_id: int | None) -> dict[int, dict[str, Any]]:
    """``remaining`` of each phase, by phase id."""
    now = utcnow()
    return {p.id: remaining(session, p, owner_id, now) for p in phases}


def sentence(left: dict[str, Any]) -> str | None:
    """What a page says: "3 submissions left today, 10 in total"; None without limits."""
    parts = []
    if left["today_left"] is not None:
        parts.append(f"{left['today_left']} left today")
    if left["total_left"] is not None:
        parts.append(f"{left['total_left']} left in total")
    return "Submissions: " + ", ".join(parts) if parts else None


def annotate_phases(session: Session, owner_id: int | None,
                    phases: list[dict[str, Any]]) -> None:
    """Add ``remaining`` (``remaining``) to each phase of a benchmark's answer, for a
    reader with an account (the participant's own counts)."""
    if owner_id is None or not phases:
        return
    found = {p.id: p for p in session.scalars(select(Phase).where(
        Phase.id.in_([p["id"] for p in phases])))}
    counts = phases_remaining(session, list(found.values()), owner_id)
    for phase in phases:
        if phase["id"] in counts:
            phase["remaining"] = counts[phase["id"]]
