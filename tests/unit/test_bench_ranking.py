from __future__ import annotations

import csv
import io
import itertools
import math
import random
from datetime import datetime, timedelta, timezone

import pytest

from scitq_bench.bench.ranking import (
    RULES,
    Board,
    Column,
    Entry,
    Row,
    compute_columns,
    export_csv,
    format_score,
    rank,
    select,
    sort_key,
)

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
NAN = float("nan")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def entry(submission_id: int, scores: dict, *, owner: str | None = "alice", minute: float = 0,
          selected: bool = False, task: str | None = "0") -> Entry:
    """An entry; ``scores`` is one task's columns unless ``task`` is None (then it is
    already task key -> column key -> value)."""
    return Entry(submission_id, owner, at(minute), scores if task is None else {task: scores},
                 selected)


def board(*columns: Column, rule: str = "Force_Latest_Multiple", **options) -> Board:
    return Board("main", "Results", rule, columns, **options)


ACC = Column("acc", "Accuracy", 0, "desc")
ERR = Column("err", "Error", 1, "asc")
TIME = Column("time", "Duration", 2, "asc")


def ids(rows: list[Row]) -> list[int]:
    return [row.entry.submission_id for row in rows]


def ranked_ids(b: Board, entries: list[Entry]) -> list[int]:
    rows = rank(b, entries)
    assert [row.rank for row in rows] == list(range(1, len(rows) + 1))
    return ids(rows)


# --- ordering ----------------------------------------------------------------------


def test_primary_column_first_each_in_its_direction() -> None:
    b = board(ACC, ERR)
    entries = [entry(1, {"acc": 0.5, "err": 1}), entry(2, {"acc": 0.9, "err": 9}),
               entry(3, {"acc": 0.7, "err": 0})]
    assert ranked_ids(b, entries) == [2, 3, 1]  # larger accuracy first, error ignored
    b = board(ACC, ERR, primary_index=1)
    assert ranked_ids(b, entries) == [3, 1, 2]  # smaller error first


def test_ties_continue_left_to_right_in_index_order() -> None:
    # columns declared out of order: index order decides, not declaration order
    b = board(TIME, ERR, ACC)
    entries = [
        entry(1, {"acc": 0.9, "err": 2, "time": 1}),
        entry(2, {"acc": 0.9, "err": 1, "time": 9}),
        entry(3, {"acc": 0.9, "err": 1, "time": 3}),
        entry(4, {"acc": 0.8, "err": 0, "time": 0}),
    ]
    assert ranked_ids(b, entries) == [3, 2, 1, 4]


def test_primary_not_lowest_then_others_in_index_order() -> None:
    # primary is TIME (index 2); then ACC (index 0), then ERR (index 1)
    b = board(ACC, ERR, TIME, primary_index=2)
    entries = [
        entry(1, {"acc": 0.1, "err": 5, "time": 1}),
        entry(2, {"acc": 0.9, "err": 5, "time": 1}),
        entry(3, {"acc": 0.9, "err": 4, "time": 1}),
        entry(4, {"acc": 1.0, "err": 0, "time": 2}),
    ]
    assert ranked_ids(b, entries) == [3, 2, 1, 4]


def test_equal_scores_earliest_submission_wins_then_lowest_id() -> None:
    b = board(ACC)
    entries = [entry(5, {"acc": 0.5}, minute=2), entry(9, {"acc": 0.5}, minute=1),
               entry(7, {"acc": 0.5}, minute=1), entry(1, {"acc": 0.4}, minute=0)]
    rows = rank(b, entries)
    assert ids(rows) == [7, 9, 5, 1]
    assert [row.rank for row in rows] == [1, 2, 3, 4]  # distinct ranks even for ties


def test_hidden_columns_still_rank() -> None:
    hidden = Column("secret", "Secret", 1, "desc", hidden=True)
    b = board(ACC, hidden)
    entries = [entry(1, {"acc": 0.5, "secret": 1}), entry(2, {"acc": 0.5, "secret": 2})]
    assert ranked_ids(b, entries) == [2, 1]


def test_no_columns_rank_by_time() -> None:
    b = board()
    assert ranked_ids(b, [entry(1, {}, minute=5), entry(2, {}, minute=1)]) == [2, 1]


