"""Loading and checking Codabench competition bundles."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from scitq_bench.bench.archives import ArchiveError, ArchiveLimits
from scitq_bench.bench.bundle import (
    BundleError,
    BundleSpec,
    Program,
    load_bundle,
)
from scitq_bench.exceptions import InvalidInput
from tests.support.archives import central_entry, lie_about_size
from tests.support.bundles import (
    INGESTION_COMMAND,
    SCORING_COMMAND,
    make_bundle,
    make_submission,
    reference,
    write_zip,
    zip_bytes,
)


def load(tmp_path: Path, source: Path, limits: ArchiveLimits = ArchiveLimits()) -> BundleSpec:
    staging = tmp_path / "staging"
    staging.mkdir(parents=True)
    return load_bundle(source, staging, limits)


def refused(tmp_path: Path, source: Path, limits: ArchiveLimits = ArchiveLimits()) -> str:
    with pytest.raises((BundleError, ArchiveError)) as caught:
        load(tmp_path, source, limits)
    return str(caught.value)


def names(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as zf:
        return sorted(zf.namelist())


def read(archive: Path, name: str) -> str:
    with zipfile.ZipFile(archive) as zf:
        return zf.read(name).decode()


def under(path: Path, folder: Path) -> bool:
    return folder.resolve() in path.resolve().parents


# -- valid bundles -------------------------------------------------------------------------


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "folder"])
def test_a_bundle_loads_with_its_defaults(tmp_path, zipped):
    spec = load(tmp_path, make_bundle(tmp_path / "src", zipped=zipped))
    staging = tmp_path / "staging"
    assert spec.staging == staging
    assert spec.title == "Test competition"
    assert spec.description == "A competition written by the tests"
    assert spec.docker_image is None
    assert spec.terms == "# Terms\n\nBe nice.\n"
    assert [(p.title, p.content) for p in spec.pages] == [
        ("Overview", "# Overview\n\nGuess the number.\n")]
    assert spec.logo is not None and under(spec.logo, staging)
    assert spec.logo.read_bytes().startswith(b"\x89PNG")
    assert not (spec.enable_detailed_results or spec.make_programs_available
                or spec.make_input_data_available)

    (task,) = spec.tasks
    assert (task.index, task.name, task.description) == (0, "Task 0", "Guess 42")
    assert task.scoring_program.command == SCORING_COMMAND
    assert names(task.scoring_program.archive) == ["metadata.yaml", "score.sh"]
    assert task.ingestion_program is None and task.input_data is None
    assert names(task.reference_data) == ["answer.txt"]
    assert read(task.reference_data, "answer.txt") == "42\n"
    assert not task.ingestion_only_during_scoring
    for path in (task.scoring_program.archive, task.reference_data):
        assert under(path, staging)

    (phase,) = spec.phases
    assert (phase.index, phase.name, phase.description) == (0, "Phase 0", "Phase number 0")
    assert phase.start == datetime(2020, 1, 1) and phase.end is None
    assert phase.tasks == (0,)
    assert phase.execution_time_limit == 600
    assert phase.max_submissions is None and phase.max_submissions_per_day is None
    assert phase.accepts_only_result_submissions
    assert not (phase.hide_output or phase.hide_prediction_output or phase.hide_score_output)
    assert phase.starting_kit is None and phase.public_data is None

    (board,) = spec.leaderboards
    assert (board.key, board.title, board.index, board.hidden) == ("main", "Results", 0, False)
    assert board.submission_rule == "Force_Last"
    assert board.primary_index == 0
    score, error, prediction = board.columns
    assert (score.key, score.title, score.index, score.sorting, score.precision) == (
        "score", "Score", 0, "desc", 2)
    assert (error.key, error.sorting, error.precision) == ("error", "asc", 3)
    assert score.computation is None and score.computation_indexes == ()
    assert not score.hidden and prediction.hidden
    assert spec.solutions == ()


def test_the_source_is_left_alone_and_nothing_is_written_outside_staging(tmp_path):
    source = make_bundle(tmp_path / "src", zipped=False)
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    spec = load(tmp_path, source)
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "staging"]
    assert under(spec.tasks[0].scoring_program.archive, tmp_path / "staging")


def test_a_bundle_inside_a_single_top_folder_loads(tmp_path):
    source = make_bundle(tmp_path / "src", top_folder="my-competition",
                         extra_files={"__MACOSX/._x": b"junk"})
    spec = load(tmp_path, source)
    assert spec.tasks[0].scoring_program.command == SCORING_COMMAND


def test_programs_and_data_as_folders(tmp_path):
    source = make_bundle(tmp_path / "src", programs_zipped=False, data_zipped=False,
                         kind="code")
    spec = load(tmp_path, source)
    (task,) = spec.tasks
    assert names(task.scoring_program.archive) == ["metadata.yaml", "score.sh"]
    assert names(task.ingestion_program.archive) == ["ingest.sh", "metadata.yaml"]
    assert task.ingestion_program.command == INGESTION_COMMAND
    assert names(task.input_data) == ["input.txt"]
    assert names(task.reference_data) == ["answer.txt"]
    with zipfile.ZipFile(task.scoring_program.archive) as zf:
        assert zf.getinfo("score.sh").external_attr >> 16 & 0o111  # still executable


@pytest.mark.parametrize("metadata_name", ["metadata.yaml", "metadata"])
@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "folder"])
def test_metadata_or_metadata_yaml(tmp_path, metadata_name, zipped):
    source = make_bundle(tmp_path / "src", metadata_name=metadata_name, programs_zipped=zipped,
                         scoring_command="sh $program/score.sh $input $output")
    (task,) = load(tmp_path, source).tasks
    assert task.scoring_program.command == "sh $program/score.sh $input $output"
    assert metadata_name in names(task.scoring_program.archive)


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "folder"])
def test_a_program_inside_a_single_folder_is_flattened(tmp_path, zipped):
    source = make_bundle(tmp_path / "src", program_folder="scoring", programs_zipped=zipped,
                         kind="code")
    (task,) = load(tmp_path, source).tasks
    assert names(task.scoring_program.archive) == ["metadata.yaml", "score.sh"]
    assert names(task.ingestion_program.archive) == ["ingest.sh", "metadata.yaml"]


def test_data_zipped_inside_a_single_folder_is_flattened_and_junk_dropped(tmp_path):
    data = zip_bytes({"ref/answer.txt": "42\n", "ref/sub/more.txt": "x",
                      "__MACOSX/ref/._answer.txt": "junk", "ref/.DS_Store": "junk"})
    source = make_bundle(tmp_path / "src", extra_files={"task0/reference_data.zip": data})
    (task,) = load(tmp_path, source).tasks
    assert names(task.reference_data) == ["answer.txt", "sub/more.txt"]


def test_data_with_several_top_entries_is_kept_as_is(tmp_path):
    data = zip_bytes({"ref/answer.txt": "42\n", "README": "x"})
    source = make_bundle(tmp_path / "src", extra_files={"task0/reference_data.zip": data})
    (task,) = load(tmp_path, source).tasks
    assert names(task.reference_data) == ["README", "ref/answer.txt"]


def test_a_data_folder_is_zipped_as_it_is(tmp_path):
    source = make_bundle(tmp_path / "src", zipped=False, extra_files={
        "reference/ref/answer.txt": "42\n"}, task_extra={"reference_data": "reference"})
    (task,) = load(tmp_path, source).tasks
    assert names(task.reference_data) == ["ref/answer.txt"]


def test_normalized_zips_are_deterministic(tmp_path):
    first = load(tmp_path / "a", make_bundle(tmp_path / "a" / "src"))
    second = load(tmp_path / "b", make_bundle(tmp_path / "b" / "src", zipped=False,
                                              programs_zipped=False))
    assert (first.tasks[0].scoring_program.archive.read_bytes()
            == second.tasks[0].scoring_program.archive.read_bytes())


def test_multi_task_phases_share_one_normalized_program(tmp_path):
    source = make_bundle(tmp_path / "src", tasks=3, kind="code", phases=2,
                         phase_extra=[{"tasks": [0, 1]}, {"tasks": [2, 0]}])
    spec = load(tmp_path, source)
    assert [t.index for t in spec.tasks] == [0, 1, 2]
    assert [p.tasks for p in spec.phases] == [(0, 1), (2, 0)]
    assert len({t.scoring_program.archive for t in spec.tasks}) == 1
    assert len({t.ingestion_program.archive for t in spec.tasks}) == 1
    assert [read(t.reference_data, "answer.txt") for t in spec.tasks] == [
        f"{reference(i)}\n" for i in range(3)]
    assert [read(t.input_data, "input.txt") for t in spec.tasks] == [
        f"{reference(i)}\n" for i in range(3)]


def test_tasks_in_no_phase_are_allowed(tmp_path):
    spec = load(tmp_path, make_bundle(tmp_path / "src", tasks=2, phase_extra={"tasks": [1]}))
    assert [t.index for t in spec.tasks] == [0, 1]
    assert spec.phases[0].tasks == (1,)


def test_phases_are_sorted_by_index_and_reindexed(tmp_path):
    def reverse(doc):
        doc["phases"] = [dict(p, index=10 * (p["index"] + 1)) for p in reversed(doc["phases"])]

    spec = load(tmp_path, make_bundle(tmp_path / "src", phases=3, edit=reverse))
    assert [(p.index, p.name) for p in spec.phases] == [
        (0, "Phase 0"), (1, "Phase 1"), (2, "Phase 2")]
    assert [p.end for p in spec.phases] == [datetime(2021, 1, 1), datetime(2022, 1, 1), None]


def test_phases_without_index_keep_their_order(tmp_path):
    def drop_indexes(doc):
        for phase in doc["phases"]:
            del phase["index"]

    spec = load(tmp_path, make_bundle(tmp_path / "src", phases=2, edit=drop_indexes))
    assert [p.name for p in spec.phases] == ["Phase 0", "Phase 1"]


def test_phase_options(tmp_path):
    starting_kit = zip_bytes({"kit/README.md": "hello"})
    source = make_bundle(tmp_path / "src", extra_files={
        "kit.zip": starting_kit, "public/data.csv": "a,b\n"}, phase_extra={
        "max_submissions": 5, "max_submissions_per_day": 0, "execution_time_limit": 1200,
        "hide_output": True, "hide_prediction_output": "true", "hide_score_output": True,
        "accepts_only_result_submissions": False, "starting_kit": "kit.zip",
        "public_data": "public/", "auto_migrate_to_this_phase": True})
    (phase,) = load(tmp_path, source).phases
    assert phase.max_submissions == 5
    assert phase.max_submissions_per_day is None  # 0 means no limit, as in Codabench
    assert phase.execution_time_limit == 1200
    assert phase.hide_output and phase.hide_prediction_output and phase.hide_score_output
    assert not phase.accepts_only_result_submissions
    assert names(phase.starting_kit) == ["README.md"]
    assert names(phase.public_data) == ["data.csv"]


def test_competition_options_and_solutions(tmp_path):
    source = make_bundle(tmp_path / "src", tasks=2, solution=True, docker_image="busybox:1.36",
                         extra={"enable_detailed_results": True, "make_programs_available": True,
                                "make_input_data_available": True, "image": None,
                                "terms": None, "pages": None, "queue": "ignored"})
    spec = load(tmp_path, source)
    assert spec.docker_image == "busybox:1.36"
    assert spec.enable_detailed_results and spec.make_programs_available
    assert spec.make_input_data_available
    assert spec.logo is None and spec.terms is None and spec.pages == ()
    (solution,) = spec.solutions
    assert (solution.index, solution.tasks) == (0, (0, 1))
    assert names(solution.path) == ["prediction.txt"]


def test_ingestion_only_during_scoring(tmp_path):
    source = make_bundle(tmp_path / "src", kind="code",
                         task_extra={"ingestion_only_during_scoring": True})
    assert load(tmp_path, source).tasks[0].ingestion_only_during_scoring


@pytest.mark.parametrize("key", ["leaderboards", "leaderboard"])
def test_leaderboards_with_computed_columns(tmp_path, key):
    columns = [
        {"title": "Accuracy 1", "key": "accuracy_1", "index": 0},
        {"title": "Accuracy 2", "key": "accuracy_2", "index": 1, "precision": 3},
        {"title": "Max", "key": "max_accuracy", "index": 2, "computation": "max",
         "computation_indexes": [0, 1]},
        {"title": "Duration", "key": "duration", "index": 3, "sorting": "asc", "hidden": True},
        {"title": "Sum", "key": "sum", "index": 4, "computation": "sum",
         "computation_indexes": [2, 3]},
    ]
    source = make_bundle(tmp_path / "src", columns=columns, leaderboard_key=key,
                         leaderboard_extra={"submission_rule": "Force_Best", "hidden": True,
                                            "primary_index": 2})
    (board,) = load(tmp_path, source).leaderboards
    assert board.submission_rule == "Force_Best" and board.hidden
    assert board.primary_index == 2
    assert [c.key for c in board.columns] == [
        "accuracy_1", "accuracy_2", "max_accuracy", "duration", "sum"]
    assert board.columns[2].computation == "max"
    assert board.columns[2].computation_indexes == (0, 1)
    assert board.columns[4].computation_indexes == (2, 3)
    assert board.columns[3].hidden and board.columns[3].sorting == "asc"
    assert board.columns[1].precision == 3


def test_columns_sorted_by_index_and_primary_is_the_lowest(tmp_path):
    columns = [{"key": "b", "index": 7}, {"key": "a", "index": 3, "title": "A"}]

    def two_boards(doc):
        second = dict(doc["leaderboards"][0], key="second", title="Second", index=0)
        doc["leaderboards"] = [dict(doc["leaderboards"][0], index=1), second]

    spec = load(tmp_path, make_bundle(tmp_path / "src", columns=columns, edit=two_boards))
    assert [b.key for b in spec.leaderboards] == ["second", "main"]
    board = spec.leaderboards[0]
    assert [(c.key, c.title, c.index) for c in board.columns] == [("a", "A", 3), ("b", "b", 7)]
    assert board.primary_index == 3


@pytest.mark.parametrize("value, expected", [
    ("2024-02-15", datetime(2024, 2, 15)),
    ("2024-02-15 13:30:00", datetime(2024, 2, 15, 13, 30)),
    ("2024-02-15T13:30:00", datetime(2024, 2, 15, 13, 30)),
    ("2024-02-15T13:30:00Z", datetime(2024, 2, 15, 13, 30)),
    ("2024-02-15T15:30:00+02:00", datetime(2024, 2, 15, 13, 30)),
    ("2024-02-15 08:30:00-0500", datetime(2024, 2, 15, 13, 30)),
    ("2024-02-15 13:30", datetime(2024, 2, 15, 13, 30)),
])
def test_date_strings(tmp_path, value, expected):
    source = make_bundle(tmp_path / "src", phase_extra={"start": value})
    assert load(tmp_path, source).phases[0].start == expected


def test_dates_as_yaml_timestamps(tmp_path):
    source = make_bundle(tmp_path / "src", tasks=2, raw_yaml=real_world_yaml(
        first_start="2019-12-12 13:30:00", first_end="2020-02-01 01:00:00+01:00",
        second_start="2020-02-02"))
    phases = load(tmp_path, source).phases
    assert [(p.start, p.end) for p in phases] == [
        (datetime(2019, 12, 12, 13, 30), datetime(2020, 2, 1)),
        (datetime(2020, 2, 2), None)]


def real_world_yaml(first_start: str = "2019-12-12 13:30:00",
                    first_end: str = "2020-02-01 00:00:00",
                    second_start: str = "2020-02-02 00:00:00", version: str = "version: 2\n",
                    leaderboard_key: str = "leaderboards") -> str:
    """A competition.yaml written the way the documentation writes them."""
    return f"""\
