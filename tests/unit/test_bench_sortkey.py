"""The byte keys the database ranks by order entries exactly as the ranking function."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

import pytest

from scitq_bench.bench import ranking
from scitq_bench.bench.sortkey import encoder, value_bytes

SPECIAL = [0.0, -0.0, 1e-300, -1e-300, 1.0, -1.0, 2.5, -2.5, 1e300, -1e300, math.inf,
           -math.inf, None, math.nan]


def test_value_bytes_order_like_floats():
    values = sorted(v for v in SPECIAL if v is not None and v == v)
    encoded = [value_bytes(v) for v in values]
    assert encoded == sorted(encoded)
    assert value_bytes(0.0) == value_bytes(-0.0)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("tasks", [("0",), ("0", "1", "2")])
def test_byte_order_is_the_ranking_order(seed, tasks):
    rng = random.Random(seed)
    columns = tuple(ranking.Column(key=f"c{i}", title=f"C{i}", index=i,
                                   sorting=rng.choice(["asc", "desc"])) for i in range(4))
    board = ranking.Board(key="b", title="B", rule="Force_Latest_Multiple", columns=columns,
                          primary_index=rng.randrange(4), task_keys=tasks)
    start = datetime(2024, 1, 1)
    entries = []
    for i in range(300):
        scores = {task: {c.key: rng.choice(SPECIAL + [rng.choice([1.0, 2.0, 3.0])] * 6)
                         for c in columns if rng.random() > 0.1} for task in tasks}
        entries.append(ranking.Entry(
            submission_id=rng.randrange(1, 10**6) * 1000 + i, owner=str(rng.randrange(5)),
            submitted_at=start + timedelta(seconds=rng.randrange(50)), scores=scores))
    expected = [row.entry.submission_id for row in ranking.rank(board, entries)]
    encode = encoder(board)
    assert [e.submission_id for e in sorted(entries, key=encode)] == expected
