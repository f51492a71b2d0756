"""Prepared statements on PostgreSQL: marked statements a connection repeats run as
EXECUTE, with the same results; what cannot be prepared runs as text without spoiling
its transaction; unmarked statements are never prepared."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Integer, bindparam, column, literal_column, select, table, text

from scitq_bench.server import prepared
from scitq_bench.server.db import Database
from scitq_bench.server.lazybegin import LazyBeginCursor
from scitq_bench.server.prepared import hot
from tests.conftest import fresh_database

THRESHOLD = prepared.DEFAULT_THRESHOLD
ITEM = table("item", column("id", Integer), column("n", Integer))


@pytest.fixture
def db(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    with fresh_database("postgresql", tmp_path, request) as url:
        database = Database(url, pool_size=1)  # one connection: what it prepared is seen
        with database.write() as session:
            session.execute(text("CREATE TABLE item (id integer PRIMARY KEY, n integer)"))
            session.execute(text("INSERT INTO item SELECT g, g * 10 FROM generate_series(1, 5) g"))
        try:
            yield database
        finally:
            database.dispose()


def prepared_here(session: Any) -> list[str]:
    return list(session.execute(text(
        "SELECT statement FROM pg_prepared_statements WHERE name LIKE 'sb\\_%'")).scalars())


def test_a_repeated_statement_is_prepared_once_and_answers_the_same(db: Database) -> None:
    by_id = hot(select(ITEM.c.n).where(ITEM.c.id == bindparam("i")))
    answers = []
    for i in [1, 2, 3, 4, 5, 1]:
        with db.read() as session:
            answers.append(session.execute(by_id, {"i": i}).scalar_one())
    assert answers == [10, 20, 30, 40, 50, 10]
    with db.read() as session:
        statements = prepared_here(session)
    assert len(statements) == 1 and "$1" in statements[0] and "FROM item" in statements[0]


def test_updates_count_their_rows_when_prepared(db: Database) -> None:
    bump = hot(ITEM.update().where(ITEM.c.id >= bindparam("low")).values(n=ITEM.c.n + 1))
    counts = []
    for low in [5, 4, 3, 2]:
        with db.write() as session:
            counts.append(session.execute(bump, {"low": low}).rowcount)
    assert counts == [1, 2, 3, 4]
    with db.read() as session:
        assert session.execute(select(ITEM.c.n).order_by(ITEM.c.id)).scalars().all() == [
            10, 21, 32, 43, 54]
        assert any("UPDATE item" in s for s in prepared_here(session))


def test_a_statement_postgresql_cannot_prepare_runs_as_text_in_its_transaction(
        db: Database) -> None:
    # unknown + unknown: PostgreSQL cannot choose the operator, so PREPARE fails; run
    # as text, the values are integers
    untyped = hot(text("SELECT :a + :b AS v"))
    for value in range(THRESHOLD + 2):
        with db.write() as session:
            session.execute(ITEM.insert().values(id=100 + value, n=value))
            assert session.execute(untyped, {"a": value, "b": 1}).scalar_one() == value + 1
    with db.read() as session:
        assert session.execute(select(ITEM.c.id).where(ITEM.c.id >= 100)).scalars().all() == [
            100, 101, 102, 103, 104]
        assert not any("AS v" in s for s in prepared_here(session))


def test_percent_signs_survive_preparation(db: Database) -> None:
    # a percent sign in the text (doubled for psycopg2) and in a parameter's name
    like = hot(select(ITEM.c.id).where(ITEM.c.n >= bindparam("n"),
                                       literal_column("'5%'") == bindparam("5%")))
    answers = set()
    for _ in range(THRESHOLD + 1):
        with db.read() as session:
            answers.add(tuple(session.execute(like, {"n": 40, "5%": "5%"}).scalars()))
    assert answers == {(4, 5)}
    with db.read() as session:
        assert any("'5%'" in s for s in prepared_here(session))


def test_unmarked_statements_are_never_prepared(db: Database) -> None:
    """A parameter alone in a select list is typed text once prepared: the integer
    would come back as a string. Unmarked, it stays an integer every time."""
    in_select_list = select(bindparam("v", type_=Integer).label("v"))
    for _ in range(THRESHOLD + 2):
        with db.read() as session:
            assert session.execute(in_select_list, {"v": 7}).scalar_one() == 7
    with db.read() as session:
        assert prepared_here(session) == []


def test_a_new_connection_prepares_again(db: Database) -> None:
    by_id = hot(select(ITEM.c.n).where(ITEM.c.id == bindparam("i")))
    for _ in range(THRESHOLD + 1):
        with db.read() as session:
            session.execute(by_id, {"i": 3}).scalar_one()
    db.writer.dispose()  # the pool's connection is replaced: nothing is prepared there
    for _ in range(THRESHOLD + 1):
        with db.read() as session:
            assert session.execute(by_id, {"i": 3}).scalar_one() == 30
    with db.read() as session:
        assert len(prepared_here(session)) == 1


def test_turned_off_nothing_is_prepared(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    with fresh_database("postgresql", tmp_path, request) as url:
        database = Database(url, pool_size=1, prepare=False)
        with database.write() as session:
            session.execute(text("CREATE TABLE item (id integer PRIMARY KEY, n integer)"))
        try:
            for _ in range(THRESHOLD + 2):
                with database.read() as session:
                    statement = hot(select(ITEM.c.id).where(ITEM.c.id == bindparam("i")))
                    assert session.execute(statement, {"i": 7}).scalar_one_or_none() is None
            with database.read() as session:
                assert prepared_here(session) == []
        finally:
            database.dispose()


def test_long_in_lists_are_not_prepared(db: Database) -> None:
    """A plan is kept per prepared text: a list as long as a bulk operation's is rare and
    stays as text; a short one is prepared."""
    by_ids = hot(select(ITEM.c.n).where(ITEM.c.id.in_(bindparam("ids", expanding=True))))
    long_list = list(range(1, prepared.MAX_PARAMETERS + 2))
    for _ in range(THRESHOLD + 1):
        with db.read() as session:
            assert sorted(session.execute(by_ids, {"ids": long_list}).scalars()) == [
                10, 20, 30, 40, 50]
            assert session.execute(by_ids, {"ids": [2]}).scalars().all() == [20]
    with db.read() as session:
        statements = prepared_here(session)
    assert len(statements) == 1 and "IN ($1)" in statements[0]


def test_an_integer_past_the_columns_range_runs_as_text(db: Database) -> None:
    """Prepared, the id parameter is an ``integer``: 2**40 would fail there. Such a
    run goes as text and simply matches nothing; the next runs use the prepared form."""
    by_id = hot(select(ITEM.c.n).where(ITEM.c.id == bindparam("i")))
    for _ in range(THRESHOLD + 1):
        with db.read() as session:
            assert session.execute(by_id, {"i": 4}).scalar_one() == 40
    with db.read() as session:
        assert session.execute(by_id, {"i": 2**40}).scalar_one_or_none() is None
        assert session.execute(by_id, {"i": 5}).scalar_one() == 50
        assert len(prepared_here(session)) == 1


def test_a_marked_executemany_runs_prepared_in_pages_of_rows(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    with db.write() as session:
        session.execute(text("INSERT INTO item SELECT g, g * 10 FROM generate_series(6, 250) g"))
    bump = hot(ITEM.update().where(ITEM.c.id == bindparam("i")).values(n=bindparam("n")))
    sent: list[str] = []
    execute = LazyBeginCursor.execute

    def spy(cursor: Any, query: Any, params: Any = None) -> None:
        sent.append(query.decode() if isinstance(query, bytes) else str(query))
        execute(cursor, query, params)

    monkeypatch.setattr(LazyBeginCursor, "execute", spy)
    for round_ in range(THRESHOLD + 1):
        sent.clear()
        with db.write() as session:
            session.execute(bump, [{"i": i, "n": i + round_} for i in range(1, 251)])
    # the rows go in pages of one round trip each, not one each; by now as EXECUTE
    pages = [q for q in sent if "item" in q or "EXECUTE" in q]
    assert len(pages) == 3, sent
    assert all(q.count("EXECUTE sb_") == (100 if i < 2 else 50) for i, q in enumerate(pages))
    with db.read() as session:
        values = session.execute(select(ITEM.c.n).order_by(ITEM.c.id)).scalars().all()
        assert values == [i + THRESHOLD for i in range(1, 251)]
        assert any("UPDATE item" in s for s in prepared_here(session))