# A competition in the documentation's style
{version}title: Compute Pi
image: logo.png
terms: pages/terms.md
description: Calculate pi to as many digits as possible, as quick as you can.
registration_auto_approve: True
docker_image: codalab/codalab-legacy:py37 # default docker image
make_programs_available: True
make_input_data_available: False
enable_detailed_results: True
contact_email: organizer_email@example.com
reward: $1000 prize pool

pages:
  - title: Welcome
    file: pages/overview.md

phases:
  - index: 0
    name: Development Phase
    description: Tune your models
    start: {first_start} # Time in UTC+0 and 24-hour format
    end: {first_end}
    execution_time_limit: 1200
    tasks:
      - 0
  - index: 1
    name: Final Phase
    description: Final testing of your models
    start: {second_start}
    auto_migrate_to_this_phase: True
    tasks:
      - 1

tasks:
  - index: 0
    name: Compute Pi Development Task
    description: Compute Pi, focusing on accuracy
    reference_data: task0/reference_data.zip
    scoring_program: scoring_program.zip
  - index: 1
    name: Compute Pi Final Task
    reference_data: task1/reference_data.zip
    scoring_program: scoring_program.zip

{leaderboard_key}:
  - title: Results
    key: main
    submission_rule: "Force_Last"
    columns:
      - title: Accuracy Score 1
        key: accuracy_1
        index: 0
        sorting: desc
        precision: 2
        hidden: False
      - title: Max Accuracy
        key: max_accuracy
        index: 1
        sorting: desc
        computation: max
        precision: 3
        hidden: False
        computation_indexes:
          - 0
