"""Transactions whose BEGIN goes with their first statement (PostgreSQL): one round
trip fewer, and the same transactions as psycopg2's own: one per write, undone by a
rollback, after an error as after an exception, and nothing sent for an empty one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from scitq_bench.server.db import Database
from scitq_bench.server.lazybegin import LazyBeginConnection, opens_transactions
from tests.conftest import fresh_database

# the transaction started in the same message as the statement that reads this
SAME_MESSAGE = text("SELECT statement_timestamp() = transaction_timestamp()")
COUNT = text("SELECT count(*) FROM item")


@pytest.fixture
def db(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    with fresh_database("postgresql", tmp_path, request) as url:
        database = Database(url, pool_size=1)  # one connection, reused by every test step
        with database.write() as session:
            session.execute(text("CREATE TABLE item (id integer PRIMARY KEY)"))
        try:
            yield database
        finally:
            database.dispose()


def test_begin_travels_with_the_first_statement(db: Database) -> None:
    with db.write() as session:
        first = session.execute(SAME_MESSAGE).scalar_one()
        session.execute(text("SELECT pg_sleep(0.002)"))
        later = session.execute(SAME_MESSAGE).scalar_one()
        driver = session.connection().connection.dbapi_connection
    assert first is True  # psycopg2's own BEGIN, a message of its own, gives False
    assert later is False
    assert isinstance(driver, LazyBeginConnection) and opens_transactions(driver)


def test_the_statements_of_a_write_share_one_transaction(db: Database) -> None:
    with db.write() as session:
        ids = {session.execute(text("SELECT txid_current()")).scalar_one() for _ in range(3)}
    with db.write() as session:
        after = session.execute(text("SELECT txid_current()")).scalar_one()
    assert len(ids) == 1 and after not in ids


def test_a_rollback_undoes_the_write_and_the_connection_goes_on(db: Database) -> None:
    with pytest.raises(RuntimeError), db.write() as session:
        session.execute(text("INSERT INTO item VALUES (1)"))
        raise RuntimeError("the caller gave up")
    with pytest.raises(Exception, match="division by zero"), db.write() as session:
        session.execute(text("SELECT 1 / 0"))  # the statement that opened it fails
    with db.write() as session:
        session.execute(text("INSERT INTO item VALUES (2)"))
    with db.read() as session:
        assert session.execute(text("SELECT array_agg(id) FROM item")).scalar_one() == [2]


def test_executemany_opens_its_transaction_too(db: Database) -> None:
    with db.writer.connect() as connection:  # the driver's own executemany, first
        cursor = connection.connection.dbapi_connection.cursor()
        cursor.executemany("INSERT INTO item VALUES (%s)", [(1,), (2,), (3,)])
        connection.rollback()
    with db.read() as session:
        assert session.execute(COUNT).scalar_one() == 0


def test_an_empty_transaction_sends_nothing(db: Database,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(LazyBeginConnection, "_run", lambda _self, command: sent.append(command))
    with db.write() as session:
        session.connection()  # checked out, nothing run
        driver = session.connection().connection.dbapi_connection
    assert sent == [] and driver.in_transaction is False
    with db.write() as session:
        session.execute(text("SELECT 1"))
    assert sent == ["COMMIT"]
