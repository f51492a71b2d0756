"""Benchmarks pages: the list, importing a bundle, and a benchmark's own page (its
texts, phases, tasks and a live view of its leaderboards). Everything goes through the
bench services the API uses, with the same rules of who sees what."""

from __future__ import annotations

from typing import Any

from flask import request, url_for
from sqlalchemy import func, select

from scitq_bench.exceptions import ScitqBenchError
from scitq_bench.server import auth
from scitq_bench.server.bench import importer, leaderboards
from scitq_bench.server.bench.access import visible_benchmark, visible_benchmarks
from scitq_bench.server.bench.models import Account, Benchmark, Phase
from scitq_bench.server.bench.serialize import benchmark_dict
from scitq_bench.server.bench.submissions import phase_state
from scitq_bench.server.context import server_context
from scitq_bench.server.gui.web import (
    EVERYONE,
    ORGANIZERS,
    Pager,
    bp,
    done,
    page,
    principal,
    reading,
    render,
)
from scitq_bench.server.models import utcnow

PREVIEW_ROWS = 10


@page("/benchmarks", roles=EVERYONE)
def benchmarks() -> Any:
    return _list_page()


def _list_page(errors: dict[str, str] | None = None, form: dict[str, str] | None = None,
               status: int = 200) -> Any:
    """The benchmarks the user may see, a page at a time, and (for organizers) the
    import form, with its errors when an import was refused."""
    condition = visible_benchmarks(principal())
    with reading() as session:
        total = session.scalar(select(func.count()).select_from(Benchmark)
                               .where(condition)) or 0
        pager = Pager.from_request(total)
        rows = session.execute(
            select(Benchmark, Account.name).outerjoin(Account, Account.id == Benchmark.owner_id)
            .where(condition).order_by(Benchmark.id.desc())
            .offset(pager.offset).limit(pager.limit)).all()
        listed = [{"id": b.id, "key": b.key, "title": b.title, "visibility": b.visibility,
                   "owner": owner, "created_at": b.created_at} for b, owner in rows]
    return render("benchmarks/list.html", status=status, benchmarks=listed, pager=pager,
                  errors=errors or {}, form=form or {},
                  may_import=principal().role in ORGANIZERS,
                  admin=principal().role == auth.ADMIN)


@page("/benchmarks/import", methods=("POST",), roles=ORGANIZERS)
def benchmark_import() -> Any:
    """A Codabench bundle from the form, imported by the API's service; a refusal comes
    back next to the field it is about."""
    form = {"key": request.form.get("key", "").strip(),
            "visibility": request.form.get("visibility", "public"),
            "run_on_host": request.form.get("run_on_host", "")}
    upload = request.files.get("bundle")
    if upload is None or not upload.filename:
        return _list_page({"bundle": "choose a bundle (a zip) to import"}, form, 400)
    context = server_context()
    try:
        benchmark_id = importer.import_upload(
            context.db, context.files, context.settings.data_dir / "imports", principal(),
            upload.stream, key=form["key"] or None, visibility=form["visibility"],
            run_on_host=bool(form["run_on_host"]))
    except ScitqBenchError as exc:
        return _list_page({exc.field or "bundle": str(exc)}, form, 400)
    return done(f"Imported benchmark {benchmark_id} from {upload.filename}.",
                url_for("gui.benchmark", benchmark_id=benchmark_id))


@page("/benchmarks/<id:benchmark_id>", roles=EVERYONE)
def benchmark(benchmark_id: int) -> Any:
    """The benchmark: texts (shown as text), phases with their limits, tasks, and the
    leaderboards of one phase (the open one by default), live."""
    who = principal()
    with reading() as session:
        found = visible_benchmark(session, who, benchmark_id)
        info = benchmark_dict(session, who, found)
        rows = list(session.scalars(select(Phase).where(Phase.benchmark_id == found.id)
                                    .order_by(Phase.index)))
        chosen = _chosen_phase(rows)
        boards = [leaderboards.page(session, who, found, chosen, board["key"], 0, PREVIEW_ROWS)
                  for board in info["leaderboards"]] if chosen is not None else []
        phases = phase_rows(rows)
        chosen_info = {"id": chosen.id, "name": chosen.name} if chosen is not None else None
    return render("benchmarks/detail.html", fragment="benchmarks/_boards.html",
                  bench=info, phases=phases, chosen=chosen_info, boards=boards,
                  preview=True,
                  may_submit=who.role in (auth.ADMIN, auth.PARTICIPANT) or info["manage"])


def _chosen_phase(phases: list[Phase]) -> Phase | None:
    """The phase asked for (?phase=), else the open one, else the latest."""
    wanted = request.args.get("phase", "")
    for phase in phases:
        if str(phase.id) == wanted:
            return phase
    now = utcnow()
    return next((p for p in phases if phase_state(p, now) == "open"),
                phases[-1] if phases else None)


def phase_rows(phases: list[Phase]) -> list[dict[str, Any]]:
    """Phases as plain values for templates (rendered once the session is closed),
    with whether each is open now."""
    now = utcnow()
    keep = ("id", "index", "name", "description", "start", "end", "max_submissions",
            "max_submissions_per_day", "max_submission_mb", "execution_time_limit",
            "accepts_only_result_submissions")
    return [{**{k: getattr(p, k) for k in keep}, "state": phase_state(p, now)} for p in phases]


__all__ = ["bp", "phase_rows"]
