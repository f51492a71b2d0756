"""What organizers change from a benchmark's page (a phase's dates and limits, a phase
run again, the benchmark deleted) with the API's rules and CSRF; the counts per phase;
bundle pages rendered from Markdown and cleaned; the logo served as an image that runs
nothing; and, in real Chromium, malicious pages that run nothing and the benchmark
pages at a phone's width (390 px) without sideways scrolling."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from scitq_bench.server.bench.models import Benchmark, Phase
from scitq_bench.server.gui.bench_pages import render_markdown
from tests.conftest import ApiClient
from tests.gui.test_benchmarks import (
    context,
    import_via_form,
    phase_of,
    score_all,
    signed_in,
    submission_id_of,
    submit_via_form,
)
from tests.support.bundles import make_bundle, make_submission
from tests.support.gui import GuiClient, account_token, screenshot, sign_in

MALICIOUS = (
    "# Overview\n\nSafe **text** and [a link](https://example.org).\n\n"
    "<script>window.__page_ran = 1; console.log('PAGE-MARKER')</script>\n\n"
    "<img src=\"/nothing.png\" onerror=\"window.__page_ran = 2; alert('PAGE-MARKER')\">\n\n"
    "[click me](javascript:alert('PAGE-MARKER'))\n\n"
    "<a id=\"evil-link\" href=\"JaVaScRiPt:alert('PAGE-MARKER')\">raw link</a>\n\n"
    "<iframe src=\"javascript:alert('PAGE-MARKER')\"></iframe>"
    "<svg onload=\"alert('PAGE-MARKER')\"></svg>"
    "<div onclick=\"alert('PAGE-MARKER')\" id=\"clicky\">click</div>\n"
)
RUNNABLE_URL = re.compile(r"""(href|src)\s*=\s*["']?\s*javascript:""", re.I)
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf00000301010018dd8db00000000049454e44ae426082")


def phase_row(app: Any, phase_id: int) -> Phase:
    with context(app).db.read() as session:
        found = session.get(Phase, phase_id)
        session.expunge(found)
        return found


@pytest.fixture
def olga(app: Any) -> GuiClient:
    return signed_in(app, account_token(app, "olga", "organizer"))


@pytest.fixture
def owned(app: Any, olga: GuiClient, tmp_path: Path) -> dict[str, int]:
    benchmark_id = import_via_form(olga, make_bundle(tmp_path / "b", phases=2))
    return {"bench": benchmark_id, "phase": phase_of(app, benchmark_id),
            "second": phase_of(app, benchmark_id, 1)}


# -- editing a phase ---------------------------------------------------------------------


def edit_form(client: GuiClient, phase_id: int) -> dict[str, str]:
    page = client.get(f"/ui/phases/{phase_id}/edit")
    assert page.status_code == 200, page.get_data(as_text=True)
    html = page.get_data(as_text=True)
    values = dict(re.findall(r'name="(\w+)" type="[\w-]+" value="([^"]*)"', html))
    values["description"] = re.search(r'name="description"[^>]*>([^<]*)<', html).group(1)
    for name in re.findall(r'name="(\w+)" id="f-\w+" value="1" checked', html):
        values[name] = "1"
    values.pop("csrf_token", None)
    return values


