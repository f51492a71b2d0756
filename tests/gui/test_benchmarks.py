"""Benchmark pages through the Flask test client: importing a bundle from the form,
submitting, who sees which submissions, re-runs, leaderboards with the API's ranking,
CSV and charts, logs and detailed results, CSRF and escaping. A worker is played
through the worker API (tests/integration/test_api_bench.py's FakeWorker); the browser
tests run a real one."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from scitq_bench.server.bench.models import Benchmark, Run, Submission
from scitq_bench.server.queue.models import Execution
from tests.support.api import FakeWorker
from tests.support.archives import zip_of, zip_with_symlink
from tests.support.bundles import make_bundle, make_submission
from tests.support.gui import GuiClient, account_token


def upload(path_or_bytes: Path | bytes, name: str = "upload.zip") -> tuple[io.BytesIO, str]:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    return io.BytesIO(data), name


def context(app: Any) -> Any:
    return app.extensions["scitq_bench"]


def count(app: Any, model: Any) -> int:
    with context(app).db.read() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def import_via_form(client: GuiClient, bundle: Path, **fields: Any) -> int:
    response = client.post("/ui/benchmarks/import", {"bundle": upload(bundle), **fields})
    assert response.status_code == 302, response.get_data(as_text=True)
    found = re.search(r"/ui/benchmarks/(\d+)$", response.headers["Location"])
    assert found, response.headers["Location"]
    return int(found.group(1))


def signed_in(app: Any, token: str) -> GuiClient:
    client = GuiClient(app.test_client())
    client.sign_in(token)
    return client


def phase_of(app: Any, benchmark_id: int, index: int = 0) -> int:
    from scitq_bench.server.bench.models import Phase

    with context(app).db.read() as session:
        return session.scalar(select(Phase.id).where(Phase.benchmark_id == benchmark_id,
                                                     Phase.index == index))


def submit_via_form(client: GuiClient, benchmark_id: int, phase_id: int, data: bytes | Path,
                    **fields: Any) -> Any:
    return client.post(f"/ui/benchmarks/{benchmark_id}/submit",
                       {"phase": str(phase_id), "kind": "result", "file": upload(data),
                        **fields})


def submission_id_of(response: Any) -> int:
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(re.search(r"/ui/submissions/(\d+)$", response.headers["Location"]).group(1))


def score_all(api: Any, values: dict[int, dict[str, float]],
              detailed: dict[int, str] | None = None) -> None:
    """Finish the scoring task of each submission with its scores."""
    worker = FakeWorker(api)
    claimed = {c["task_id"]: c for c in worker.claim()}
    for submission_id, scores in values.items():
        sub = api.get(f"/submissions/{submission_id}").json
        run = sub["attempts_detail"][-1]["runs"][0]
        files = []
        if detailed and submission_id in detailed:
            files = ["detailed_results.html"]
            with context(api.flask.application).db.read() as session:
                run_id = session.scalar(select(Run.id).where(
                    Run.scoring_task_id == run["scoring_task"]["id"]))
            context(api.flask.application).files.write(
                f"runs/{run_id}/scoring/detailed_results.html",
                io.BytesIO(detailed[submission_id].encode()))
        worker.finish(claimed[run["scoring_task"]["id"]], scores=scores, output_files=files)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "bundle", title="Guess the number")


@pytest.fixture
def bench_id(admin_gui: GuiClient, bundle: Path) -> int:
    return import_via_form(admin_gui, bundle)


# -- import ------------------------------------------------------------------------------


def test_import_from_the_form_shows_the_benchmark(admin_gui, bundle, app):
    benchmark_id = import_via_form(admin_gui, bundle, key="guess", visibility="private")
    page = admin_gui.get(f"/ui/benchmarks/{benchmark_id}").get_data(as_text=True)
    assert "Guess the number" in page and ">guess<" in page
    assert "Phase 0" in page and "Task 0" in page and "Guess 42" in page
    assert "Be nice." in page  # terms, as text
    assert 'id="boards-live"' in page and "Results" in page
    with context(app).db.read() as session:
        found = session.get(Benchmark, benchmark_id)
        assert (found.key, found.visibility) == ("guess", "private")
    listed = admin_gui.get("/ui/benchmarks").get_data(as_text=True)
    assert f"/ui/benchmarks/{benchmark_id}" in listed


def test_a_bad_bundle_is_refused_next_to_the_file_field(admin_gui, tmp_path, app):
    bad = make_bundle(tmp_path / "bad", raw_yaml="version: 2\ntitle: [unclosed\n")
    response = admin_gui.post("/ui/benchmarks/import", {"bundle": upload(bad)})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    error = re.search(r'data-error-for="bundle">([^<]+)<', page)
    assert error and "competition.yaml" in error.group(1), page
    not_a_zip = admin_gui.post("/ui/benchmarks/import", {"bundle": upload(b"hello")})
    assert not_a_zip.status_code == 400
    assert 'data-error-for="bundle"' in not_a_zip.get_data(as_text=True)
    nothing = admin_gui.post("/ui/benchmarks/import", {})
    assert 'data-error-for="bundle"' in nothing.get_data(as_text=True)
    assert count(app, Benchmark) == 0


def test_a_taken_key_is_refused_next_to_the_key_field(admin_gui, bundle):
    import_via_form(admin_gui, bundle, key="same")
    response = admin_gui.post("/ui/benchmarks/import", {"bundle": upload(bundle), "key": "same"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert re.search(r'data-error-for="key">[^<]*exists already', page)
    assert 'value="same"' in page  # the form keeps what was typed


def test_participants_may_not_import_and_run_on_host_is_for_admins(app, bundle):
    alice = signed_in(app, account_token(app, "alice", "participant"))
    assert 'id="import-form"' not in alice.get("/ui/benchmarks").get_data(as_text=True)
    response = alice.post("/ui/benchmarks/import", {"bundle": upload(bundle)})
    assert response.status_code == 403
    assert "organizer or admin role" in response.get_data(as_text=True)
    olga = signed_in(app, account_token(app, "olga", "organizer"))
    response = olga.post("/ui/benchmarks/import", {"bundle": upload(bundle), "run_on_host": "1"})
    assert response.status_code == 400
    assert re.search(r'data-error-for="run_on_host">only an admin',
                     response.get_data(as_text=True))
    assert count(app, Benchmark) == 0


def test_import_without_the_csrf_token_changes_nothing(admin_gui, bundle, app):
    response = admin_gui.post("/ui/benchmarks/import", {"bundle": upload(bundle)}, csrf=False)
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert count(app, Benchmark) == 0


# -- submitting ------------------------------------------------------------------------


def test_submit_from_the_form_goes_to_the_submission(app, bench_id, tmp_path):
    alice = signed_in(app, account_token(app, "alice", "participant"))
    phase = phase_of(app, bench_id)
    form = alice.get(f"/ui/benchmarks/{bench_id}/submit").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in form and "Phase 0 (open)" in form
    response = submit_via_form(alice, bench_id, phase, make_submission(tmp_path, "result", 40),
                               name="first try")
    submission_id = submission_id_of(response)
    page = alice.get(f"/ui/submissions/{submission_id}").get_data(as_text=True)
    assert "first try" in page and "running" in page
    assert 'data-log-tail="/ui/submissions/' in page  # the scoring step's log, live
    with context(app).db.read() as session:
        found = session.get(Submission, submission_id)
        assert (found.kind, found.name, found.phase_id) == ("result", "first try", phase)


def test_refusals_are_shown_next_to_the_field(app, admin_gui, tmp_path):
    admin = admin_gui
    bundle = make_bundle(tmp_path / "b", phases=2, phase_extra=[{}, {"max_submissions": 1}])
    benchmark_id = import_via_form(admin, bundle)
    closed, open_ = phase_of(app, benchmark_id, 0), phase_of(app, benchmark_id, 1)
    alice = signed_in(app, account_token(app, "alice", "participant"))
    good = make_submission(tmp_path / "s", "result", 41)

    def refusal(response: Any, field: str) -> str:
        assert response.status_code == 400, response.status_code
        found = re.search(rf'data-error-for="{field}">([^<]+)<', response.get_data(as_text=True))
        assert found, response.get_data(as_text=True)
        return found.group(1)

    assert "is closed" in refusal(submit_via_form(alice, benchmark_id, closed, good), "phase")
    assert "not a zip" in refusal(submit_via_form(alice, benchmark_id, open_, b"plain"), "file")
    assert "accepts only result" in refusal(
        submit_via_form(alice, benchmark_id, open_, good, kind="code"), "kind")
    missing = alice.post(f"/ui/benchmarks/{benchmark_id}/submit",
                         {"phase": str(open_), "kind": "result"})
    assert "needs its zip" in refusal(missing, "file")
    submission_id_of(submit_via_form(alice, benchmark_id, open_, good))
    assert "quota reached" in refusal(submit_via_form(alice, benchmark_id, open_, good), "phase")
    assert count(app, Submission) == 1


def test_a_hostile_zip_is_refused_next_to_the_file_field(app, admin_gui, tmp_path):
    benchmark_id = import_via_form(admin_gui, make_bundle(tmp_path / "b"))
    alice = signed_in(app, account_token(app, "alice", "participant"))
    phase = phase_of(app, benchmark_id)
    for data, message in (
            (zip_of({"../evil.txt": b"1"}), "entry &#39;../evil.txt&#39; goes outside"),
            (zip_with_symlink("link", "/etc/passwd"), "entry &#39;link&#39; is a symbolic link")):
        response = submit_via_form(alice, benchmark_id, phase, data)
        assert response.status_code == 400
        page = response.get_data(as_text=True)
        assert re.search(rf'data-error-for="file">submission: {re.escape(message)}', page), page
    assert count(app, Submission) == 0


def test_a_bad_image_reference_is_refused_next_to_the_image_field(app, admin_gui, tmp_path):
    benchmark_id = import_via_form(admin_gui, make_bundle(tmp_path / "b", kind="code"))
    alice = signed_in(app, account_token(app, "alice", "participant"))
    response = alice.post(f"/ui/benchmarks/{benchmark_id}/submit",
                          {"phase": str(phase_of(app, benchmark_id)), "kind": "image",
                           "image": "my image"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert re.search(r'data-error-for="image">image: image reference [^<]*contains whitespace',
                     page), page
    assert 'data-error-for="file"' not in page
    assert count(app, Submission) == 0


# -- who sees what ----------------------------------------------------------------------


def test_participants_see_only_their_own_submissions(app, api, bench_id, tmp_path):
    phase = phase_of(app, bench_id)
    alice = signed_in(app, account_token(app, "alice", "participant"))
    bob = signed_in(app, account_token(app, "bob", "participant"))
    mine = submission_id_of(submit_via_form(alice, bench_id, phase,
                                            make_submission(tmp_path / "a", "result", 40)))
    theirs = submission_id_of(submit_via_form(bob, bench_id, phase,
                                              make_submission(tmp_path / "b", "result", 44)))
    listed = alice.get("/ui/submissions").get_data(as_text=True)
    assert f'data-submission="{mine}"' in listed and f'data-submission="{theirs}"' not in listed
    fragment = alice.get(f"/ui/submissions?benchmark={bench_id}&fragment=1")
    assert "<html" not in fragment.get_data(as_text=True)
    assert f'data-submission="{theirs}"' not in fragment.get_data(as_text=True)
    assert alice.get(f"/ui/submissions/{theirs}").status_code == 404
    assert alice.get(f"/ui/submissions/{theirs}/log?stream=stdout").status_code == 404
    # the admin (who imported it) sees both
    admin_list = api.get("/submissions").json
    assert {s["id"] for s in admin_list} == {mine, theirs}


def test_participants_may_not_rerun_and_other_organizers_see_nothing(app, api, tmp_path):
    olga_token = account_token(app, "olga", "organizer")
    olga = signed_in(app, olga_token)
    benchmark_id = import_via_form(olga, make_bundle(tmp_path / "b"))
    phase = phase_of(app, benchmark_id)
    alice = signed_in(app, account_token(app, "alice", "participant"))
    sub = submission_id_of(submit_via_form(alice, benchmark_id, phase,
                                           make_submission(tmp_path / "a", "result", 40)))
    score_all(api, {sub: {"score": 98, "error": 2, "prediction": 40}})
    assert alice.post(f"/ui/submissions/{sub}/rerun").status_code == 403
    assert f'action="/ui/submissions/{sub}/rerun"' not in \
        alice.get(f"/ui/submissions/{sub}").get_data(as_text=True)
    oscar = signed_in(app, account_token(app, "oscar", "organizer"))
    assert oscar.get(f"/ui/submissions/{sub}").status_code == 404
    refused = oscar.post(f"/ui/submissions/{sub}/rerun")
    assert refused.status_code == 302
    assert "not found" in oscar.get(refused.headers["Location"]).get_data(as_text=True)
    assert f'data-submission="{sub}"' not in oscar.get("/ui/submissions").get_data(as_text=True)
    assert api.get(f"/submissions/{sub}").json["attempts"] == 1
    # its own organizer may
    page = olga.get(f"/ui/submissions/{sub}").get_data(as_text=True)
    assert f'action="/ui/submissions/{sub}/rerun"' in page
    response = olga.post(f"/ui/submissions/{sub}/rerun")
    assert response.status_code == 302
    assert "attempt 2" in olga.get(response.headers["Location"]).get_data(as_text=True)
    assert api.get(f"/submissions/{sub}").json["attempts"] == 2
    assert olga.post(f"/ui/submissions/{sub}/rerun", csrf=False).status_code == 400


# -- leaderboards ------------------------------------------------------------------------


@pytest.fixture
def scored(app, api, bench_id, tmp_path) -> dict[str, Any]:
    """Two participants scored: alice 98 (error 2), bob 90 (error 10)."""
    phase = phase_of(app, bench_id)
    tokens = {name: account_token(app, name, "participant") for name in ("alice", "bob")}
    clients = {name: signed_in(app, token) for name, token in tokens.items()}
    subs = {name: submission_id_of(submit_via_form(
        clients[name], bench_id, phase, make_submission(tmp_path / name, "result", value)))
        for name, value in (("alice", 40), ("bob", 52))}
    score_all(api, {subs["alice"]: {"score": 98, "error": 2, "prediction": 40},
                    subs["bob"]: {"score": 90, "error": 10, "prediction": 52}},
              detailed={subs["alice"]: "<script>parent.document.title='owned'</script>ok"})
    return {"phase": phase, "subs": subs, "clients": clients, "tokens": tokens}


def test_leaderboard_ranks_as_the_api_and_hides_hidden_columns(app, api, admin_gui, scored):
    phase, subs = scored["phase"], scored["subs"]
    alice = scored["clients"]["alice"]
    page = alice.get(f"/ui/phases/{phase}/leaderboards/main").get_data(as_text=True)
    table = page[page.index("<table"):page.index("</table>")]
    assert table.index(f'data-submission="{subs["alice"]}"') < \
        table.index(f'data-submission="{subs["bob"]}"')
    assert "data-sortable" in table and 'data-sort-value="98.0"' in table
    assert "Prediction" not in table  # a hidden column
    assert f'href="/ui/submissions/{subs["alice"]}"' in table  # her own, linked
    assert f'href="/ui/submissions/{subs["bob"]}"' not in table
    organizer = admin_gui.get(f"/ui/phases/{phase}/leaderboards/main").get_data(as_text=True)
    assert "Prediction" in organizer
    api_rows = api.get(f"/phases/{phase}/leaderboards/main",
                       token=scored["tokens"]["alice"]).json["rows"]
    assert [r["submission_id"] for r in api_rows] == [subs["alice"], subs["bob"]]
    fragment = alice.get(f"/ui/phases/{phase}/leaderboards/main?fragment=1")
    assert "<html" not in fragment.get_data(as_text=True)
    bench_page = alice.get(f"/ui/benchmarks/{api_rows and _bench_of(app, phase)}")
    assert f'data-submission="{subs["bob"]}"' in bench_page.get_data(as_text=True)


def _bench_of(app: Any, phase_id: int) -> int:
    from scitq_bench.server.bench.models import Phase

    with context(app).db.read() as session:
        return session.get(Phase, phase_id).benchmark_id


def test_csv_export_is_the_api_csv(app, api, scored):
    phase = scored["phase"]
    alice = scored["clients"]["alice"]
    response = alice.get(f"/ui/phases/{phase}/leaderboards/main/csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    from_api = api.get(f"/phases/{phase}/leaderboards/main/csv", token=scored["tokens"]["alice"])
    assert response.get_data() == from_api.get_data()
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0].startswith("rank,owner,submission") and "Prediction" not in lines[0]
    assert lines[1].startswith("1,alice,")


def test_charts_follow_the_primary_column(app, scored):
    phase = scored["phase"]
    alice = scored["clients"]["alice"]
    best = alice.get(f"/ui/phases/{phase}/leaderboards/main/best.json").json
    assert best["kind"] == "line" and best["x"] == "time"
    (series,) = best["series"]
    assert [p[1] for p in series["points"]] == [98.0, 98.0]  # alice first, bob never better
    histogram = alice.get(f"/ui/phases/{phase}/leaderboards/main/distribution.json").json
    assert histogram["kind"] == "bar"
    bars = histogram["series"][0]["points"]
    assert len(bars) == 10 and sum(b[1] for b in bars) == 2
    assert bars[0][1] == 1 and bars[-1][1] == 1 and bars[0][2] == "90.00–90.80"
    assert alice.get(f"/ui/phases/{phase}/leaderboards/main/distribution.json?task=9") \
        .status_code == 404


def test_hidden_leaderboards_are_not_found_for_participants(app, admin_gui, tmp_path):
    bundle = make_bundle(tmp_path / "b", leaderboard_extra={"hidden": True})
    benchmark_id = import_via_form(admin_gui, bundle)
    phase = phase_of(app, benchmark_id)
    alice = signed_in(app, account_token(app, "alice", "participant"))
    assert alice.get(f"/ui/phases/{phase}/leaderboards/main").status_code == 404
    assert alice.get(f"/ui/phases/{phase}/leaderboards/main/csv").status_code == 404
    assert alice.get(f"/ui/phases/{phase}/leaderboards/main/best.json").status_code == 404
    assert 'id="board-main"' not in alice.get(f"/ui/benchmarks/{benchmark_id}").get_data(
        as_text=True)
    assert admin_gui.get(f"/ui/phases/{phase}/leaderboards/main").status_code == 200


# -- a submission's logs, outputs and detailed results ------------------------------------


def test_log_tail_answers_text_offset_and_done(app, api, scored):
    alice, sub = scored["clients"]["alice"], scored["subs"]["alice"]
    detail = api.get(f"/submissions/{sub}").json
    task_id = detail["attempts_detail"][0]["runs"][0]["scoring_task"]["id"]
    with context(app).db.read() as session:
        execution_id = session.scalar(select(Execution.id).where(Execution.task_id == task_id))
    text = "scored ✓ fine\n".encode()
    context(app).logs.append(execution_id, "stdout", 0, io.BytesIO(text))
    url = f"/ui/submissions/{sub}/log?stream=stdout"
    cut = text.index("✓".encode()) + 1  # inside the multi-byte character
    first = alice.get(f"{url}&offset=0").json
    assert first == {"text": "scored ✓ fine\n", "offset": len(text), "done": True,
                     "execution": execution_id, "reset": False}
    partial = alice.get(f"{url}&offset={cut}").json
    assert partial["offset"] == len(text)
    end = alice.get(f"{url}&offset={len(text)}&seen={execution_id}").json
    assert (end["text"], end["offset"], end["done"], end["reset"]) == ("", len(text), True, False)
    # a page that was reading another run of this step starts this one from its start
    moved = alice.get(f"{url}&offset=5&seen={execution_id + 1000}").json
    assert (moved["text"], moved["reset"]) == ("scored ✓ fine\n", True)


def test_detailed_results_only_in_a_sandbox(app, scored):
    alice, sub = scored["clients"]["alice"], scored["subs"]["alice"]
    page = alice.get(f"/ui/submissions/{sub}").get_data(as_text=True)
    frame = re.search(r"<iframe[^>]*>", page)
    assert frame and 'sandbox=""' in frame.group(0)
    assert "parent.document" not in page  # the HTML itself is never inlined
    served = alice.get(f"/ui/submissions/{sub}/detailed_results?run=0")
    assert served.status_code == 200 and served.mimetype == "text/html"
    assert served.headers["Content-Security-Policy"].startswith("sandbox")
    assert "default-src 'none'" in served.headers["Content-Security-Policy"]
    bob_sub = scored["subs"]["bob"]
    assert alice.get(f"/ui/submissions/{bob_sub}/detailed_results").status_code == 404


def test_outputs_are_listed_and_downloaded(app, scored):
    alice, sub = scored["clients"]["alice"], scored["subs"]["alice"]
    page = alice.get(f"/ui/submissions/{sub}").get_data(as_text=True)
    link = f"/ui/submissions/{sub}/outputs/detailed_results.html?attempt=1&amp;run=0&amp;step=scoring"
    assert link in page
    download = alice.get(link.replace("&amp;", "&"))
    assert download.status_code == 200 and "attachment" in download.headers["Content-Disposition"]
    assert download.mimetype == "application/octet-stream"


# -- escaping ------------------------------------------------------------------------------


def test_titles_and_names_with_markup_are_text(app, admin_gui, tmp_path):
    evil = "<script>alert(1)</script>"
    benchmark_id = import_via_form(admin_gui, make_bundle(tmp_path / "b", title=f"Bad {evil}"))
    phase = phase_of(app, benchmark_id)
    for path in ("/ui/benchmarks", f"/ui/benchmarks/{benchmark_id}"):
        page = admin_gui.get(path).get_data(as_text=True)
        assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    sub = submission_id_of(submit_via_form(admin_gui, benchmark_id, phase,
                                           make_submission(tmp_path / "s", "result", 1),
                                           name=evil))
    page = admin_gui.get(f"/ui/submissions/{sub}").get_data(as_text=True)
    assert evil not in page and "&lt;script&gt;" in page


def test_pages_from_a_bundle_are_rendered_and_cleaned(app, admin_gui, tmp_path):
    html = "<h1>Hi</h1><script>alert('page')</script>"
    bundle = make_bundle(tmp_path / "b", extra_files={"pages/overview.md": html})
    benchmark_id = import_via_form(admin_gui, bundle)
    page = admin_gui.get(f"/ui/benchmarks/{benchmark_id}").get_data(as_text=True)
    assert "<h1>Hi</h1>" in page  # Markdown's HTML kept where it is harmless
    assert "alert('page')" not in page  # a script goes with its content


def test_owners_choose_what_an_add_board_shows(app, api, tmp_path):
    admin = signed_in(app, account_token(app, "olga", "organizer"))
    bundle = make_bundle(tmp_path / "b", leaderboard_extra={"submission_rule": "Add_And_Delete"})
    benchmark_id = import_via_form(admin, bundle)
    phase = phase_of(app, benchmark_id)
    alice = signed_in(app, account_token(app, "alice", "participant"))
    first, second = (submission_id_of(submit_via_form(
        alice, benchmark_id, phase, make_submission(tmp_path / str(v), "result", v)))
        for v in (41, 42))
    score_all(api, {first: {"score": 99, "error": 1, "prediction": 41},
                    second: {"score": 100, "error": 0, "prediction": 42}})
    board = f"/ui/phases/{phase}/leaderboards/main"
    assert "Nobody on this leaderboard yet" in alice.get(board).get_data(as_text=True)
    page = alice.get(f"/ui/submissions/{first}").get_data(as_text=True)
    assert "Put on the leaderboard" in page
    assert alice.post(f"/ui/submissions/{first}/leaderboard", {"on": "1"}).status_code == 302
    assert f'data-submission="{first}"' in alice.get(board).get_data(as_text=True)
    refused = alice.post(f"/ui/submissions/{second}/leaderboard", {"on": "1"})
    assert "remove submission" in alice.get(refused.headers["Location"]).get_data(as_text=True)
    page = alice.get(f"/ui/submissions/{first}").get_data(as_text=True)
    assert 'data-confirm="Take submission' in page
    alice.post(f"/ui/submissions/{first}/leaderboard", {"on": "0"})
    assert f'data-submission="{first}"' not in alice.get(board).get_data(as_text=True)


def test_a_phase_hiding_output_shows_no_logs_to_participants(app, admin_gui, tmp_path):
    bundle = make_bundle(tmp_path / "b", phase_extra={"hide_output": True})
    benchmark_id = import_via_form(admin_gui, bundle)
    phase = phase_of(app, benchmark_id)
    alice = signed_in(app, account_token(app, "alice", "participant"))
    sub = submission_id_of(submit_via_form(alice, benchmark_id, phase,
                                           make_submission(tmp_path / "s", "result", 40)))
    page = alice.get(f"/ui/submissions/{sub}").get_data(as_text=True)
    assert "hides the output" in page and "data-log-tail" not in page
    assert alice.get(f"/ui/submissions/{sub}/log?stream=stdout").status_code == 403
    assert "data-log-tail" in admin_gui.get(f"/ui/submissions/{sub}").get_data(as_text=True)


def test_owners_cancel_their_running_submission(app, bench_id, tmp_path):
    alice = signed_in(app, account_token(app, "alice", "participant"))
    sub = submission_id_of(submit_via_form(alice, bench_id, phase_of(app, bench_id),
                                           make_submission(tmp_path / "s", "result", 40)))
    page = alice.get(f"/ui/submissions/{sub}").get_data(as_text=True)
    assert f'action="/ui/submissions/{sub}/cancel"' in page and 'data-confirm="Cancel' in page
    # queued, and why: no worker is up to run its steps
    assert '<dd id="submission-waiting">queued: no worker is up</dd>' in page
    assert alice.post(f"/ui/submissions/{sub}/cancel", csrf=False).status_code == 400
    response = alice.post(f"/ui/submissions/{sub}/cancel")
    assert response.status_code == 302
    with context(app).db.read() as session:
        assert session.get(Submission, sub).status == "cancelled"