def test_integer_and_float_scores_compare_as_numbers() -> None:
    b = board(ERR)
    assert ranked_ids(b, [entry(1, {"err": 2}), entry(2, {"err": 1.5}),
                          entry(3, {"err": True})]) == [3, 2, 1]


@pytest.mark.parametrize("sorting", ["asc", "desc"])
@pytest.mark.parametrize("missing", [None, NAN, "absent", "no task"])
def test_missing_never_above_real(sorting: str, missing) -> None:
    column = Column("x", "X", 0, sorting)
    worst = math.inf if sorting == "asc" else -math.inf
    if missing == "absent":
        hole = entry(1, {}, minute=0)
    elif missing == "no task":
        hole = entry(1, {}, task=None, minute=0)
    else:
        hole = entry(1, {"x": missing}, minute=0)
    # the missing one is submitted first and has the lowest id: it still comes last,
    # even behind the worst possible real value
    real = [entry(2, {"x": 0.5}, minute=1), entry(3, {"x": worst}, minute=2),
            entry(4, {"x": -3.0}, minute=3)]
    order = ranked_ids(board(column), [hole, *real])
    assert order[-1] == 1
    assert order[-2] == 3


def test_missing_in_primary_column_loses_even_with_better_secondary() -> None:
    b = board(ACC, ERR)
    entries = [entry(1, {"err": 0.0}, minute=0), entry(2, {"acc": 0.1, "err": 9})]
    assert ranked_ids(b, entries) == [2, 1]
    # two missing primaries: the secondary column decides between them
    entries = [entry(1, {"err": 5}), entry(2, {"err": 1}), entry(3, {"acc": 0.0, "err": 9})]
    assert ranked_ids(b, entries) == [3, 2, 1]


def test_sort_key_is_a_flat_tuple_without_none() -> None:
    key = sort_key(board(ACC, ERR))
    value = key(entry(3, {"acc": 0.5}))
    assert None not in value
    assert value[:4] == (-0.5, 0, math.inf, 1)
    assert value[4:] == (T0, 3)


def test_rank_agrees_with_a_reference_ordering() -> None:
    # a slow, obviously correct comparison against the fast keys, on random data
    rng = random.Random(7)
    cols = (Column("a", "A", 0, "desc"), Column("b", "B", 1, "asc"),
            Column("c", "C", 2, "desc", hidden=True))
    b = board(*cols, primary_index=1, task_keys=("t1", "t2"))
    choices = [0.0, 1.0, 2.0, NAN, None, math.inf, -math.inf]
    entries = []
    for i in range(300):
        scores = {task: {c.key: v for c in cols if (v := rng.choice(choices)) is not None}
                  for task in ("t1", "t2") if rng.random() < 0.9}
        entries.append(Entry(i, None, at(rng.randrange(5)), scores))

    def reference(e: Entry) -> tuple:
        parts = []
        for column in (cols[1], cols[0], cols[2]):
            for task in ("t1", "t2"):
                v = e.scores.get(task, {}).get(column.key)
                real = v is not None and not math.isnan(v)
                parts.append((0, -v if column.sorting == "desc" else v) if real else (1, 0))
        return (*parts, e.submitted_at, e.submission_id)

    assert ids(rank(b, entries)) == [e.submission_id for e in sorted(entries, key=reference)]


def test_multi_task_columns_compare_task_by_task_within_a_column() -> None:
    b = board(ACC, ERR, task_keys=("t1", "t2"))
    entries = [
        entry(1, {"t1": {"acc": 0.5, "err": 0}, "t2": {"acc": 0.9, "err": 0}}, task=None),
        entry(2, {"t1": {"acc": 0.5, "err": 9}, "t2": {"acc": 0.95, "err": 9}}, task=None),
        entry(3, {"t1": {"acc": 0.6, "err": 9}, "t2": {"acc": 0.1, "err": 9}}, task=None),
        entry(4, {"t1": {"acc": 0.5, "err": 1}, "t2": {"acc": 0.9, "err": 0}}, task=None),
    ]
    # acc/t1, then acc/t2, then err/t1, then err/t2
    assert ranked_ids(b, entries) == [3, 2, 1, 4]


# --- computed columns --------------------------------------------------------------


A = Column("a", "A", 0, "desc")
B = Column("b", "B", 1, "desc")
C = Column("c", "C", 2, "asc")