def test_an_organizer_edits_a_phase_with_the_api_rules(app, olga, owned):
    phase = owned["phase"]
    detail = olga.get(f"/ui/benchmarks/{owned['bench']}").get_data(as_text=True)
    assert f'href="/ui/phases/{phase}/edit"' in detail
    form = edit_form(olga, phase)
    assert form["name"] == "Phase 0" and form["execution_time_limit"]
    form.update(start="2020-01-02T10:00", end="2020-12-01T00:00", max_submissions="5",
                max_submissions_per_day="2", execution_time_limit="120",
                accepts_only_result_submissions="1")
    saved = olga.post(f"/ui/phases/{phase}/edit", form)
    assert saved.status_code == 302, saved.get_data(as_text=True)
    assert "saved" in olga.get(saved.headers["Location"]).get_data(as_text=True)
    row = phase_row(app, phase)
    assert (row.max_submissions, row.max_submissions_per_day, row.execution_time_limit) == \
        (5, 2, 120)
    assert row.start.isoformat() == "2020-01-02T10:00:00" and row.accepts_only_result_submissions
    assert row.end.isoformat() == "2020-12-01T00:00:00"
    # the API's own checks answer here too: phases may not overlap
    overlap = olga.post(f"/ui/phases/{phase}/edit", {**form, "end": "2021-06-01T00:00"})
    assert overlap.status_code == 400 and "overlap" in overlap.get_data(as_text=True)
    assert phase_row(app, phase).end.isoformat() == "2020-12-01T00:00:00"
    # emptied limits mean no limit; an unticked box switches off
    form.update(max_submissions="", accepts_only_result_submissions="")
    del form["accepts_only_result_submissions"]
    assert olga.post(f"/ui/phases/{phase}/edit", form).status_code == 302
    row = phase_row(app, phase)
    assert row.max_submissions is None and not row.accepts_only_result_submissions


def test_refused_values_are_shown_and_nothing_changes(app, olga, owned):
    phase = owned["phase"]
    before = phase_row(app, phase)
    form = edit_form(olga, phase)
    bad_end = olga.post(f"/ui/phases/{phase}/edit",
                        {**form, "start": "2026-05-01T00:00", "end": "2026-04-01T00:00"})
    assert bad_end.status_code == 400
    assert re.search(r'data-error-for="(end|form)">[^<]*not after start',
                     bad_end.get_data(as_text=True))
    zero = olga.post(f"/ui/phases/{phase}/edit", {**form, "max_submissions_per_day": "0"})
    assert zero.status_code == 400
    assert 'data-error-for="max_submissions_per_day"' in zero.get_data(as_text=True)
    no_start = olga.post(f"/ui/phases/{phase}/edit", {**form, "start": ""})
    assert no_start.status_code == 400 and "start" in no_start.get_data(as_text=True)
    not_a_number = olga.post(f"/ui/phases/{phase}/edit", {**form, "max_submissions": "many"})
    assert not_a_number.status_code == 400
    assert 'data-error-for="max_submissions"' in not_a_number.get_data(as_text=True)
    after = phase_row(app, phase)
    assert (after.start, after.end, after.max_submissions_per_day) == \
        (before.start, before.end, before.max_submissions_per_day)


def test_only_the_benchmarks_organizers_edit_its_phases(app, olga, owned):
    phase = owned["phase"]
    form = edit_form(olga, phase)
    assert olga.post(f"/ui/phases/{phase}/edit", {**form, "max_submissions": "3"},
                     csrf=False).status_code == 400
    alice = signed_in(app, account_token(app, "alice", "participant"))
    assert alice.get(f"/ui/phases/{phase}/edit").status_code == 403
    assert alice.post(f"/ui/phases/{phase}/edit", {**form, "max_submissions": "3"}) \
        .status_code == 403
    assert f"/ui/phases/{phase}/edit" not in \
        alice.get(f"/ui/benchmarks/{owned['bench']}").get_data(as_text=True)
    oscar = signed_in(app, account_token(app, "oscar", "organizer"))
    assert oscar.get(f"/ui/phases/{phase}/edit").status_code == 403
    assert oscar.post(f"/ui/phases/{phase}/edit", {**form, "max_submissions": "3"}) \
        .status_code == 403
    assert phase_row(app, phase).max_submissions != 3


# -- rerun, delete, counts ---------------------------------------------------------------


