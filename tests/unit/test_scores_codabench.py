"""scores.json and scores.txt read as Codabench reads them when the leaderboard columns
are known: other keys ignored whatever they hold, a column's boolean 1 or 0, a numeric
string its number, anything else in a column refused naming the key and what it got."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scitq_bench.client.worker.scores import INVALID, NOT_NUMERIC, ScoresRefused, read_scores

COLUMNS = ["accuracy", "n"]


def refused(output: Path, allowed: list[str] | None = COLUMNS) -> ScoresRefused:
    with pytest.raises(ScoresRefused) as caught:
        read_scores(output, allowed)
    return caught.value


def test_keys_that_are_not_columns_are_ignored_whatever_they_hold(tmp_path: Path) -> None:
    (tmp_path / "scores.json").write_text(json.dumps({
        "accuracy": 0.75, "n": 12,
        "details": {"per_class": [0.1, 0.9], "nested": {"deeper": None}},
        "history": [1, 2, {"x": "y"}], "comment": "all good", "done": True,
        "missing": None, "not a valid key!": 3, "k" * 200: "long"}))
    scores = read_scores(tmp_path, COLUMNS)
    assert scores == {"accuracy": 0.75, "n": 12.0}
    assert all(type(value) is float for value in scores.values())


@pytest.mark.parametrize("value, number", [
    (True, 1.0), (False, 0.0), ("0.5", 0.5), (" 2 ", 2.0), ("-1e-3", -0.001), ("7", 7.0),
    (3, 3.0), (0.25, 0.25),
])
def test_column_values_as_codabench_takes_them(tmp_path: Path, value: Any,
                                               number: float) -> None:
    (tmp_path / "scores.json").write_text(json.dumps({"accuracy": value, "extra": [value]}))
    assert read_scores(tmp_path, COLUMNS) == {"accuracy": number}


@pytest.mark.parametrize("value, got", [
    ({"mean": 0.5}, "an object"), ([0.5], "an array"), (None, "null"),
    ("high", "the string 'high'"), ("", "the string ''"), ("1_000", "the string '1_000'"),
    ("NaN", "not a finite number"), ("inf", "not a finite number"),
])
def test_a_column_value_that_is_not_a_number_names_the_key_and_what_it_got(
        tmp_path: Path, value: Any, got: str) -> None:
    (tmp_path / "scores.json").write_text(json.dumps({"accuracy": 1, "n": value,
                                                      "ignored": {"x": 1}}))
    problem = refused(tmp_path)
    assert problem.reason == NOT_NUMERIC
    assert "'n'" in str(problem) and got in str(problem), str(problem)
    assert str(problem).startswith("scores.json: score 'n' ")


def test_text_scores_ignore_other_keys_and_take_booleans(tmp_path: Path) -> None:
    (tmp_path / "scores.txt").write_text(
        "accuracy: 0.5\nnote: looks fine\nn: true\nrun:time: fast\nother: [1, 2]\n")
    assert read_scores(tmp_path, COLUMNS) == {"accuracy": 0.5, "n": 1.0}
    (tmp_path / "scores.txt").write_text("accuracy: False\nn: 4\n")
    assert read_scores(tmp_path, COLUMNS) == {"accuracy": 0.0, "n": 4.0}


def test_text_column_that_is_not_a_number(tmp_path: Path) -> None:
    (tmp_path / "scores.txt").write_text("note: x\nn: many\n")
    problem = refused(tmp_path)
    assert problem.reason == NOT_NUMERIC
    assert str(problem) == "scores.txt, line 2: score 'n' is not a number: 'many'"


def test_a_missing_column_is_no_score(tmp_path: Path) -> None:
    (tmp_path / "scores.json").write_text('{"accuracy": 1, "unrelated": {"n": 2}}')
    assert read_scores(tmp_path, COLUMNS) == {"accuracy": 1.0}


def test_repeated_keys_matter_only_for_columns(tmp_path: Path) -> None:
    (tmp_path / "scores.json").write_text('{"x": 1, "x": {"a": 2}, "n": 3}')
    assert read_scores(tmp_path, COLUMNS) == {"n": 3.0}
    (tmp_path / "scores.json").write_text('{"n": 1, "n": 2}')
    problem = refused(tmp_path)
    assert problem.reason == INVALID and "'n' appears more than once" in str(problem)
    (tmp_path / "scores.json").unlink()
    (tmp_path / "scores.txt").write_text("x: 1\nx: 2\nn: 3\nn: 4\n")
    problem = refused(tmp_path)
    assert problem.reason == INVALID
    assert str(problem) == "scores.txt, line 4: key 'n' already given on line 3"


def test_without_columns_the_file_stays_a_flat_object_of_numbers(tmp_path: Path) -> None:
    (tmp_path / "scores.json").write_text('{"a": 1, "b": {"c": 2}}')
    problem = refused(tmp_path, None)
    assert problem.reason == INVALID and "key 'b' holds an object" in str(problem)
    (tmp_path / "scores.json").write_text('{"a": true}')
    assert refused(tmp_path, []).reason == NOT_NUMERIC


def test_the_document_must_still_be_an_object(tmp_path: Path) -> None:
    (tmp_path / "scores.json").write_text('[{"accuracy": 1}]')
    problem = refused(tmp_path)
    assert problem.reason == INVALID and "not an array" in str(problem)