"""


def test_a_documentation_style_bundle_loads(tmp_path):
    source = make_bundle(tmp_path / "src", tasks=2, raw_yaml=real_world_yaml(
        leaderboard_key="leaderboard"))
    spec = load(tmp_path, source)
    assert spec.title == "Compute Pi"
    assert spec.docker_image == "codalab/codalab-legacy:py37"
    assert [p.tasks for p in spec.phases] == [(0,), (1,)]
    assert spec.phases[0].execution_time_limit == 1200
    assert spec.leaderboards[0].columns[1].computation == "max"


def test_no_version_but_the_version_2_layout_is_accepted(tmp_path):
    source = make_bundle(tmp_path / "src", tasks=2, raw_yaml=real_world_yaml(version=""))
    assert load(tmp_path, source).title == "Compute Pi"


def test_a_string_version_2_is_accepted(tmp_path):
    source = make_bundle(tmp_path / "src", extra={"version": "2"})
    assert load(tmp_path, source).title == "Test competition"


# -- scripts of the helper bundles ----------------------------------------------------------


@pytest.fixture
def busybox_path(tmp_path):
    """A PATH where sh, awk, cat and mkdir are busybox's, as in a busybox image."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed")
    bin_dir = tmp_path / "busybox-bin"
    bin_dir.mkdir()
    for tool in ("sh", "awk", "cat", "mkdir"):
        (bin_dir / tool).symlink_to(busybox)
    return str(bin_dir)