def test_counts_and_a_phase_run_again(app, api, olga, owned, tmp_path):
    bench, phase = owned["bench"], owned["second"]  # the open one
    tokens = {n: account_token(app, n, "participant") for n in ("alice", "bob")}
    subs = []
    for name, value in (("alice", 40), ("alice", 41), ("bob", 30)):
        client = signed_in(app, tokens[name])
        subs.append(submission_id_of(submit_via_form(
            client, bench, phase, make_submission(tmp_path / f"{name}{value}", "result", value))))
    score_all(api, {s: {"score": 90 + i, "error": 1, "prediction": 40}
                    for i, s in enumerate(subs)})
    page = olga.get(f"/ui/benchmarks/{bench}").get_data(as_text=True)
    row = re.search(rf'<tr data-phase="{phase}">.*?</tr>', page, re.S).group(0)
    assert re.search(r'data-count="participants">2<', row)
    assert re.search(r'data-count="submissions">3<', row)
    other = re.search(rf'<tr data-phase="{owned["phase"]}">.*?</tr>', page, re.S).group(0)
    assert re.search(r'data-count="submissions">0<', other)

    alice = signed_in(app, tokens["alice"])
    assert alice.post(f"/ui/phases/{phase}/rerun").status_code == 403
    assert olga.post(f"/ui/phases/{phase}/rerun", csrf=False).status_code == 400
    assert all(api.get(f"/submissions/{s}").json["attempts"] == 1 for s in subs)
    back = f"/ui/benchmarks/{bench}?phase={phase}"
    response = olga.post(f"/ui/phases/{phase}/rerun", {"next": back})
    assert response.status_code == 302 and response.headers["Location"].endswith(back)
    assert "3 submission(s)" in olga.get(response.headers["Location"]).get_data(as_text=True)
    assert all(api.get(f"/submissions/{s}").json["attempts"] == 2 for s in subs)
    elsewhere = olga.post(f"/ui/phases/{phase}/rerun", {"next": "https://evil.example/"})
    assert "evil.example" not in elsewhere.headers["Location"]


def test_deleting_a_benchmark_needs_its_owner_or_an_admin(app, admin_gui, olga, owned):
    bench = owned["bench"]
    page = olga.get(f"/ui/benchmarks/{bench}").get_data(as_text=True)
    delete_form = re.search(rf'<form[^>]*action="/ui/benchmarks/{bench}/delete"[^>]*>', page)
    assert delete_form and "data-confirm=" in delete_form.group(0)  # asks first
    alice = signed_in(app, account_token(app, "alice", "participant"))
    assert alice.post(f"/ui/benchmarks/{bench}/delete").status_code == 403
    oscar = signed_in(app, account_token(app, "oscar", "organizer"))
    refused = oscar.post(f"/ui/benchmarks/{bench}/delete")
    assert refused.status_code == 302
    assert "only the organizers" in oscar.get(refused.headers["Location"]).get_data(as_text=True)
    assert olga.post(f"/ui/benchmarks/{bench}/delete", csrf=False).status_code == 400
    with context(app).db.read() as session:
        assert session.get(Benchmark, bench) is not None
    deleted = olga.post(f"/ui/benchmarks/{bench}/delete")
    assert deleted.status_code == 302 and deleted.headers["Location"].endswith("/ui/benchmarks")
    with context(app).db.read() as session:
        assert session.get(Benchmark, bench) is None
    assert olga.get(f"/ui/benchmarks/{bench}").status_code == 404
    # an admin deletes anyone's
    other = import_via_form(olga, make_bundle(Path(context(app).settings.data_dir) / "b2"))
    assert admin_gui.post(f"/ui/benchmarks/{other}/delete").status_code == 302
    with context(app).db.read() as session:
        assert session.get(Benchmark, other) is None


# -- pages and logo ----------------------------------------------------------------------


