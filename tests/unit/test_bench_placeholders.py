"""The legacy ``$name`` placeholders of program commands."""

from __future__ import annotations

import pytest

from scitq_bench.bench.placeholders import substitute

INGESTION = {
    "$input": "/app/input_data",
    "$output": "/app/output",
    "$program": "/app/program",
    "$ingestion_program": "/app/program",
    "$hidden": "/app/input/ref",
    "$shared": "/app/shared",
    "$submission_program": "/app/ingested_program",
    "$tmp": "/app/output",
    "$predictions": "/app/output",
}
SCORING = dict(INGESTION, **{"$input": "/app/input", "$predictions": "/app/input/res"})


@pytest.mark.parametrize("step, table", [("ingestion", INGESTION), ("scoring", SCORING)])
def test_every_placeholder(step, table):
    for placeholder, path in table.items():
        assert substitute(f"run {placeholder}", step) == f"run {path}"
        assert substitute(f"{placeholder}/x.py", step) == f"{path}/x.py"
        assert substitute(f"--dir={placeholder}", step) == f"--dir={path}"


def test_a_documented_ingestion_command():
    command = ("python3 $ingestion_program/ingestion.py $input $output $ingestion_program "
               "$submission_program")
    assert substitute(command, "ingestion") == (
        "python3 /app/program/ingestion.py /app/input_data /app/output /app/program "
        "/app/ingested_program")


def test_a_documented_scoring_command():
    assert substitute("python3 $program/score.py $input $output", "scoring") == (
        "python3 /app/program/score.py /app/input /app/output")


def test_a_dataset_competition_swaps_input_and_submission():
    command = ("python3 $ingestion_program/ingestion.py $submission_program $output "
               "$ingestion_program $input")
    assert substitute(command, "ingestion") == (
        "python3 /app/program/ingestion.py /app/ingested_program /app/output /app/program "
        "/app/input_data")


@pytest.mark.parametrize("step", ["ingestion", "scoring"])
@pytest.mark.parametrize("command", [
    "echo $inputs $input_data $programs_dir $output2 $tmpdir $hidden_ref",
    "echo ${input} ${output}",
    "echo $HOME $PATH input output program",
    "echo \\$",
    "",
])
def test_other_names_are_left_alone(step, command):
    assert substitute(command, step) == command


def test_placeholders_next_to_other_text():
    assert substitute("cat $input/res/*.txt>$output/scores.json;ls $tmp", "scoring") == (
        "cat /app/input/res/*.txt>/app/output/scores.json;ls /app/output")
    assert substitute("$input$output", "scoring") == "/app/input/app/output"
    assert substitute("$input-$output.$predictions", "ingestion") == (
        "/app/input_data-/app/output./app/output")


def test_unknown_step():
    with pytest.raises(ValueError, match="unknown step 'prediction'"):
        substitute("x", "prediction")
