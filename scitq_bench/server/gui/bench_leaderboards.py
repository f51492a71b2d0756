"""Leaderboard pages: the ranked table (the API's ranking, a page at a time, live),
its CSV export, and two charts: the best score over time and the distribution of
scores. Hidden leaderboards and columns stay hidden from participants as in the API.
Also the template globals that show a participant where it stands (submissions left,
its submissions' scores and ranks) and why no worker runs a benchmark's steps."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from sqlalchemy import select

from scitq_bench.server.bench import charts, leaderboards, quotas, readiness, standing
from scitq_bench.server.bench.access import (
    manages,
    visible_benchmark,
    visible_phase,
    visible_submission,
)
from scitq_bench.server.bench.models import Phase, Submission
from scitq_bench.server.gui.web import EVERYONE, Pager, bp, page, principal, reading, render
from scitq_bench.server.limits import whole_number
from scitq_bench.server.web import csv_attachment
from scitq_bench.states import SubmissionStatus

PAGE_ROWS = 50
WAITING_STATUSES = (SubmissionStatus.SUBMITTED.value, SubmissionStatus.RUNNING.value)


@page("/phases/<id:phase_id>/leaderboards/<key>", roles=EVERYONE)
def bench_leaderboard(phase_id: int, key: str) -> Any:
    with reading() as session:
        view = leaderboards.board_view(session, principal(), phase_id, key, _offset(),
                                       PAGE_ROWS)
    board = view["board"]
    pager = Pager(offset=board["offset"], limit=PAGE_ROWS, total=board["total"])
    return render("benchmarks/leaderboard.html", fragment="benchmarks/_board_live.html",
                  board=board, pager=pager, phase=view["phase"], bench=view["bench"])


@page("/phases/<id:phase_id>/leaderboards/<key>/csv", roles=EVERYONE)
def bench_leaderboard_csv(phase_id: int, key: str) -> Any:
    """The API's CSV export, byte for byte."""
    with reading() as session:
        name, text = leaderboards.csv_file(session, principal(), phase_id, key)
    return csv_attachment(text, name)


@page("/phases/<id:phase_id>/leaderboards/<key>/best.json", roles=EVERYONE)
def bench_leaderboard_best(phase_id: int, key: str) -> Any:
    with reading() as session:
        phase, benchmark = visible_phase(session, principal(), phase_id)
        return jsonify(charts.best_over_time(session, principal(), benchmark, phase, key))


@page("/phases/<id:phase_id>/leaderboards/<key>/distribution.json", roles=EVERYONE)
def bench_leaderboard_distribution(phase_id: int, key: str) -> Any:
    with reading() as session:
        phase, benchmark = visible_phase(session, principal(), phase_id)
        return jsonify(charts.distribution(session, principal(), benchmark, phase, key,
                                           request.args.get("task", "0")))


# -- where a participant stands, shown on the benchmark's page and the submit form --------

MY_ROWS = 20


@bp.app_template_global()
def bench_status(benchmark_id: int, phase_id: int | None) -> dict[str, Any]:
    """What the benchmark page's status panel shows: why no worker can run the steps
    (``readiness``), and for a reader with an account, in ``phase_id``, the submissions
    left and its latest submissions with their score, rank and why they wait."""
    who = principal()
    with reading() as session:
        benchmark = visible_benchmark(session, who, benchmark_id)
        answer: dict[str, Any] = {"warnings": readiness.warnings(session, benchmark),
                                  "left": None, "mine": [], "board": None}
        phase = session.get(Phase, phase_id) if phase_id is not None else None
        if who.account_id is None or phase is None or phase.benchmark_id != benchmark.id:
            return answer
        answer["left"] = quotas.sentence(quotas.remaining(session, phase, who.account_id))
        found = list(session.scalars(select(Submission).where(
            Submission.phase_id == phase.id, Submission.owner_id == who.account_id)
            .order_by(Submission.id.desc()).limit(MY_ROWS)))
        managed = manages(who, benchmark)
        places = standing.standings(session, benchmark.id, phase.id, [s.id for s in found],
                                    include_hidden=managed)
        answer["board"] = next(iter(places.values()), {}).get("title")
        answer["mine"] = [{
            "id": s.id, "name": s.name, "status": s.status, "created_at": s.created_at,
            "score": places.get(s.id, {}).get("score"), "rank": places.get(s.id, {}).get("rank"),
            "waiting": readiness.submission_waiting(session, s.id)
            if s.status in WAITING_STATUSES else None} for s in found]
        return answer


@bp.app_template_global()
def submission_standings(submission_ids: list[int]) -> dict[int, dict[str, Any]]:
    """{submission id: {score, rank, board}} of submissions listed on a page, each on the
    first leaderboard of its benchmark this reader sees (``standing.standings``)."""
    who = principal()
    with reading() as session:
        places = session.execute(select(Submission.benchmark_id, Submission.phase_id,
                                        Submission.id).where(Submission.id.in_(submission_ids)))
        groups: dict[tuple[int, int], list[int]] = {}
        for benchmark_id, phase_id, submission_id in places:
            groups.setdefault((benchmark_id, phase_id), []).append(submission_id)
        answer: dict[int, dict[str, Any]] = {}
        for (benchmark_id, phase_id), ids in groups.items():
            benchmark = visible_benchmark(session, who, benchmark_id)
            answer.update(standing.standings(session, benchmark_id, phase_id, ids,
                                             include_hidden=manages(who, benchmark)))
        return answer


@bp.app_template_global()
def waiting_reason(submission_id: int) -> str | None:
    """Why a submission the reader sees waits ("queued: no worker is up"), or None."""
    with reading() as session:
        visible_submission(session, principal(), submission_id)
        return readiness.submission_waiting(session, submission_id)


@bp.app_template_global()
def phase_quotas(benchmark_id: int) -> dict[int, str | None]:
    """{phase id: "Submissions: 2 left today, 5 left in total"} for the submit form;
    empty for a reader without an account."""
    who = principal()
    if who.account_id is None:
        return {}
    with reading() as session:
        phases = list(session.scalars(select(Phase).where(Phase.benchmark_id == benchmark_id)))
        counts = quotas.phases_remaining(session, phases, who.account_id)
        return {pid: quotas.sentence(left) for pid, left in counts.items()}


def _offset() -> int:
    try:
        return whole_number(request.args.get("offset", "0"))
    except ValueError:
        return 0


__all__ = ["bp"]