def test_the_sanitiser_keeps_text_and_drops_what_runs():
    html = str(render_markdown(MALICIOUS))
    assert "<h1>Overview</h1>" in html and "<strong>text</strong>" in html
    assert 'href="https://example.org"' in html
    lowered = html.lower()
    for bad in ("<script", "onerror", "onclick", "onload", "<iframe", "<svg", "__page_ran"):
        assert bad not in lowered, (bad, html)
    assert not RUNNABLE_URL.search(html), html
    assert "raw link" in html  # the text stays, the link goes
    assert str(render_markdown("<style>body{display:none}</style>ok")).strip() == "ok"
    assert "<table>" in str(render_markdown("| a | b |\n|---|---|\n| 1 | 2 |\n"))
    assert str(render_markdown(None)) == ""


def test_pages_are_rendered_and_cleaned(app, admin_gui, tmp_path):
    bundle = make_bundle(tmp_path / "b", extra_files={"pages/overview.md": MALICIOUS})
    benchmark_id = import_via_form(admin_gui, bundle)
    page = admin_gui.get(f"/ui/benchmarks/{benchmark_id}").get_data(as_text=True)
    main = page.split("<main>", 1)[1]
    assert "<h1>Overview</h1>" in main and "<strong>text</strong>" in main
    assert "__page_ran" not in page and "onerror=" not in page and "onclick=" not in page
    assert not RUNNABLE_URL.search(page)
    assert "<h1>Terms</h1>" in page  # the terms, rendered too


def test_the_logo_is_an_image_that_runs_nothing(admin_gui, tmp_path):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    scripted = import_via_form(admin_gui, make_bundle(
        tmp_path / "svg", extra={"image": "logo.svg"}, extra_files={"logo.svg": svg}))
    assert admin_gui.flask.get(f"/ui/benchmarks/{scripted}/logo").status_code == 404
    assert 'id="bench-logo"' not in \
        admin_gui.get(f"/ui/benchmarks/{scripted}").get_data(as_text=True)
    benchmark_id = import_via_form(admin_gui, make_bundle(
        tmp_path / "png", extra={"image": "logo.png"}, extra_files={"logo.png": PNG}))
    logo = admin_gui.flask.get(f"/ui/benchmarks/{benchmark_id}/logo")
    assert logo.status_code == 200 and logo.mimetype == "image/png"
    assert logo.get_data() == PNG
    assert "sandbox" in logo.headers["Content-Security-Policy"]
    assert "default-src 'none'" in logo.headers["Content-Security-Policy"]
    assert logo.headers["X-Content-Type-Options"] == "nosniff"
    page = admin_gui.get(f"/ui/benchmarks/{benchmark_id}").get_data(as_text=True)
    assert f'src="/ui/benchmarks/{benchmark_id}/logo"' in page


# -- in a real browser -------------------------------------------------------------------


def _watch(page: Any) -> list[str]:
    seen: list[str] = []
    page.on("dialog", lambda dialog: (seen.append(f"dialog {dialog.message}"), dialog.dismiss()))
    page.on("console", lambda message: seen.append(f"console {message.text}"))
    return seen


def test_a_malicious_page_runs_nothing_in_the_browser(live_server, page, tmp_path):
    admin = GuiClient(live_server.app.test_client())
    admin.sign_in(live_server.token)
    bundle = make_bundle(tmp_path / "b", extra_files={"pages/overview.md": MALICIOUS})
    benchmark_id = import_via_form(admin, bundle)
    seen = _watch(page)
    sign_in(page, live_server.url, live_server.token, f"/ui/benchmarks/{benchmark_id}")
    page.wait_for_selector(".bench-markdown h1")
    page.get_by_text("raw link").click()
    page.locator(".bench-markdown div", has_text="click").last.click()
    page.wait_for_timeout(300)
    assert page.evaluate("window.__page_ran") is None
    assert not [s for s in seen if "PAGE-MARKER" in s], seen
    assert page.inner_text(".bench-markdown strong") == "text"
    screenshot(page, "bench-malicious-page")


