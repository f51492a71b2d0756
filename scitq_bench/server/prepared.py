"""Server-side prepared statements for the hot path's statements.

psycopg2 sends every statement as text, and PostgreSQL parses and plans it each time:
on the workers' hot path (a report, a heartbeat: a few small statements each) planning
cost PostgreSQL about as much as running them. Statements marked with ``hot`` (the
execution option ``prepare=True``) are counted per connection; from the
``threshold``-th run of one text on a connection it is ``PREPARE``d there once, and each
later run becomes ``EXECUTE name(params)``. The parameters still go through psycopg2's
own quoting; nothing is built from values.

Marked statements only, not every statement: a parameter whose type PostgreSQL infers
as text (one in a select list) would come back as text once prepared, and a statement
whose best plan depends on its values is better planned each time (the claim, which
walks the queue past rows other claims hold: a generic plan of it was measured four
times slower).

An executemany of a marked statement (a group's execution moves, its contacts) runs
its ``EXECUTE`` in pages of ``PAGE_SIZE`` rows, one round trip each
(``psycopg2.extras.execute_batch``); psycopg2's own executemany sends each row on a
round trip of its own, parsed and planned there each time.

A run whose integer parameters do not all fit PostgreSQL's ``integer`` goes as text:
a prepared statement's parameters take their columns' types, and an id past the id
columns' range (still a valid 64-bit id to the API) would fail there, where as text it
simply matches no row.

A statement PostgreSQL cannot prepare (a parameter whose type it cannot infer) is run as
text from then on; inside a transaction the attempt is made under a savepoint, so the
transaction is not spoilt. Each connection keeps at most ``MAX_PER_CONNECTION``
prepared statements (the texts differ with the length of ``IN`` lists), none of more
than ``MAX_PARAMETERS`` parameters.

Not for pgbouncer in transaction mode, whose server connections change under a client
between transactions: ``SCITQ_BENCH_DATABASE_PREPARE=0`` turns this off
(docs/scaling.md).
"""

from __future__ import annotations

import hashlib
import re
import weakref
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.sql.base import Executable

from scitq_bench.server.lazybegin import opens_transactions
from scitq_bench.server.limits import INT_MAX, INT_MIN

StatementT = TypeVar("StatementT", bound=Executable)

DEFAULT_THRESHOLD = 3
OPTION = "prepare"  # the execution option that marks a statement (``hot``)
# each prepared statement keeps its plan in the server process of its connection: a
# few dozen per connection (the hot statements, and the few IN-list lengths they see)
MAX_PER_CONNECTION = 64
MAX_PARAMETERS = 64  # a long IN list is rare: not worth a plan kept for it
PAGE_SIZE = 100  # rows of an executemany sent in one round trip
# pyformat placeholders, and the doubled percent sign psycopg2 reads as one
# (SQLAlchemy's names for psycopg2 never hold a closing parenthesis)
_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s|%%")
_PREPARABLE = ("select", "insert", "update", "delete", "with")


@dataclass
class _ConnectionStatements:
    """What one database connection has seen and prepared."""

    seen: dict[str, int] = field(default_factory=dict)
    # statement text -> the EXECUTE that runs its prepared form
    prepared: dict[str, str] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)


def hot(statement: StatementT) -> StatementT:
    """``statement``, marked to be prepared on the connections that repeat it."""
    return statement.execution_options(**{OPTION: True})


