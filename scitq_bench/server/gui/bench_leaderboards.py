"""Leaderboard pages: the ranked table (the API's ranking, a page at a time, live),
its CSV export, and two charts: the best score over time and the distribution of
scores. Hidden leaderboards and columns stay hidden from participants as in the API."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from scitq_bench.server.bench import charts, leaderboards
from scitq_bench.server.bench.access import visible_phase
from scitq_bench.server.gui.web import EVERYONE, Pager, bp, page, principal, reading, render
from scitq_bench.server.limits import whole_number
from scitq_bench.server.web import csv_attachment

PAGE_ROWS = 50


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


def _offset() -> int:
    try:
        return whole_number(request.args.get("offset", "0"))
    except ValueError:
        return 0


__all__ = ["bp"]
