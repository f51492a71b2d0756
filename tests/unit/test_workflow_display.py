"""What a run shows: a step's counts, whether it is done, and its estimated time left."""

from __future__ import annotations

from rich.console import Console

from scitq_bench.workflow.display import StepState, counts_text, duration_text, table


def test_the_time_left_is_the_tasks_left_times_their_mean_over_those_running() -> None:
    state = StepState.of("fastp", {"name": "qc.fastp", "status": "running",
                                   "counts": {"succeeded": 2, "running": 2, "pending": 6,
                                              "failed": 1},
                                   "durations": {"mean": 30.0}})
    assert (state.total, state.finished, state.active) == (11, 3, 2)
    assert state.eta == 8 * 30.0 / 2 and not state.done
    assert duration_text(state.eta) == "2m00s" and duration_text(7300) == "2h01m"
    unknown = StepState("x", "qc.x", {"pending": 3})
    assert unknown.eta is None and duration_text(unknown.eta) == "-"
    finished = StepState("y", "qc.y", {"succeeded": 2, "cancelled": 1})
    assert finished.done and finished.eta == 0
    assert StepState.of("z", None).done  # no batch yet: nothing to wait for
    assert StepState.of("w", {"name": "qc.w", "status": "paused", "counts": {}}).stopped


def test_the_table_shows_each_step_its_counts_and_its_state() -> None:
    assert counts_text({"failed": 1, "succeeded": 2, "odd": 1, "running": 0}) == \
        "[green]succeeded 2[/]  [red]failed 1[/]  odd 1"
    console = Console(width=120, record=True)
    console.print(table("qc", [StepState("fastp", "qc.fastp", {"succeeded": 4}),
                               StepState("stats", "qc.stats", {"pending": 1}, None, True)]))
    text = console.export_text()
    assert "fastp" in text and "4/4" in text and "done" in text
    assert "stats (stopped)" in text and "0/1" in text and "pending 1" in text