@pytest.mark.parametrize("computation,expected", [
    ("sum", 6.0), ("avg", 2.0), ("min", 1.0), ("max", 3.0),
])
def test_computations(computation: str, expected: float) -> None:
    total = Column("t", "T", 3, "desc", computation=computation, computation_indexes=(0, 1, 2))
    result = compute_columns([A, B, C, total], {"a": 1.0, "b": 2.0, "c": 3.0})
    assert result == {"a": 1.0, "b": 2.0, "c": 3.0, "t": pytest.approx(expected)}


def test_wiki_example_max_of_two() -> None:
    best = Column("max_accuracy", "Max Accuracy", 2, "desc", computation="max",
                  computation_indexes=[0, 1])
    cols = [Column("accuracy_1", "Accuracy Score 1", 0, "desc"),
            Column("accuracy_2", "Accuracy Score 2", 1, "desc"), best,
            Column("duration", "Duration", 3, "asc")]
    scores = {"accuracy_1": 0.5, "accuracy_2": 0.75, "duration": 123.45}
    assert compute_columns(cols, scores) == {**scores, "max_accuracy": 0.75}


@pytest.mark.parametrize("hole", [{"b": None}, {"b": NAN}, {}])
def test_computed_column_missing_when_an_input_is(hole: dict) -> None:
    total = Column("t", "T", 3, "desc", computation="sum", computation_indexes=(0, 1))
    result = compute_columns([A, B, total], {"a": 1.0, **hole})
    assert "t" not in result
    assert result["a"] == 1.0


def test_computed_value_replaces_a_written_one() -> None:
    total = Column("t", "T", 3, "desc", computation="sum", computation_indexes=(0, 1))
    assert compute_columns([A, B, total], {"a": 1, "b": 2, "t": 99})["t"] == 3
    assert "t" not in compute_columns([A, B, total], {"a": 1, "t": 99})


def test_chained_computed_columns_in_dependency_order() -> None:
    # declared (and indexed) before its own input: dependency order, not index order
    outer = Column("outer", "Outer", 0, "desc", computation="max", computation_indexes=(3, 2))
    inner = Column("inner", "Inner", 3, "desc", computation="avg", computation_indexes=(1, 2))
    x = Column("x", "X", 1, "desc")
    y = Column("y", "Y", 2, "desc")
    result = compute_columns((outer, inner, x, y), {"x": 4.0, "y": 1.0})
    assert result["inner"] == 2.5
    assert result["outer"] == 2.5
    missing = compute_columns((outer, inner, x, y), {"y": 1.0})
    assert "inner" not in missing and "outer" not in missing


def test_computed_columns_do_not_change_the_input() -> None:
    total = Column("t", "T", 3, "desc", computation="sum", computation_indexes=(0, 1))
    scores = {"a": 1.0, "b": 2.0}
    compute_columns([A, B, total], scores)
    assert scores == {"a": 1.0, "b": 2.0}


@pytest.mark.parametrize("columns", [
    # p <-> q
    (Column("p", "P", 0, "desc", computation="sum", computation_indexes=(1,)),
     Column("q", "Q", 1, "desc", computation="sum", computation_indexes=(0,))),
    # self
    (Column("p", "P", 0, "desc", computation="sum", computation_indexes=(0,)),),
    # p -> q -> r -> p, beside a plain column
    (A, Column("p", "P", 1, "desc", computation="min", computation_indexes=(2, 0)),
     Column("q", "Q", 2, "desc", computation="max", computation_indexes=(3,)),
     Column("r", "R", 3, "desc", computation="avg", computation_indexes=(1,))),
])
def test_cycles_refused(columns: tuple[Column, ...]) -> None:
    with pytest.raises(ValueError, match="cycle"):
        compute_columns(columns, {"a": 1.0})
    with pytest.raises(ValueError, match="cycle"):
        board(*columns)


