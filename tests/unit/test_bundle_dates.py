"""Phase dates read as Codabench reads them (dateutil's parser, month first, naive values
as UTC): each accepted form with the exact instant it gives, and refusals naming the field
and the value."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from scitq_bench.bench.bundle.fields import as_datetime, parse_yaml
from scitq_bench.bench.bundle.loader import load_bundle, phase_overlap
from scitq_bench.bench.bundle.model import BundleError
from tests.support.bundles import make_bundle

WHERE = "phases[0].start"


@pytest.mark.parametrize("text, instant", [
    ("1-1-2026", datetime(2026, 1, 1)),
    ("1/2/2026", datetime(2026, 1, 2)),  # month first: January 2nd
    ("1-2-2026", datetime(2026, 1, 2)),
    ("12/31/2026", datetime(2026, 12, 31)),
    ("2026-01-02", datetime(2026, 1, 2)),
    ("2026/01/02", datetime(2026, 1, 2)),
    ("Jan 2 2026", datetime(2026, 1, 2)),
    ("January 2, 2026", datetime(2026, 1, 2)),
    ("2 Jan 2026", datetime(2026, 1, 2)),
    ("2026-01-02 13:45", datetime(2026, 1, 2, 13, 45)),
    ("2026-01-02 13:45:07", datetime(2026, 1, 2, 13, 45, 7)),
    ("2026-01-02T13:45:07.250", datetime(2026, 1, 2, 13, 45, 7, 250000)),
    ("2026-01-02T13:45:00Z", datetime(2026, 1, 2, 13, 45)),
    ("2026-01-02T13:45:00+02:00", datetime(2026, 1, 2, 11, 45)),
    ("2026-01-02T01:30:00+0230", datetime(2026, 1, 1, 23, 0)),
    ("2026-01-02 20:00-05:00", datetime(2026, 1, 3, 1, 0)),
    ("  2026-01-02  ", datetime(2026, 1, 2)),
])
def test_text_forms_and_their_instants(text: str, instant: datetime) -> None:
    parsed = as_datetime(text, WHERE)
    assert parsed == instant
    assert parsed.tzinfo is None


@pytest.mark.parametrize("value, instant", [
    (date(2026, 1, 2), datetime(2026, 1, 2)),
    (datetime(2026, 1, 2, 13, 45), datetime(2026, 1, 2, 13, 45)),
    (datetime(2026, 1, 2, 13, 45, tzinfo=timezone(timedelta(hours=-3))),
     datetime(2026, 1, 2, 16, 45)),
])
def test_native_dates_and_datetimes(value: Any, instant: datetime) -> None:
    assert as_datetime(value, WHERE) == instant


@pytest.mark.parametrize("line, instant", [
    ("start: 2026-01-02", datetime(2026, 1, 2)),
    ("start: 2026-01-02 13:45:00", datetime(2026, 1, 2, 13, 45)),
    ("start: 2026-01-02T13:45:00+01:00", datetime(2026, 1, 2, 12, 45)),
    ("start: 2026-01-02 13:45", datetime(2026, 1, 2, 13, 45)),  # not a YAML timestamp
    ("start: 1/2/2026", datetime(2026, 1, 2)),
])
def test_yaml_values(line: str, instant: datetime) -> None:
    assert as_datetime(parse_yaml(line, "competition.yaml")["start"], WHERE) == instant


@pytest.mark.parametrize("value", ["tomorrow", "someday", "", "2026-13-45", "31/31/2026",
                                   20260102, 1.5, [2026, 1, 2], True])
def test_unparseable_values_name_the_field_and_the_value(value: Any) -> None:
    with pytest.raises(BundleError) as caught:
        as_datetime(value, "phases[1].end")
    assert str(caught.value) == (f"competition.yaml: phases[1].end: {value!r} is not a date "
                                 "(use YYYY-MM-DD or YYYY-MM-DD HH:MM:SS, UTC)")


def test_a_month_day_year_bundle_loads_with_exact_instants(tmp_path: Path) -> None:
    source = make_bundle(tmp_path / "src", phases=2, phase_extra=[
        {"start": "1/2/2026", "end": "3-4-2026 12:30"}, {"start": "Mar 4 2026 12:30"}])
    staging = tmp_path / "staging"
    staging.mkdir()
    spec = load_bundle(source, staging)
    assert [(p.start, p.end) for p in spec.phases] == [
        (datetime(2026, 1, 2), datetime(2026, 3, 4, 12, 30)),
        (datetime(2026, 3, 4, 12, 30), None)]


def test_overlapping_phases_in_other_forms_are_refused(tmp_path: Path) -> None:
    source = make_bundle(tmp_path / "src", phases=2, phase_extra=[
        {"start": "1/2/2026", "end": "3/4/2026"}, {"start": "2026-03-04T01:00:00+02:00"}])
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(BundleError) as caught:
        load_bundle(source, staging)
    assert str(caught.value) == (
        "competition.yaml: phases overlap: 'Phase 1' (phases[1]) starts 2026-03-03 23:00:00, "
        "before 'Phase 0' (phases[0]) ends 2026-03-04 00:00:00")


def test_phase_overlap_is_the_one_check() -> None:
    first, second = datetime(2026, 1, 1), datetime(2026, 2, 1)
    assert phase_overlap([("phases[0]", "A", first, second),
                          ("phases[1]", "B", second, None)]) is None
    assert phase_overlap([("phases[0]", "A", first, None),
                          ("phases[1]", "B", second, None)]) == (
        "phases overlap: 'B' (phases[1]) starts 2026-02-01 00:00:00, but 'A' (phases[0]) "
        "has no end")
