"""The scan that spares most JSON bodies the walk of ``payload_problem``: it may find
suspects where there is no problem, never miss a body that has one."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scitq_bench.server.limits import BIG_MIN, ID_MAX, may_hold_a_problem, payload_problem

TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)  # NUL included
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-1000, max_value=1000),
    st.floats(allow_nan=True, allow_infinity=True),
)
VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=20,
)


def encodings(data: Any) -> list[bytes]:
    """The ways a client may write ``data`` that the API's parser reads."""
    return [json.dumps(data).encode(), json.dumps(data, ensure_ascii=False).encode(),
            json.dumps(data, separators=(",", ":")).encode(),
            json.dumps(data).encode("utf-16"), json.dumps(data).encode("utf-32-le")]


@given(VALUES)
@settings(max_examples=400, deadline=None)
def test_no_body_with_a_problem_escapes_the_scan(data):
    if payload_problem(data) is None:
        return
    for raw in encodings(data):
        assert json.loads(raw) is not None  # what the API would parse
        assert may_hold_a_problem(raw), raw


@pytest.mark.parametrize("value", ["a\x00b", ID_MAX + 1, BIG_MIN - 1, math.inf, -math.inf,
                                   math.nan, 1e308 * 10, {"k\x00": 1}, [[["\x00"]]]])
def test_each_kind_of_problem_is_a_suspect(value):
    assert payload_problem({"v": value}) is not None
    for raw in encodings({"v": value}):
        assert may_hold_a_problem(raw)


def test_an_ordinary_report_is_not_scanned_further():
    """A worker's report: ids, ages, statuses, stats, a float with an exponent."""
    body = {"events": [{"execution_id": 123456789 + i, "status": "succeeded", "age": 0.25,
                        "return_code": 0, "stats": {"load": 1.5e-3, "ram": 2.5e10}}
                       for i in range(200)]}
    raw = json.dumps(body).encode()
    assert payload_problem(body) is None and not may_hold_a_problem(raw)
    # the largest id that fits is no suspect either, the next digit count is
    assert not may_hold_a_problem(json.dumps({"id": 10 ** 17}).encode())
    assert may_hold_a_problem(json.dumps({"id": ID_MAX}).encode())


@pytest.mark.parametrize("raw", [b'{"a": 1e400}', b'{"a": -1E+309}', b'{"a": 1' + b"0" * 400 + b'.5}',
                                 b'{"a": "\\u0000"}', b'{"a\\u0000": 1}', b'{"a": -9223372036854775809}'])
def test_texts_a_client_writes_by_hand(raw):
    assert payload_problem(json.loads(raw)) is not None
    assert may_hold_a_problem(raw)
