"""Benchmarks pages: the list, importing a bundle, and a benchmark's own page (its
texts, phases, tasks and a live view of its leaderboards). Everything goes through the
bench services the API uses, with the same rules of who sees what."""

from __future__ import annotations

from typing import Any

from flask import request, url_for

from scitq_bench.exceptions import ScitqBenchError
from scitq_bench.server import auth
from scitq_bench.server.bench import service
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

PREVIEW_ROWS = 10


@page("/benchmarks", roles=EVERYONE)
def benchmarks() -> Any:
    return _list_page()


def _list_page(errors: dict[str, str] | None = None, form: dict[str, str] | None = None,
               status: int = 200) -> Any:
    """The benchmarks the user may see, a page at a time, and (for organizers) the
    import form, with its errors when an import was refused."""
    who = principal()
    with reading() as session:
        pager = Pager.from_request(service.count_benchmarks(session, who))
        listed = service.benchmark_rows(session, who, pager.offset, pager.limit)
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
    try:
        benchmark_id = service.import_benchmark(
            server_context(), principal(), upload.stream, key=form["key"] or None,
            visibility=form["visibility"], run_on_host=bool(form["run_on_host"]))
    except ScitqBenchError as exc:
        return _list_page({exc.field or "bundle": str(exc)}, form, 400)
    return done(f"Imported benchmark {benchmark_id} from {upload.filename}.",
                url_for("gui.benchmark", benchmark_id=benchmark_id))


@page("/benchmarks/<id:benchmark_id>", roles=EVERYONE)
def benchmark(benchmark_id: int) -> Any:
    """The benchmark: texts (shown as text), phases with their limits, tasks, and the
    leaderboards of one phase (?phase=, else the open one), live."""
    who = principal()
    with reading() as session:
        facts = service.overview(session, who, benchmark_id, request.args.get("phase", ""),
                                 PREVIEW_ROWS)
    info = facts["bench"]
    return render("benchmarks/detail.html", fragment="benchmarks/_boards.html",
                  bench=info, phases=facts["phases"], chosen=facts["chosen"],
                  boards=facts["boards"], preview=True,
                  may_submit=who.role in (auth.ADMIN, auth.PARTICIPANT) or info["manage"])


__all__ = ["bp"]
