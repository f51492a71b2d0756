"""Reading a run's scores file: both formats, every refusal and its reason, and a file
the task may have planted to trip the worker (links, FIFOs, huge files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scitq_bench.client.worker.scores import (
    INVALID,
    MAX_BYTES,
    MISSING,
    NOT_NUMERIC,
    ScoresRefused,
    read_scores,
)


def refused(output: Path, allowed: list[str] | None = None) -> ScoresRefused:
    with pytest.raises(ScoresRefused) as caught:
        read_scores(output, allowed)
    return caught.value


def test_json_scores(tmp_path):
    (tmp_path / "scores.json").write_text(json.dumps({"accuracy": 0.9, "n": 3, "loss": -1e-3}))
    scores = read_scores(tmp_path, ["accuracy", "n", "loss", "other"])
    assert scores == {"accuracy": 0.9, "n": 3.0, "loss": -0.001}
    assert all(type(v) is float for v in scores.values())


def test_any_key_when_none_or_empty(tmp_path):
    (tmp_path / "scores.json").write_text('{"a.b:c-d_e": 1}')
    assert read_scores(tmp_path, []) == {"a.b:c-d_e": 1.0}
    assert read_scores(tmp_path, None) == {"a.b:c-d_e": 1.0}


def test_text_scores(tmp_path):
    (tmp_path / "scores.txt").write_text(
        "# produced by score.py\n\nset1_score: 0.75\n  auc :1e-2  \nrun:time: 12\n")
    assert read_scores(tmp_path, []) == {"set1_score": 0.75, "auc": 0.01, "run:time": 12.0}


def test_json_wins_over_text(tmp_path):
    (tmp_path / "scores.json").write_text('{"a": 1}')
    (tmp_path / "scores.txt").write_text("a: 2\n")
    assert read_scores(tmp_path) == {"a": 1.0}


def test_byte_order_mark_is_tolerated(tmp_path):
    (tmp_path / "scores.json").write_bytes(b'\xef\xbb\xbf{"a": 1}')
    assert read_scores(tmp_path) == {"a": 1.0}


def test_missing(tmp_path):
    problem = refused(tmp_path)
    assert problem.reason == MISSING
    assert str(problem) == "no scores.json or scores.txt in the output"
    assert refused(tmp_path / "absent").reason == MISSING


@pytest.mark.parametrize("content, words", [
    ("{not json", "scores.json is not valid JSON"),
    ("[1, 2]", "flat JSON object of key -> number, not an array"),
    ("3.5", "not a number"),
    ('{"a": {"b": 1}}', "key 'a' holds an object"),
    ('{"a": [1]}', "key 'a' holds an array"),
    ('{"a": 1, "a": 2}', "key 'a' appears more than once"),
    ('{"bad key": 1}', "'bad key' is not a valid score key"),
    ('{"' + "k" * 101 + '": 1}', "is not a valid score key"),
])
def test_invalid_json(tmp_path, content, words):
    (tmp_path / "scores.json").write_text(content)
    problem = refused(tmp_path)
    assert problem.reason == INVALID
    assert words in str(problem) and "scores.json" in str(problem)


@pytest.mark.parametrize("content, words", [
    ("a: 1\nno colon here\n", "scores.txt, line 2: expected 'key: value'"),
    (": 3\n", "scores.txt, line 1: expected 'key: value'"),
    ("a: 1\n# c\na: 2\n", "scores.txt, line 3: key 'a' already given on line 1"),
    ("a b: 1\n", "scores.txt, line 1: 'a b' is not a valid score key"),
])
def test_invalid_text(tmp_path, content, words):
    (tmp_path / "scores.txt").write_text(content)
    problem = refused(tmp_path)
    assert problem.reason == INVALID
    assert words in str(problem)


def test_not_utf8(tmp_path):
    (tmp_path / "scores.txt").write_bytes(b"a: \xff\n")
    assert refused(tmp_path).reason == INVALID


@pytest.mark.parametrize("value", ['"0.5"', "true", "false", "null", "NaN", "Infinity",
                                   "-Infinity", "1e400"])
def test_json_values_that_are_not_numbers(tmp_path, value):
    (tmp_path / "scores.json").write_text('{"ok": 1, "acc": ' + value + "}")
    problem = refused(tmp_path)
    assert problem.reason == NOT_NUMERIC
    assert "'acc'" in str(problem)


def test_huge_json_integer_is_not_finite(tmp_path):
    (tmp_path / "scores.json").write_text('{"big": ' + "9" * 400 + "}")
    problem = refused(tmp_path)
    assert problem.reason == NOT_NUMERIC and "'big'" in str(problem)


@pytest.mark.parametrize("value", ["abc", "", "nan", "inf", "-Infinity", "1_000", "0x10",
                                   "1,5", "true"])
def test_text_values_that_are_not_numbers(tmp_path, value):
    (tmp_path / "scores.txt").write_text(f"first: 2\nacc: {value}\n")
    problem = refused(tmp_path)
    assert problem.reason == NOT_NUMERIC
    assert "line 2" in str(problem) and "'acc'" in str(problem)


def test_keys_that_are_not_columns_are_ignored_as_codabench_does(tmp_path):
    (tmp_path / "scores.json").write_text('{"accuracy": 1, "secret": 2}')
    assert read_scores(tmp_path, ["accuracy", "f1"]) == {"accuracy": 1.0}
    (tmp_path / "scores.json").unlink()
    (tmp_path / "scores.txt").write_text("accuracy: 1\nf2: 3\n")
    assert read_scores(tmp_path, ["accuracy", "f1"]) == {"accuracy": 1.0}


def test_symlinks_are_never_followed(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"stolen": 1}')
    output = tmp_path / "out"
    output.mkdir()
    (output / "scores.json").symlink_to(secret)
    problem = refused(output)
    assert problem.reason == INVALID and "symbolic link" in str(problem)
    (output / "scores.json").unlink()
    (output / "scores.txt").symlink_to(tmp_path / "missing-target")
    assert refused(output).reason == INVALID  # a dangling link is a link, not "missing"
    linked = tmp_path / "linked-out"
    linked.symlink_to(output)
    assert refused(linked).reason == MISSING  # the output folder itself is not followed


def test_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "scores.json")  # opening must not block
    problem = refused(tmp_path)
    assert problem.reason == INVALID and "not a regular file" in str(problem)
    os.unlink(tmp_path / "scores.json")
    (tmp_path / "scores.json").mkdir()
    assert refused(tmp_path).reason == INVALID


def test_size_is_capped(tmp_path):
    (tmp_path / "scores.json").write_text('{"a": 1}' + " " * MAX_BYTES)
    problem = refused(tmp_path)
    assert problem.reason == INVALID and "larger than" in str(problem)
    (tmp_path / "scores.json").write_text('{"a": 1}' + " " * (MAX_BYTES - 8))
    assert read_scores(tmp_path) == {"a": 1.0}


def test_too_many_keys(tmp_path):
    (tmp_path / "scores.json").write_text(json.dumps({f"k{i}": i for i in range(1001)}))
    problem = refused(tmp_path)
    assert problem.reason == INVALID and "at most 1000" in str(problem)


def test_empty_object_is_no_scores(tmp_path):
    (tmp_path / "scores.json").write_text("{}")
    assert read_scores(tmp_path, ["a"]) == {}