def unzip(archive: Path, folder: Path) -> Path:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder)
    return folder


def run_sh(path: str, *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", *map(str, args)], env={"PATH": path}, capture_output=True,
                          text=True, timeout=30)


@pytest.mark.parametrize("prediction, expected", [
    ("40", {"score": 98, "error": 2, "prediction": 40}),
    ("42.5\n", {"score": 99.5, "error": 0.5, "prediction": 42.5}),
    ("value: 45 then 1", {"score": 97, "error": 3, "prediction": 45}),
])
def test_the_scoring_script_runs_with_busybox(tmp_path, busybox_path, prediction, expected):
    (task,) = load(tmp_path, make_bundle(tmp_path / "src")).tasks
    work = tmp_path / "app"
    program = unzip(task.scoring_program.archive, work / "program")
    unzip(task.reference_data, work / "input" / "ref")
    unzip(make_submission(tmp_path / "sub", "result", prediction), work / "input" / "res")
    done = run_sh(busybox_path, program / "score.sh", work / "input", work / "output")
    assert done.returncode == 0, done.stderr
    assert json.loads((work / "output" / "scores.json").read_text()) == expected


def test_the_scoring_script_fails_without_a_prediction(tmp_path, busybox_path):
    (task,) = load(tmp_path, make_bundle(tmp_path / "src")).tasks
    work = tmp_path / "app"
    program = unzip(task.scoring_program.archive, work / "program")
    unzip(task.reference_data, work / "input" / "ref")
    (work / "input" / "res").mkdir()
    done = run_sh(busybox_path, program / "score.sh", work / "input", work / "output")
    assert done.returncode == 1
    assert "no prediction" in done.stderr
    assert not (work / "output" / "scores.json").exists()


@pytest.mark.parametrize("code, expected_error", [(None, 0), ("echo 50\n", 8)])
def test_ingestion_then_scoring_run_with_busybox(tmp_path, busybox_path, code, expected_error):
    (task,) = load(tmp_path, make_bundle(tmp_path / "src", kind="code")).tasks
    work = tmp_path / "app"
    ingestion = unzip(task.ingestion_program.archive, work / "ingestion_program")
    unzip(task.input_data, work / "input_data")
    unzip(make_submission(tmp_path / "sub", "code", code), work / "ingested_program")
    done = run_sh(busybox_path, ingestion / "ingest.sh", work / "input_data",
                  work / "predictions", work / "ingested_program")
    assert done.returncode == 0, done.stderr
    scoring = unzip(task.scoring_program.archive, work / "program")
    shutil.copytree(work / "predictions", work / "input" / "res")
    unzip(task.reference_data, work / "input" / "ref")
    done = run_sh(busybox_path, scoring / "score.sh", work / "input", work / "output")
    assert done.returncode == 0, done.stderr
    assert json.loads((work / "output" / "scores.json").read_text())["error"] == expected_error


def test_submissions(tmp_path):
    assert read(make_submission(tmp_path, "result", 7), "prediction.txt") == "7\n"
    code = make_submission(tmp_path, "code", "echo 1\n", name="code.zip")
    assert read(code, "run.sh") == "echo 1\n"
    files = make_submission(tmp_path, content={"a/b.txt": b"x"}, name="files.zip")
    assert names(files) == ["a/b.txt"]


# -- refusals: competition.yaml -------------------------------------------------------------


def test_bundle_error_is_invalid_input():
    assert issubclass(BundleError, InvalidInput)


def test_yaml_syntax_errors_name_the_line(tmp_path):
    lines = [f"key{i}: value" for i in range(11)] + ["title: bad: colon", "other: x"]
    source = make_bundle(tmp_path / "src", raw_yaml="\n".join(lines) + "\n")
    assert refused(tmp_path, source) == (
        "competition.yaml line 12: mapping values are not allowed here")


def test_yaml_with_python_tags_is_refused(tmp_path):
    source = make_bundle(tmp_path / "src", raw_yaml="title: !!python/object/apply:os.system [ls]\n")
    assert refused(tmp_path, source).startswith("competition.yaml line 1: ")


@pytest.mark.parametrize("raw, message", [
    ("- a\n- b\n", "competition.yaml: must be a mapping of competition settings"),
    ("", "competition.yaml: must be a mapping of competition settings"),
    ("version: 3\ntitle: x\n", "competition.yaml: version 3 is not supported (only version 2)"),
])
def test_bad_documents(tmp_path, raw, message):
    assert refused(tmp_path, make_bundle(tmp_path / "src", raw_yaml=raw)) == message


def test_a_codalab_v15_bundle_is_refused_clearly(tmp_path):
    raw = """\
title: Old competition
phases:
  0:
    label: Exploration
    phasenumber: 1
    start_date: 2019-07-01 14:58:19+00:00
    scoring_program: scoring_program.zip
leaderboard:
  leaderboards:
    Results: {label: Results, rank: 1}
"""
    message = refused(tmp_path, make_bundle(tmp_path / "src", raw_yaml=raw))
    assert message.startswith("competition.yaml: no 'version: 2'")
    assert "v1.5" in message


