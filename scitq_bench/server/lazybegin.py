"""PostgreSQL transactions whose BEGIN travels with their first statement.

psycopg2 opens each transaction with a round trip of its own: it sends ``BEGIN`` and
waits for the answer before the first statement. On the workers' hot path (a report,
a heartbeat: one to six small statements per transaction) that was one round trip in
six, each costing the API process a wait on its socket and PostgreSQL a wake-up.

Here the driver's connection runs in autocommit mode and keeps the transaction itself:
the first statement after a commit or a rollback goes as ``BEGIN;`` followed by the
statement, in one query (the simple query protocol psycopg2 uses runs both, and the
cursor gets the statement's result); ``commit`` and ``rollback`` send ``COMMIT`` and
``ROLLBACK`` when a transaction is open, and nothing otherwise, as psycopg2's own do.
SQLAlchemy sees a DBAPI connection that behaves as usual.

Not for named (server-side) cursors: psycopg2 refuses them on a connection in
autocommit mode, so the server reads large results in pages instead.
"""

from __future__ import annotations

from typing import Any, cast

import psycopg2.extensions
from psycopg2.sql import Composable

BEGIN = "BEGIN;"
Query = str | bytes | Composable


class LazyBeginConnection(psycopg2.extensions.connection):
    """A psycopg2 connection that sends BEGIN with the first statement of a
    transaction (pass it as ``connection_factory``)."""

    def __init__(self, dsn: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(dsn, *args, **kwargs)
        self.autocommit = True  # psycopg2 sends no BEGIN of its own
        self.cursor_factory = LazyBeginCursor
        self.in_transaction = False  # a BEGIN was sent and no COMMIT/ROLLBACK since

    def commit(self) -> None:
        self._end("COMMIT")

    def rollback(self) -> None:
        self._end("ROLLBACK")

    def begin_now(self) -> None:
        """Open the transaction with a round trip of its own (for calls that cannot
        carry it, such as ``executemany``)."""
        if not self.in_transaction:
            self._run(BEGIN)
            self.in_transaction = True

    def _end(self, command: str) -> None:
        if not self.in_transaction:
            return
        # whatever the answer, the transaction is over: a COMMIT that fails rolls back
        self.in_transaction = False
        self._run(command)

    def _run(self, command: str) -> None:
        # the plain cursor class: this command must not open a transaction itself
        with psycopg2.extensions.cursor(self) as cursor:
            cursor.execute(command)


class LazyBeginCursor(psycopg2.extensions.cursor):
    """Sends ``BEGIN;`` ahead of the statement that opens its connection's
    transaction."""

    def execute(self, query: Query, vars: Any = None) -> None:  # noqa: A002 - DBAPI's name
        connection = cast(LazyBeginConnection, self.connection)
        if not connection.in_transaction:
            query = _after_begin(query, self)
            connection.in_transaction = True  # ended by commit or rollback, even if this fails
        super().execute(query, vars)

    def executemany(self, query: Query, vars_list: Any) -> None:
        cast(LazyBeginConnection, self.connection).begin_now()
        super().executemany(query, vars_list)


def _after_begin(query: Query, cursor: Any) -> str | bytes:
    if isinstance(query, Composable):
        query = query.as_string(cursor)
    return BEGIN.encode() + query if isinstance(query, bytes) else BEGIN + query


def opens_transactions(connection: Any) -> bool:
    """True when every statement run on ``connection`` runs inside a transaction (a
    connection of this module's, or psycopg2's own outside autocommit mode)."""
    return isinstance(connection, LazyBeginConnection) or not connection.autocommit