def _phone_setup(live_server: Any, tmp_path: Path) -> dict[str, Any]:
    """A benchmark with a long title and two scored submissions, for the phone tests."""
    app = live_server.app
    admin = GuiClient(app.test_client())
    admin.sign_in(live_server.token)
    title = "A benchmark with a rather long title to see that it wraps on a phone"
    benchmark_id = import_via_form(admin, make_bundle(tmp_path / "b", title=title))
    phase = phase_of(app, benchmark_id)
    alice = signed_in(app, account_token(app, "alice", "participant"))
    subs = [submission_id_of(submit_via_form(alice, benchmark_id, phase, make_submission(
        tmp_path / f"s{value}", "result", value), name=f"attempt-number-{value}"))
        for value in (40, 44)]
    score_all(ApiClient(app.test_client(), live_server.token),
              {subs[0]: {"score": 0.81, "error": 2, "prediction": 40},
               subs[1]: {"score": 0.79, "error": 6, "prediction": 44}})
    return {"bench": benchmark_id, "phase": phase, "subs": subs}


def test_benchmark_pages_fit_a_phone(live_server, browser, tmp_path):
    made = _phone_setup(live_server, tmp_path)
    context_ = browser.new_context(viewport={"width": 390, "height": 844},
                                   device_scale_factor=2, is_mobile=True, has_touch=True)
    context_.set_default_timeout(15_000)
    tab = context_.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(tab, live_server.url, live_server.token, "/ui/benchmarks")
        pages = {
            "phone-benchmarks": "/ui/benchmarks",
            "phone-benchmark": f"/ui/benchmarks/{made['bench']}",
            "phone-leaderboard": f"/ui/phases/{made['phase']}/leaderboards/main",
            "phone-submissions": f"/ui/submissions?benchmark={made['bench']}",
            "phone-submission": f"/ui/submissions/{made['subs'][0]}",
            "phone-phase-edit": f"/ui/phases/{made['phase']}/edit",
        }
        for name, path in pages.items():
            tab.goto(f"{live_server.url}{path}")
            tab.wait_for_load_state("load")
            if name == "phone-leaderboard":
                tab.wait_for_selector("#chart-distribution-0 .chart-area[data-x-ticks] canvas")
                tab.wait_for_selector("#chart-best .chart-area[data-y-ticks] canvas")
                ticks = json.loads(tab.get_attribute("#chart-distribution-0 .chart-area",
                                                     "data-x-ticks"))
                assert ticks[0] == "0.790" and ticks[-1] == "0.810", ticks  # the scores' span
                assert len(set(ticks)) == len(ticks), ticks
                best = json.loads(tab.get_attribute("#chart-best .chart-area", "data-x-ticks"))
                assert len(best) >= 2 and all(re.fullmatch(r"\d{4}-\d\d-\d\d( \d\d:\d\d(:\d\d)?)?", t)
                                    for t in best), best
                values = [float(v) for v in json.loads(
                    tab.get_attribute("#chart-best .chart-area", "data-y-ticks"))]
                assert min(values) >= 0.7 and max(values) <= 0.9, values  # not from 0
            width = tab.evaluate("document.documentElement.scrollWidth")
            screenshot(tab, name)
            assert width <= 390, f"{path} is {width} px wide on a 390 px screen"
            # the navigation is there and reachable without scrolling sideways
            tab.click("button[data-menu]")  # the navigation folds behind its menu button
            box = tab.locator("nav.main a", has_text="Benchmarks").bounding_box()
            assert box is not None and box["x"] + box["width"] <= 390, (path, box)
        # a wide table scrolls inside its own box
        tab.goto(f"{live_server.url}/ui/benchmarks/{made['bench']}")
        inner = tab.evaluate("document.querySelector('#phases-table').parentElement.scrollWidth")
        outer = tab.evaluate("document.querySelector('#phases-table').parentElement.clientWidth")
        assert inner > outer and outer <= 390
    finally:
        context_.close()
    assert not errors, errors