def test_no_competition_yaml(tmp_path):
    source = write_zip(tmp_path / "src" / "b.zip", {"a/competition.yaml": "x",
                                                    "b/readme": "y"})
    assert refused(tmp_path, source) == (
        "b.zip: no competition.yaml at its top (or in its single top folder)")


def test_not_a_zip(tmp_path):
    source = tmp_path / "bundle.zip"
    source.write_text("hello")
    assert refused(tmp_path, source).startswith("bundle.zip: not a readable zip file")


def test_a_missing_source(tmp_path):
    assert refused(tmp_path, tmp_path / "nothing.zip") == "nothing.zip: no such file or folder"


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["tasks"][0].update(scoring_program="missing.zip"),
     "competition.yaml: tasks[0].scoring_program: 'missing.zip' is not in the bundle"),
    (lambda d: d["tasks"][0].update(reference_data="nowhere/"),
     "competition.yaml: tasks[0].reference_data: 'nowhere/' is not in the bundle"),
    (lambda d: d["tasks"][0].pop("scoring_program"),
     "competition.yaml: tasks[0].scoring_program: is missing"),
    (lambda d: d["tasks"][0].update(reference_data="pages/terms.md"),
     "competition.yaml: tasks[0].reference_data: 'pages/terms.md' is neither a zip file "
     "nor a folder"),
    (lambda d: d["tasks"][0].update(key="3f1e", scoring_program=None),
     "competition.yaml: tasks[0].key: a task already on a Codabench server cannot be used "
     "here; give its scoring_program instead"),
    (lambda d: d["tasks"][0].update(ingestion_only_during_scoring=True),
     "competition.yaml: tasks[0].ingestion_only_during_scoring: needs an ingestion_program"),
    (lambda d: d.update(tasks=[]), "competition.yaml: tasks: at least one task is needed"),
    (lambda d: d.update(tasks=[dict(d["tasks"][0], index=0), dict(d["tasks"][0], index=0)]),
     "competition.yaml: tasks[1].index: 0 is already the index of tasks[0]"),
    (lambda d: d.update(tasks=[dict(d["tasks"][0], index=0),
                               {k: v for k, v in d["tasks"][0].items() if k != "index"}]),
     "competition.yaml: tasks[1].index: is missing (give every item of tasks an index, "
     "or none)"),
    (lambda d: d.update(title=None), "competition.yaml: title: is missing"),
    (lambda d: d.update(image="nope.png"), "competition.yaml: image: 'nope.png' is not in "
                                           "the bundle"),
    (lambda d: d.update(terms="pages/"), "competition.yaml: terms: 'pages/' is not a file"),
    (lambda d: d["pages"][0].update(file="missing.md"),
     "competition.yaml: pages[0].file: 'missing.md' is not in the bundle"),
    (lambda d: d.update(solutions=[{"index": 0, "path": "pages/", "tasks": [4]}]),
     "competition.yaml: solutions[0].tasks: task 4 is not declared in tasks"),
    (lambda d: d.update(enable_detailed_results="maybe"),
     "competition.yaml: enable_detailed_results: 'maybe' is not true or false"),
])
def test_bad_fields(tmp_path, edit, message):
    assert refused(tmp_path, make_bundle(tmp_path / "src", edit=edit)) == message


@pytest.mark.parametrize("metadata, message", [
    (None, "scoring_program.zip: no metadata.yaml (or metadata) with a command"),
    ("description: no command\n",
     "scoring_program.zip: no metadata.yaml (or metadata) with a command"),
    ("command: ''\n", "scoring_program.zip: no metadata.yaml (or metadata) with a command"),
    ("command: [sh, x]\n", "scoring_program.zip: no metadata.yaml (or metadata) with a command"),
    ("image: x\ncommand: a: b\n",
     "scoring_program.zip: metadata.yaml line 2: mapping values are not allowed here"),
])
def test_bad_program_metadata(tmp_path, metadata, message):
    files = {"score.sh": "exit 0\n"}
    if metadata is not None:
        files["metadata.yaml"] = metadata
    source = make_bundle(tmp_path / "src",
                         extra_files={"scoring_program.zip": zip_bytes(files)})
    assert refused(tmp_path, source) == message


def test_metadata_in_a_folder_among_others_is_not_found(tmp_path):
    program = zip_bytes({"scoring/metadata.yaml": "command: x\n", "other/file": "y"})
    source = make_bundle(tmp_path / "src", extra_files={"scoring_program.zip": program})
    assert refused(tmp_path, source) == (
        "scoring_program.zip: no metadata.yaml (or metadata) with a command")


def test_a_program_folder_without_metadata(tmp_path):
    source = make_bundle(tmp_path / "src", programs_zipped=False, metadata_name="notes.txt")
    assert refused(tmp_path, source) == (
        "scoring_program: no metadata.yaml (or metadata) with a command")


@pytest.mark.parametrize("value", ["2024-13-01", "2024-02-30 10:00:00",
                                   "2024-02-15 25:00:00", "tomorrow", 20240215])
def test_bad_dates_are_refused_naming_the_field(tmp_path, value):
    source = make_bundle(tmp_path / "src", phases=2, phase_extra=[{}, {"start": value}])
    assert refused(tmp_path, source) == (
        f"competition.yaml: phases[1].start: {value!r} is not a date "
        "(use YYYY-MM-DD or YYYY-MM-DD HH:MM:SS, UTC)")


@pytest.mark.parametrize("value", ["2024-13-01", "2024-02-30 10:00:00"])
def test_bad_unquoted_dates_are_refused_naming_the_field(tmp_path, value):
    raw = real_world_yaml(second_start=value)
    assert refused(tmp_path, make_bundle(tmp_path / "src", tasks=2, raw_yaml=raw)) == (
        f"competition.yaml: phases[1].start: '{value}' is not a date "
        "(use YYYY-MM-DD or YYYY-MM-DD HH:MM:SS, UTC)")


def test_a_bad_end_date(tmp_path):
    source = make_bundle(tmp_path / "src", phase_extra={"end": "someday"})
    assert refused(tmp_path, source) == (
        "competition.yaml: phases[0].end: 'someday' is not a date "
        "(use YYYY-MM-DD or YYYY-MM-DD HH:MM:SS, UTC)")