def install(engine: Engine, threshold: int = DEFAULT_THRESHOLD) -> None:
    """Prepare ``engine``'s repeated statements (PostgreSQL with psycopg2 only)."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg2":
        return
    import psycopg2.extras

    # keyed by the driver's connection itself: a connection the pool replaced starts
    # with nothing prepared
    connections: weakref.WeakKeyDictionary[Any, _ConnectionStatements] = (
        weakref.WeakKeyDictionary())

    # at the driver's call, after every before_cursor_execute listener: those (the
    # metrics, tests counting statements) see the statement as written
    @event.listens_for(engine, "do_execute")
    def _execute(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        if (not isinstance(parameters, dict) or context is None
                or context.execution_options.get(OPTION) is not True):
            return False  # the dialect runs it as usual
        cursor.execute(*rewrite(state_of(cursor), cursor, statement, parameters, threshold))
        return True

    # a marked statement run for many rows (a group's moves, one row per execution):
    # its prepared form, the rows sent in pages of one round trip each (psycopg2's
    # ``execute_batch``), where psycopg2's own executemany sends each row on its own
    # round trip, to be parsed and planned each time. The result's rowcount is then
    # that of the last row only.
    @event.listens_for(engine, "do_executemany")
    def _executemany(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        if (context is None or context.execution_options.get(OPTION) is not True
                or not parameters
                or not all(isinstance(p, dict) and _fits_integer_columns(p) for p in parameters)):
            return False
        query, _ = rewrite(state_of(cursor), cursor, statement, parameters[0], threshold)
        psycopg2.extras.execute_batch(cursor, query, parameters, page_size=PAGE_SIZE)
        return True

    def state_of(cursor: Any) -> _ConnectionStatements:
        state = connections.get(cursor.connection)
        if state is None:
            state = connections[cursor.connection] = _ConnectionStatements()
        return state


def rewrite(state: _ConnectionStatements, cursor: Any, statement: str,
            parameters: dict[str, Any], threshold: int) -> tuple[str, Any]:
    """``statement`` as it is to run on ``cursor``'s connection: as is, or as the
    ``EXECUTE`` of its prepared form (prepared now if this run reaches the threshold)."""
    if not _fits_integer_columns(parameters):
        return statement, parameters
    execute = state.prepared.get(statement)
    if execute is not None:
        return execute, parameters
    if statement in state.refused or not _preparable(statement):
        return statement, parameters
    seen = state.seen.get(statement, 0) + 1
    if seen < threshold or len(state.prepared) >= MAX_PER_CONNECTION:
        if len(state.seen) < 4 * MAX_PER_CONNECTION:
            state.seen[statement] = seen
        return statement, parameters
    state.seen.pop(statement, None)
    names = _parameter_names(statement)
    name = _prepare(cursor, statement, names) if len(names) <= MAX_PARAMETERS else None
    if name is None:
        if len(state.refused) < 4 * MAX_PER_CONNECTION:  # bounded, as ``seen`` is
            state.refused.add(statement)
        return statement, parameters
    arguments = ", ".join(f"%({n})s" for n in names)
    execute = state.prepared[statement] = (
        f"EXECUTE {name} ({arguments})" if names else f"EXECUTE {name}")
    return execute, parameters


def _fits_integer_columns(parameters: dict[str, Any]) -> bool:
    return all(INT_MIN <= value <= INT_MAX for value in parameters.values()
               if type(value) is int)


def _preparable(statement: str) -> bool:
    head = statement.lstrip()[:6].lower()
    return head.startswith(_PREPARABLE)


def _parameter_names(statement: str) -> list[str]:
    """The statement's distinct parameters, in the order of their first use."""
    names: dict[str, None] = {}
    for match in _PLACEHOLDER.finditer(statement):
        if match.group(1):
            names.setdefault(match.group(1))
    return list(names)


def _numbered(statement: str, names: list[str]) -> str:
    """The statement with ``$n`` for each pyformat parameter (PREPARE's own syntax)."""
    number = {name: index + 1 for index, name in enumerate(names)}

    def replace(match: re.Match[str]) -> str:
        return f"${number[match.group(1)]}" if match.group(1) else "%"

    return _PLACEHOLDER.sub(replace, statement)


def _prepare(cursor: Any, statement: str, names: list[str]) -> str | None:
    """PREPARE the statement on the cursor's connection; its name, or None when
    PostgreSQL refuses it (the transaction, if any, goes on unharmed)."""
    import psycopg2

    name = "sb_" + hashlib.sha1(statement.encode()).hexdigest()[:20]
    # the text goes to PostgreSQL as is: psycopg2 interpolates nothing without parameters
    prepare = f"PREPARE {name} AS {_numbered(statement, names)}"
    # the PREPARE below opens the transaction, or follows other statements in it,
    # unless the connection is in psycopg2's autocommit mode
    in_transaction = opens_transactions(cursor.connection)
    try:
        if in_transaction:
            cursor.execute("SAVEPOINT scitq_bench_prepare")
        cursor.execute(prepare)
        if in_transaction:
            cursor.execute("RELEASE SAVEPOINT scitq_bench_prepare")
    except psycopg2.Error:
        if in_transaction:
            cursor.execute("ROLLBACK TO SAVEPOINT scitq_bench_prepare")
        return None
    return name