@pytest.mark.parametrize("make,fragment", [
    (lambda: Column("a", "A", 0, "up"), "sorting"),
    (lambda: Column("a", "A", 0, "asc", computation="median", computation_indexes=(1,)),
     "unknown computation"),
    (lambda: Column("a", "A", 0, "asc", computation="sum"), "needs computation_indexes"),
    (lambda: Column("a", "A", 0, "asc", computation_indexes=(1,)), "without a computation"),
    (lambda: Column("a", "A", 0, "asc", precision=-1), "precision"),
    (lambda: board(A, rule="Sometimes"), "unknown submission rule"),
    (lambda: board(A, Column("a", "Again", 1, "asc")), "key 'a'"),
    (lambda: board(A, Column("b", "B", 0, "asc")), "index 0"),
    (lambda: board(A, primary_index=4), "primary index"),
    (lambda: board(A, Column("s", "S", 1, "asc", computation="sum",
                             computation_indexes=(0, 7))), "index 7"),
    (lambda: board(A, task_keys=()), "no task keys"),
    (lambda: board(A, task_keys=("x", "x")), "duplicate task keys"),
])
def test_invalid_definitions_refused(make, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        make()


# --- submission rules --------------------------------------------------------------


def rule_entries() -> list[Entry]:
    """Three owners (alice, bob, the organizers as None), several entries each."""
    return [
        entry(1, {"acc": 0.9}, owner="alice", minute=0),
        entry(2, {"acc": 0.5}, owner="alice", minute=5, selected=True),
        entry(3, {"acc": 0.7}, owner="alice", minute=9),
        entry(4, {"acc": 0.6}, owner="bob", minute=1, selected=True),
        entry(5, {"acc": 0.8}, owner="bob", minute=2, selected=True),
        entry(6, {"acc": 0.4}, owner="bob", minute=3),
        entry(7, {"acc": 0.95}, owner=None, minute=4),
        entry(8, {"acc": 0.3}, owner=None, minute=6),
        entry(9, {}, owner="carol", minute=7),  # a failed run: no scores
    ]


@pytest.mark.parametrize("rule,expected", [
    ("Force_Last", [3, 6, 8, 9]),  # latest per owner, then ranked (missing last)
    ("Force_Best", [7, 1, 5, 9]),
    ("Force_Latest_Multiple", [7, 1, 5, 3, 4, 2, 6, 8, 9]),
    ("Add", [5, 2]),  # bob marked two: the latest one
    ("Add_And_Delete", [5, 2]),
    ("Add_And_Delete_Multiple", [5, 4, 2]),
])
def test_rules(rule: str, expected: list[int]) -> None:
    b = board(ACC, rule=rule)
    assert ranked_ids(b, rule_entries()) == expected
    assert sorted(e.submission_id for e in select(b, rule_entries())) == sorted(expected)
    # select accepts any iterable, once
    assert sorted(e.submission_id for e in select(b, iter(rule_entries()))) == sorted(expected)


def test_every_rule_is_covered() -> None:
    assert set(RULES) == {"Add", "Add_And_Delete", "Add_And_Delete_Multiple", "Force_Last",
                          "Force_Latest_Multiple", "Force_Best"}


def test_force_last_same_instant_takes_highest_id() -> None:
    b = board(ACC, rule="Force_Last")
    entries = [entry(4, {"acc": 0.1}, minute=1), entry(3, {"acc": 0.9}, minute=1)]
    assert ranked_ids(b, entries) == [4]


def test_force_best_ties_keep_the_earliest() -> None:
    b = board(ACC, rule="Force_Best")
    entries = [entry(4, {"acc": 0.9}, minute=2), entry(3, {"acc": 0.9}, minute=1),
               entry(5, {"acc": 0.9}, minute=1)]
    assert ranked_ids(b, entries) == [3]


def test_none_owner_is_one_owner() -> None:
    b = board(ACC, rule="Force_Last")
    entries = [entry(1, {"acc": 0.9}, owner=None, minute=0),
               entry(2, {"acc": 0.1}, owner=None, minute=1),
               entry(3, {"acc": 0.5}, owner="None", minute=2)]  # a user named "None"
    assert ranked_ids(b, entries) == [3, 2]


def test_nothing_selected_leaves_add_boards_empty() -> None:
    entries = [entry(1, {"acc": 0.9}), entry(2, {"acc": 0.8}, owner="bob")]
    for rule in ("Add", "Add_And_Delete", "Add_And_Delete_Multiple"):
        assert rank(board(ACC, rule=rule), entries) == []
    assert rank(board(ACC), []) == []


# --- formatting and CSV ------------------------------------------------------------


@pytest.mark.parametrize("value,precision,expected", [
    (0.5, 2, "0.50"),
    (0.123456, 3, "0.123"),
    (2.675, 0, "3"),
    (123.45, 1, "123.5"),  # round half to even on the binary value: 123.45 is above
    (-1.5, 2, "-1.50"),
    (-0.001, 2, "0.00"),  # no negative zero
    (-0.0, 1, "0.0"),
    (7, 2, "7.00"),
    (1e20, 2, "100000000000000000000.00"),
    (math.inf, 2, "inf"),
    (None, 2, ""),
    (NAN, 2, ""),
])
def test_format_score(value, precision: int, expected: str) -> None:
    assert format_score(value, precision) == expected


def parse(text: str) -> list[list[str]]:
    assert text.endswith("\r\n")
    return list(csv.reader(io.StringIO(text, newline="")))


def test_csv_header_values_and_precision() -> None:
    b = board(ACC, Column("err", "Error", 1, "asc", precision=4),
              Column("secret", "Secret", 2, "desc", hidden=True))
    entries = [entry(1, {"acc": 0.91234, "err": 0.1, "secret": 5}, owner="alice", minute=1),
               entry(2, {"acc": 0.5, "secret": 6}, owner=None, minute=2)]
    rows = rank(b, entries)
    table = parse(export_csv(b, rows, include_hidden=False))
    assert table == [
        ["rank", "submission", "owner", "submitted_at", "Accuracy", "Error"],
        ["1", "1", "alice", at(1).isoformat(), "0.91", "0.1000"],
        ["2", "2", "organizers", at(2).isoformat(), "0.50", ""],
    ]
    table = parse(export_csv(b, rows, include_hidden=True, owner_names={None: "Staff"}))
    assert table[0][4:] == ["Accuracy", "Error", "Secret"]
    assert table[1][4:] == ["0.91", "0.1000", "5.00"]
    assert table[2][2:] == ["Staff", at(2).isoformat(), "0.50", "", "6.00"]


def test_csv_columns_in_index_order_not_ranking_order() -> None:
    b = board(ERR, ACC, primary_index=1)
    text = export_csv(b, rank(b, [entry(1, {"acc": 1, "err": 2})]), include_hidden=False)
    assert parse(text)[0][4:] == ["Accuracy", "Error"]


def test_csv_multi_task_groups() -> None:
    b = board(ACC, ERR, task_keys=("t1", "t2"))
    e = entry(1, {"t1": {"acc": 0.5, "err": 1.0}, "t2": {"acc": NAN}}, task=None)
    table = parse(export_csv(b, rank(b, [e]), include_hidden=False))
    assert table[0][4:] == ["t1/Accuracy", "t1/Error", "t2/Accuracy", "t2/Error"]
    assert table[1][4:] == ["0.50", "1.00", "", ""]


@pytest.mark.parametrize("values,expected", [
    ({"acc": -0.001, "err": -2.0}, ["0.00", "-2.00"]),
    ({"acc": None, "err": 3}, ["", "3.00"]),
    ({"err": math.inf}, ["", "inf"]),
    ({"acc": math.inf, "err": -math.inf}, ["inf", "-inf"]),
])
def test_csv_score_cells_match_format_score(values: dict, expected: list[str]) -> None:
    b = board(ACC, ERR)
    table = parse(export_csv(b, rank(b, [entry(1, values)]), include_hidden=False))
    assert table[1][4:] == expected


def test_csv_empty_board_and_no_columns() -> None:
    assert parse(export_csv(board(ACC), [], include_hidden=True)) == [
        ["rank", "submission", "owner", "submitted_at", "Accuracy"]]
    b = board(Column("h", "H", 0, "asc", hidden=True))
    table = parse(export_csv(b, rank(b, [entry(1, {"h": 1})]), include_hidden=False))
    assert table == [["rank", "submission", "owner", "submitted_at"],
                     ["1", "1", "alice", T0.isoformat()]]


@pytest.mark.parametrize("name,shown", [
    ("Smith, Jane", "Smith, Jane"),
    ('the "best" team', 'the "best" team'),
    ("two\nlines", "two\nlines"),
    ("carriage\rreturn", "carriage\rreturn"),
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
    ("+1", "'+1"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"),
    ("plain", "plain"),
    ("", ""),
])
def test_csv_quoting_and_formula_neutralisation(name: str, shown: str) -> None:
    title = Column("acc", name or "Accuracy", 0, "desc")
    b = board(title)
    rows = rank(b, [entry(1, {"acc": -0.5}, owner="u1")])
    table = parse(export_csv(b, rows, include_hidden=False, owner_names={"u1": name}))
    assert len(table) == 2
    assert table[1][2] == shown  # the owner's name
    assert table[0][4] == (shown or "Accuracy")  # the column title
    assert table[1][4] == "-0.50"  # a number is never prefixed


def test_csv_task_keys_neutralised() -> None:
    b = board(ACC, task_keys=("=cmd", "ok"))
    assert parse(export_csv(b, [], include_hidden=False))[0][4:] == [
        "'=cmd/Accuracy", "ok/Accuracy"]


def test_csv_unknown_owner_shown_as_is() -> None:
    b = board(ACC)
    rows = rank(b, [entry(1, {"acc": 1}, owner="bob"), entry(2, {"acc": 0}, owner=None)])
    table = parse(export_csv(b, rows, include_hidden=False, owner_names={"alice": "A"}))
    assert [r[2] for r in table[1:]] == ["bob", "organizers"]


def test_csv_many_rows_round_trip() -> None:
    cols = (ACC, Column("err", "Err", 1, "asc", precision=3))
    b = board(*cols, task_keys=("a", "b"))
    rng = random.Random(3)
    entries = []
    for i, owner in zip(range(200), itertools.cycle(["x,y", "=z", None, "w"])):
        scores = {t: {c.key: round(rng.uniform(-1, 1), 4) for c in cols if rng.random() < 0.9}
                  for t in ("a", "b")}
        entries.append(Entry(i, owner, at(i), scores))
    rows = rank(b, entries)
    table = parse(export_csv(b, rows, include_hidden=True))
    assert len(table) == 201
    for row, line in zip(rows, table[1:], strict=True):
        assert line[:2] == [str(row.rank), str(row.entry.submission_id)]
        assert line[4:] == [format_score(row.entry.scores[t].get(c.key), c.precision)
                            for t in ("a", "b") for c in cols]


def test_without_the_z_format_option(monkeypatch: pytest.MonkeyPatch) -> None:
    # Python 3.10 has no 'z' option: negative zeros are then removed by hand
    from scitq_bench.bench import ranking

    monkeypatch.setattr(ranking, "_Z", "")
    assert format_score(-0.001, 2) == "0.00"
    assert format_score(-0.01, 2) == "-0.01"
    assert format_score(-10.0, 0) == "-10"
    b = board(ACC, ERR)
    rows = rank(b, [entry(1, {"acc": -0.001, "err": -0.5}), entry(2, {"acc": -5, "err": 0})])
    table = parse(export_csv(b, rows, include_hidden=False))
    assert [line[4:] for line in table[1:]] == [["0.00", "-0.50"], ["-5.00", "0.00"]]


def test_keys_with_odd_text_are_data_not_code() -> None:
    odd = ["x'); raise SystemExit('boom') #", 'a"b', "with space", "\\n", "é"]
    cols = [Column(k, k, i, "desc" if i % 2 else "asc") for i, k in enumerate(odd)]
    b = board(*cols, task_keys=("{t}", "t'2"))
    scores = {"{t}": {k: float(i) for i, k in enumerate(odd)}, "t'2": {odd[0]: 1.0}}
    other = {"{t}": {k: float(i) for i, k in enumerate(odd)}, "t'2": {odd[0]: 2.0}}
    entries = [entry(1, scores, task=None), entry(2, other, task=None)]
    assert ranked_ids(b, entries) == [1, 2]  # tie on task {t}; asc on t'2 decides


def test_wide_boards() -> None:
    cols = [Column(f"c{i}", f"C{i}", i, "asc") for i in range(60)]
    tasks = tuple(f"t{i}" for i in range(12))
    b = board(*cols, task_keys=tasks)
    first = {t: {c.key: 1.0 for c in cols} for t in tasks}
    second = {t: {c.key: 1.0 for c in cols} for t in tasks}
    second["t11"]["c59"] = 0.5  # only the very last (column, task) differs
    key = sort_key(b)
    assert len(key(entry(1, first, task=None))) == 60 * 12 * 2 + 2
    assert ranked_ids(b, [entry(1, first, task=None), entry(2, second, task=None)]) == [2, 1]
