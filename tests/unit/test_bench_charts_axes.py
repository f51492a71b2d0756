"""The axes of the leaderboard charts: a value axis spans the values with round ends
(scores near 0.8 are not drawn from 0 to 9), counts are whole numbers, histogram edges
are labelled with scores that can be told apart, and times are UTC dates."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from scitq_bench.server.bench.charts import (
    bin_axis,
    count_axis,
    nice_step,
    time_axis,
    value_axis,
)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def labels(axis: dict) -> list[str]:
    return [text for _, text in axis["ticks"]]


@pytest.mark.parametrize(("span", "step"), [(1.0, 0.2), (0.08, 0.02), (86.0, 20.0),
                                            (0.00021, 0.00005), (7.0, 2.0), (12.5, 2.5)])
def test_steps_are_round(span, step):
    assert nice_step(span) == pytest.approx(step)


def test_scores_near_one_value_are_not_drawn_from_zero():
    axis = value_axis([0.78, 0.86, 0.8])
    assert axis["min"] == pytest.approx(0.78) and axis["max"] == pytest.approx(0.86)
    assert labels(axis) == ["0.78", "0.80", "0.82", "0.84", "0.86"]


@pytest.mark.parametrize("values", [[0.8123, 0.8456], [12.0, 98.0], [-3.2, 0.4],
                                    [0.00012, 0.00031], [1e6, 1.5e6], [0.5, 0.5]])
def test_a_value_axis_covers_its_values_and_no_more_than_it_needs(values):
    axis = value_axis(values)
    low, high = min(values), max(values)
    assert axis["min"] <= low and axis["max"] >= high
    span = max(high - low, abs(low) * 0.1 or 2.0)
    assert axis["max"] - axis["min"] <= 2.5 * span  # round ends, not a distant zero
    positions = [position for position, _ in axis["ticks"]]
    assert positions == sorted(positions) and 3 <= len(positions) <= 11
    assert len(set(labels(axis))) == len(positions)  # every label tells its tick apart
    assert all(float(text) == pytest.approx(position) for position, text in axis["ticks"])


def test_one_value_gets_a_small_span_around_it():
    axis = value_axis([0.8])
    assert axis["min"] < 0.8 < axis["max"] and axis["max"] - axis["min"] < 0.2
    assert value_axis([0.0])["min"] < 0 < value_axis([0.0])["max"]


def test_no_negative_zero():
    assert "-0" not in labels(value_axis([-0.4, 0.3]))


def test_counts_are_whole_numbers_from_zero():
    assert count_axis(7) == {"min": 0, "max": 8, "ticks": [[0, "0"], [2, "2"], [4, "4"],
                                                           [6, "6"], [8, "8"]]}
    assert labels(count_axis(1)) == ["0", "1"]
    assert count_axis(23)["max"] >= 23 and all(isinstance(p, int)
                                               for p, _ in count_axis(23)["ticks"])


def test_histogram_edges_are_scores_told_apart():
    axis = bin_axis(0.79, 0.002, 10, 2)  # scores 0.79 to 0.81 shown with 2 decimals
    assert axis["min"] == 0 and axis["max"] == 10
    assert labels(axis)[0] == "0.790" and labels(axis)[-1] == "0.810"
    assert len(set(labels(axis))) == len(axis["ticks"]) <= 7
    assert labels(bin_axis(90, 0.8, 10, 2))[0] == "90.00"
    single = bin_axis(0.8, 1.0, 1, 3)
    assert single["ticks"] == [[0.5, "0.800"]] and single["max"] == 1


def test_times_are_utc_dates_not_seconds():
    hours = time_axis([at("2026-03-01T08:00:00"), at("2026-03-01T20:00:00")])
    assert labels(hours)[0] == "2026-03-01 08:00" and labels(hours)[-1] == "2026-03-01 20:00"
    days = time_axis([at("2026-03-01T08:00:00"), at("2026-05-20T10:00:00")])
    assert labels(days)[0] == "2026-03-01" and labels(days)[-1] == "2026-05-20"
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", text) for text in labels(days))
    assert days["min"] == at("2026-03-01T08:00:00")


def test_times_close_together_keep_distinct_labels():
    close = time_axis([at("2026-03-01T08:00:05"), at("2026-03-01T08:00:55")])
    assert len(set(labels(close))) == len(close["ticks"]) >= 3
    assert labels(close)[0] == "2026-03-01 07:59:30"
    assert close["min"] <= at("2026-03-01T08:00:05") and close["max"] >= at("2026-03-01T08:00:55")
    minutes = time_axis([at("2026-03-01T08:00:00"), at("2026-03-01T08:30:00")])
    assert labels(minutes) == ["2026-03-01 08:00", "2026-03-01 08:10", "2026-03-01 08:20",
                               "2026-03-01 08:30"]
    one = time_axis([at("2026-03-01T08:00:00")])
    assert one["min"] < at("2026-03-01T08:00:00") < one["max"]