@pytest.mark.parametrize("phase_extra, message", [
    ([{"end": None}, {}],
     "competition.yaml: phases[0].end: is missing (only the last phase may have no end)"),
    ([{"end": datetime(2021, 6, 1)}, {}],
     "competition.yaml: phases overlap: 'Phase 1' (phases[1]) starts 2021-01-01 00:00:00, "
     "before 'Phase 0' (phases[0]) ends 2021-06-01 00:00:00"),
    ([{}, {"end": "2020-06-01"}],
     "competition.yaml: phases[1].end: 2020-06-01 00:00:00 is not after the start "
     "(2021-01-01 00:00:00)"),
    ([{"tasks": [0, 3]}, {}], "competition.yaml: phases[0].tasks: task 3 is not declared in tasks"),
    ([{"tasks": []}, {}],
     "competition.yaml: phases[0].tasks: is empty (a phase needs at least one task)"),
    ([{"tasks": None}, {}],
     "competition.yaml: phases[0].tasks: is missing (a phase needs at least one task)"),
    ([{"start": None}, {}], "competition.yaml: phases[0].start: is missing"),
    ([{"execution_time_limit": "long"}, {}],
     "competition.yaml: phases[0].execution_time_limit: 'long' is not a whole number"),
    ([{"execution_time_limit": 0}, {}],
     "competition.yaml: phases[0].execution_time_limit: 0 is less than 1"),
    ([{"max_submissions": -1}, {}],
     "competition.yaml: phases[0].max_submissions: -1 is less than 0"),
    ([{"starting_kit": "../outside"}, {}],
     "competition.yaml: phases[0].starting_kit: '../outside' is outside the bundle"),
])
def test_bad_phases(tmp_path, phase_extra, message):
    source = make_bundle(tmp_path / "src", phases=2, phase_extra=phase_extra)
    assert refused(tmp_path, source) == message


def test_touching_phases_are_fine(tmp_path):
    spec = load(tmp_path, make_bundle(tmp_path / "src", phases=2))
    assert spec.phases[0].end == spec.phases[1].start


def test_overlap_is_checked_in_index_order(tmp_path):
    def swap(doc):
        first, second = doc["phases"]
        doc["phases"] = [dict(second, index=0), dict(first, index=1)]

    message = refused(tmp_path, make_bundle(tmp_path / "src", phases=2, edit=swap))
    assert message.startswith("competition.yaml: phases[0].end: is missing")


@pytest.mark.parametrize("column, message", [
    ({"computation": "max"},
     "competition.yaml: leaderboards[0].columns[2].computation_indexes: is missing "
     "(a computation needs the indexes of its columns)"),
    ({"computation": "max", "computation_indexes": []},
     "competition.yaml: leaderboards[0].columns[2].computation_indexes: is missing "
     "(a computation needs the indexes of its columns)"),
    ({"computation": "max", "computation_indexes": [0, 9]},
     "competition.yaml: leaderboards[0].columns[2].computation_indexes: 9 is not the index "
     "of a column of this leaderboard"),
    ({"computation": "max", "computation_indexes": [2]},
     "competition.yaml: leaderboards[0].columns[2].computation_indexes: 2 is the column's "
     "own index"),
    ({"computation": "median", "computation_indexes": [0, 1]},
     "competition.yaml: leaderboards[0].columns[2].computation: 'median' is not one of "
     "sum, avg, min, max"),
    ({"computation_indexes": [0, 1]},
     "competition.yaml: leaderboards[0].columns[2].computation_indexes: given without a "
     "computation"),
    ({"computation": "sum", "computation_indexes": ["a"]},
     "competition.yaml: leaderboards[0].columns[2].computation_indexes[0]: 'a' is not a "
     "whole number"),
    ({"sorting": "up"}, "competition.yaml: leaderboards[0].columns[2].sorting: 'up' is not "
                        "asc or desc"),
    ({"key": "score"}, "competition.yaml: leaderboards[0].columns[2].key: 'score' is already "
                       "the key of leaderboards[0].columns[0]"),
    ({"index": 0}, "competition.yaml: leaderboards[0].columns[2].index: 0 is already the "
                   "index of leaderboards[0].columns[0]"),
    ({"key": None}, "competition.yaml: leaderboards[0].columns[2].key: is missing"),
    ({"precision": -1}, "competition.yaml: leaderboards[0].columns[2].precision: -1 is less "
                        "than 0"),
    ({"hidden": "sometimes"},
     "competition.yaml: leaderboards[0].columns[2].hidden: 'sometimes' is not true or false"),
])
def test_bad_columns(tmp_path, column, message):
    columns = [{"key": "score", "index": 0}, {"key": "error", "index": 1},
               dict({"key": "third", "index": 2}, **column)]
    assert refused(tmp_path, make_bundle(tmp_path / "src", columns=columns)) == message


def test_computed_columns_in_a_cycle_are_refused(tmp_path):
    columns = [{"key": "a", "index": 0},
               {"key": "b", "index": 1, "computation": "sum", "computation_indexes": [0, 2]},
               {"key": "c", "index": 2, "computation": "avg", "computation_indexes": [1]}]
    assert refused(tmp_path, make_bundle(tmp_path / "src", columns=columns)) == (
        "competition.yaml: leaderboards[0].columns: computed columns form a cycle: b -> c -> b")


@pytest.mark.parametrize("extra, message", [
    ({"submission_rule": "Keep_All"},
     "competition.yaml: leaderboards[0].submission_rule: 'Keep_All' is not one of Add, "
     "Add_And_Delete, Add_And_Delete_Multiple, Force_Last, Force_Latest_Multiple, Force_Best"),
    ({"primary_index": 5},
     "competition.yaml: leaderboards[0].primary_index: 5 is not the index of a column of "
     "this leaderboard"),
    ({"columns": []}, "competition.yaml: leaderboards[0].columns: at least one column is needed"),
    ({"key": None}, "competition.yaml: leaderboards[0].key: is missing"),
])
def test_bad_leaderboards(tmp_path, extra, message):
    source = make_bundle(tmp_path / "src", leaderboard_extra=extra)
    assert refused(tmp_path, source) == message


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(leaderboard=d["leaderboards"]),
     "competition.yaml: give either 'leaderboards' or 'leaderboard', not both"),
    (lambda d: d.pop("leaderboards"),
     "competition.yaml: leaderboard: at least one leaderboard is needed"),
    (lambda d: d.update(leaderboards=[d["leaderboards"][0], d["leaderboards"][0]]),
     "competition.yaml: leaderboards[1].key: 'main' is already the key of leaderboards[0]"),
    (lambda d: d.update(phases=[]), "competition.yaml: phases: at least one phase is needed"),
    (lambda d: d.update(phases={"a": 1}), "competition.yaml: phases: must be a list"),
    (lambda d: d.update(phases=["x"]),
     "competition.yaml: phases[0]: must be a mapping (key: value lines)"),
])
def test_bad_structure(tmp_path, edit, message):
    assert refused(tmp_path, make_bundle(tmp_path / "src", edit=edit)) == message


@pytest.mark.parametrize("path", ["../outside.zip", "task0/../../outside.zip", "/etc/passwd",
                                  "C:/data.zip", "\\\\server\\share.zip"])
def test_paths_leaving_the_bundle_are_refused(tmp_path, path):
    write_zip(tmp_path / "outside.zip", {"answer.txt": "1"})
    source = make_bundle(tmp_path / "src", zipped=False,
                         task_extra={"reference_data": path})
    message = refused(tmp_path, source)
    assert message.startswith(f"competition.yaml: tasks[0].reference_data: {path!r} is outside "
                              "the bundle")


def test_a_path_leaving_the_top_folder_is_refused(tmp_path):
    source = make_bundle(tmp_path / "src", top_folder="comp",
                         extra_files={"__MACOSX/data.zip": zip_bytes({"a": "b"})},
                         task_extra={"reference_data": "../__MACOSX/data.zip"})
    assert "is outside the bundle" in refused(tmp_path, source)


# -- refusals: archives ----------------------------------------------------------------------


@pytest.mark.parametrize("entry, reason", [
    ("../evil.txt", "goes outside the archive ('..')"),
    ("a/../../evil.txt", "goes outside the archive ('..')"),
    ("..\\evil.txt", "goes outside the archive ('..')"),
    ("/tmp/evil.txt", "has an absolute path"),
    ("C:/evil.txt", "has an absolute path"),
    ("c:evil.txt", "has an absolute path"),
])
def test_zip_slip_is_refused_before_anything_is_written(tmp_path, entry, reason):
    source = make_bundle(tmp_path / "src", extra_files={entry: "gotcha"})
    assert refused(tmp_path, source) == f"bundle.zip: entry {entry!r} {reason}"
    assert not (tmp_path / "staging" / "bundle").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_zip_slip_in_a_program_is_refused(tmp_path):
    program = zip_bytes({"metadata.yaml": "command: x\n", "../../evil.sh": "x"})
    source = make_bundle(tmp_path / "src", extra_files={"scoring_program.zip": program})
    assert refused(tmp_path, source) == (
        "scoring_program.zip: entry '../../evil.sh' goes outside the archive ('..')")
    assert not list((tmp_path / "staging" / "files").iterdir())


def add_symlink_entry(path: Path, name: str, target: str) -> None:
    with zipfile.ZipFile(path, "a") as zf:
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)


def test_a_symlink_entry_is_refused(tmp_path):
    source = make_bundle(tmp_path / "src")
    add_symlink_entry(source, "pages/link.md", "/etc/passwd")
    assert refused(tmp_path, source) == "bundle.zip: entry 'pages/link.md' is a symbolic link"
    assert not (tmp_path / "staging" / "bundle").exists()


def test_a_symlink_entry_in_data_is_refused(tmp_path):
    data = tmp_path / "data.zip"
    write_zip(data, {"answer.txt": "1"})
    add_symlink_entry(data, "link", "/etc/shadow")
    source = make_bundle(tmp_path / "src",
                         extra_files={"task0/reference_data.zip": data.read_bytes()})
    assert refused(tmp_path, source) == (
        "task0/reference_data.zip: entry 'link' is a symbolic link")


@pytest.mark.parametrize("where", ["pages/link.md", "scoring_program/link", "linked_dir"])
def test_symlinks_in_a_folder_bundle_are_refused(tmp_path, where):
    source = make_bundle(tmp_path / "src", zipped=False, programs_zipped=False)
    target = "/etc" if where == "linked_dir" else "/etc/passwd"
    os.symlink(target, source / where)
    assert refused(tmp_path, source) == f"bundle: {where!r} is a symbolic link"


def test_a_special_file_entry_is_refused(tmp_path):
    source = make_bundle(tmp_path / "src")
    with zipfile.ZipFile(source, "a") as zf:
        info = zipfile.ZipInfo("fifo")
        info.external_attr = (stat.S_IFIFO | 0o644) << 16
        zf.writestr(info, "")
    assert refused(tmp_path, source) == "bundle.zip: entry 'fifo' is not a plain file or folder"


def test_duplicate_and_conflicting_entries_are_refused(tmp_path):
    source = make_bundle(tmp_path / "src")
    with zipfile.ZipFile(source, "a") as zf, pytest.warns(UserWarning):
        zf.writestr("logo.png", "again")
    assert refused(tmp_path, source) == "bundle.zip: entry 'logo.png' appears twice"
    other = make_bundle(tmp_path / "src2", extra_files={"logo.png/inner": "x"})
    assert refused(tmp_path / "2", other) == (
        "bundle.zip: entry 'logo.png' is both a file and a folder")


def test_an_encrypted_entry_is_refused(tmp_path):
    source = make_bundle(tmp_path / "src")
    data = bytearray(source.read_bytes())
    flags = central_entry(data, "logo.png") + 8
    data[flags] |= 0x1
    source.write_bytes(bytes(data))
    assert refused(tmp_path, source) == "bundle.zip: entry 'logo.png' is encrypted"


def test_too_many_files(tmp_path):
    source = make_bundle(tmp_path / "src")
    count = len(names(source))
    assert load(tmp_path / "ok", source, ArchiveLimits(max_files=count)).title
    assert refused(tmp_path, source, ArchiveLimits(max_files=count - 1)) == (
        f"bundle.zip: too many files ({count} entries; at most {count - 1} allowed)")
    assert not (tmp_path / "staging" / "bundle").exists()


def test_too_many_files_in_a_folder_bundle(tmp_path):
    source = make_bundle(tmp_path / "src", zipped=False)
    assert refused(tmp_path, source, ArchiveLimits(max_files=3)).startswith(
        "bundle: too many files (")


def test_too_many_files_in_data(tmp_path):
    data = zip_bytes({f"f{i}.txt": "1" for i in range(50)})
    source = make_bundle(tmp_path / "src", extra_files={"task0/reference_data.zip": data})
    assert refused(tmp_path, source, ArchiveLimits(max_files=40)) == (
        "task0/reference_data.zip: too many files (52 entries; at most 40 allowed)")


def test_too_big_as_declared(tmp_path):
    source = make_bundle(tmp_path / "src", extra_files={"big.bin": b"\0" * 100_000})
    message = refused(tmp_path, source, ArchiveLimits(max_bytes=50_000))
    assert message.startswith("bundle.zip: too big (")
    assert message.endswith("bytes uncompressed; at most 50000 allowed)")
    assert not (tmp_path / "staging" / "bundle").exists()


def test_a_file_too_big_as_declared(tmp_path):
    source = make_bundle(tmp_path / "src", extra_files={"big.bin": b"\0" * 100_000})
    assert refused(tmp_path, source, ArchiveLimits(max_file_bytes=50_000)) == (
        "bundle.zip: 'big.bin' is too big (100000 bytes uncompressed; at most 50000 allowed)")


def test_a_file_too_big_in_a_folder_bundle(tmp_path):
    source = make_bundle(tmp_path / "src", zipped=False, extra_files={"big.bin": b"1" * 5000})
    assert refused(tmp_path, source, ArchiveLimits(max_file_bytes=1000)) == (
        "bundle: 'big.bin' is too big (5000 bytes; at most 1000 allowed)")


def test_data_too_big_as_declared(tmp_path):
    data = zip_bytes({"answer.txt": "1" * 100_000})
    source = make_bundle(tmp_path / "src", extra_files={"task0/reference_data.zip": data})
    message = refused(tmp_path, source, ArchiveLimits(max_file_bytes=50_000))
    assert message == ("task0/reference_data.zip: 'answer.txt' is too big (100000 bytes "
                       "uncompressed; at most 50000 allowed)")


def test_data_zips_together_count_against_one_budget(tmp_path):
    # each data zip is under the limit, the two together are not
    data = {f"task{i}/reference_data.zip": zip_bytes({"answer.txt": "1" * 30_000})
            for i in range(2)}
    source = make_bundle(tmp_path / "src", tasks=2, extra_files=data)
    message = refused(tmp_path, source, ArchiveLimits(max_bytes=50_000))
    assert message.startswith("task1/reference_data.zip: too big (")


def test_a_lying_header_over_the_limits_is_refused(tmp_path):
    source = make_bundle(tmp_path / "src", extra_files={"big.bin": b"a" * 100_000})
    source.write_bytes(lie_about_size(source.read_bytes(), "big.bin", 10))
    limits = ArchiveLimits(max_file_bytes=50_000)
    assert refused(tmp_path, source, limits) == (
        "bundle.zip: 'big.bin' holds more than the 10 bytes its header says")
    staged = tmp_path / "staging" / "bundle" / "big.bin"
    assert not staged.exists() or staged.stat().st_size <= 50_000


def test_a_lying_header_over_the_total_is_refused(tmp_path):
    source = make_bundle(tmp_path / "src", extra_files={"big.bin": b"a" * 100_000})
    source.write_bytes(lie_about_size(source.read_bytes(), "big.bin", 10))
    assert refused(tmp_path, source, ArchiveLimits(max_bytes=60_000)) == (
        "bundle.zip: 'big.bin' holds more than the 10 bytes its header says")


def test_a_lying_header_within_the_limits_is_refused(tmp_path):
    source = make_bundle(tmp_path / "src", extra_files={"big.bin": b"a" * 5000})
    source.write_bytes(lie_about_size(source.read_bytes(), "big.bin", 10))
    assert refused(tmp_path, source) == (
        "bundle.zip: 'big.bin' holds more than the 10 bytes its header says")


def test_a_header_claiming_more_than_there_is_is_refused(tmp_path):
    source = make_bundle(tmp_path / "src", extra_files={"small.bin": b"a" * 100})
    source.write_bytes(lie_about_size(source.read_bytes(), "small.bin", 5000))
    assert refused(tmp_path, source) == (
        "bundle.zip: 'small.bin' holds 100 bytes but its header says 5000")


def test_a_lying_header_in_data_is_refused(tmp_path):
    data = lie_about_size(zip_bytes({"answer.txt": "4" * 100_000}), "answer.txt", 3)
    source = make_bundle(tmp_path / "src", extra_files={"task0/reference_data.zip": data})
    assert refused(tmp_path, source, ArchiveLimits(max_file_bytes=50_000)) == (
        "task0/reference_data.zip: 'answer.txt' holds more than the 3 bytes its header "
        "says")


def test_a_corrupt_entry_is_refused(tmp_path):
    source = make_bundle(tmp_path / "src", extra_files={"data.bin": b"abc" * 1000})
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as zf:
        info = zf.getinfo("data.bin")
    start = info.header_offset + 30 + len(b"data.bin")
    data[start + 2] ^= 0xFF
    source.write_bytes(bytes(data))
    assert refused(tmp_path, source).startswith("bundle.zip: cannot read 'data.bin' (")


def test_program_type_is_checked(tmp_path):
    spec = load(tmp_path, make_bundle(tmp_path / "src"))
    assert isinstance(spec.tasks[0].scoring_program, Program)
