"""Only the transitions modules write a status.

Every status change is a guarded move declared in a transition table
(``server/queue/transitions.py`` for tasks, executions, workers and batches,
``server/recruit/transitions.py`` for jobs, ``server/bench/transitions.py`` for
submissions, attempts and runs). This test walks the syntax tree of every module of the
package and fails on a status write anywhere else:

- an assignment to a ``.status`` attribute (``job.status = ...``, also in a tuple
  target), or ``setattr(x, "status", ...)``;
- ``status=`` given to ``.values(...)``, ``update(...)`` or ``insert(...)``, or a dict
  with a ``"status"`` key given to them (literally, through ``**{...}``, or through a
  name bound to such a dict in the same function);
- a dict with a ``"status"`` key given to ``execute(...)`` (a statement's parameters);
- SQL text that sets a status (``UPDATE ... SET ... status = ...``).

Creation is not a move: a model constructor that gives a new row its first status
(``Job(status=JobStatus.PENDING)``) is allowed, and so are rows built for an insert of
new rows through the database's bulk insert helper. An object's own ``self.status`` in
a class that is not a table (the worker agent's view of itself) is no database write
and is allowed too.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import scitq_bench

PACKAGE = Path(scitq_bench.__file__).parent
TRANSITION_MODULES = frozenset({
    "server/queue/transitions.py",
    "server/recruit/transitions.py",
    "server/bench/transitions.py",
})
WRITING_CALLS = frozenset({"values", "update", "insert"})
SQL_STATUS_WRITE = re.compile(r"\bUPDATE\b.+\bSET\b.*\bstatus\s*=", re.IGNORECASE | re.DOTALL)
MODEL_BASES = frozenset({"Base"})  # the declarative base: its subclasses are tables


@dataclass(frozen=True)
class Write:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _call_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    if isinstance(node.func, ast.Name):
        return node.func.id
    return None


def _has_status_key(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Dict) and any(
        isinstance(k, ast.Constant) and k.value == "status" for k in node.keys)


def _status_targets(target: ast.AST) -> list[ast.Attribute]:
    if isinstance(target, ast.Attribute) and target.attr == "status":
        return [target]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [t for element in target.elts for t in _status_targets(element)]
    if isinstance(target, ast.Starred):
        return _status_targets(target.value)
    return []


class _Checker(ast.NodeVisitor):
    """Collects status writes; ``status_dicts`` holds, per function, the names bound
    to a dict with a ``"status"`` key."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.found: list[Write] = []
        self.classes: list[bool] = []  # per enclosing class: whether it is a table
        self.status_dicts: list[set[str]] = [set()]

    def _add(self, node: ast.AST, what: str) -> None:
        self.found.append(Write(self.path, getattr(node, "lineno", 0), what))

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
        self.classes.append(bool(bases & MODEL_BASES))
        self.generic_visit(node)
        self.classes.pop()

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.status_dicts.append(set())
        self.generic_visit(node)
        self.status_dicts.pop()

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def _assigned(self, node: ast.AST, targets: list[ast.AST], value: ast.AST | None) -> None:
        for target in targets:
            for attribute in _status_targets(target):
                own = isinstance(attribute.value, ast.Name) and attribute.value.id == "self"
                if own and self.classes and not self.classes[-1]:
                    continue  # an object's own state, not a row
                self._add(node, f"assignment to {ast.unparse(attribute)}")
            if isinstance(target, ast.Name) and _has_status_key(value):
                self.status_dicts[-1].add(target.id)
            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and \
                    isinstance(target.slice, ast.Constant) and target.slice.value == "status":
                self.status_dicts[-1].add(target.value.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self._assigned(node, list(node.targets), node.value)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._assigned(node, [node.target], None)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._assigned(node, [node.target], node.value)
        self.generic_visit(node)

    def _status_dict(self, node: ast.AST | None) -> bool:
        """A dict literal with a ``"status"`` key, or a name bound to one."""
        if _has_status_key(node):
            return True
        if isinstance(node, (ast.List, ast.Tuple)):
            return any(self._status_dict(e) for e in node.elts)
        return isinstance(node, ast.Name) and node.id in self.status_dicts[-1]

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node)
        if name == "setattr" and len(node.args) >= 2 and \
                isinstance(node.args[1], ast.Constant) and node.args[1].value == "status":
            self._add(node, "setattr(..., 'status', ...)")
        if name in WRITING_CALLS:
            for keyword in node.keywords:
                if keyword.arg == "status":
                    self._add(node, f"status= in {name}(...)")
                elif keyword.arg is None and self._status_dict(keyword.value):
                    self._add(node, f"**{{'status': ...}} in {name}(...)")
            if any(self._status_dict(a) for a in node.args):
                self._add(node, f"{{'status': ...}} in {name}(...)")
        if name == "execute":
            if any(self._status_dict(a) for a in node.args[1:]) or any(
                    self._status_dict(k.value) for k in node.keywords):
                self._add(node, "{'status': ...} as parameters of execute(...)")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and SQL_STATUS_WRITE.search(node.value):
            self._add(node, "SQL text that sets a status")


def status_writes(source: str, path: str = "<snippet>") -> list[Write]:
    """The status writes in ``source``."""
    checker = _Checker(path)
    checker.visit(ast.parse(source))
    return checker.found


def package_writes(root: Path = PACKAGE) -> list[Write]:
    """Status writes of every module under ``root`` outside the transitions modules."""
    found = []
    for module in sorted(root.rglob("*.py")):
        relative = module.relative_to(root).as_posix()
        if relative not in TRANSITION_MODULES:
            found += status_writes(module.read_text(encoding="utf-8"), relative)
    return found


def test_no_status_write_outside_the_transitions_modules() -> None:
    found = package_writes()
    assert not found, "status written outside the transitions modules:\n" + "\n".join(
        map(str, found))


def test_the_transitions_modules_exist() -> None:
    """A renamed transitions module must be renamed here too, not silently skipped."""
    for relative in TRANSITION_MODULES:
        assert (PACKAGE / relative).is_file(), relative


PLANTED = '''
from sqlalchemy import update

class Worker(Base):
    def pause(self):
        self.status = "paused"

class Agent:
    def __init__(self):
        self.status = "running"

def finish(session, job, job_id):
    job.status = "failed"
    job.status, job.error = "failed", "boom"
    setattr(job, "status", "failed")
    session.execute(update(Job).where(Job.id == job_id).values(status="failed"))
    session.execute(update(Job).values({"status": "failed"}))
    session.execute(update(Job).values(**{"status": "failed"}))
    values = {"status": "failed", "error": None}
    session.execute(update(Job).values(**values))
    more = {"error": None}
    more["status"] = "failed"
    session.execute(update(Job), more)
    session.execute(text("UPDATE job SET status = 'failed' WHERE id = :id"), {"id": 1})
    session.execute(update(Job), [{"id": 1, "status": "failed"}])

def create(session):
    session.add(Job(status="pending"))
    rows = [{"task_id": 1, "status": "pending"}]
    insert_rows(session, Execution, rows)
    return {"status": "pending"}
'''


def test_the_checker_finds_planted_writes() -> None:
    found = [(w.line, w.what) for w in status_writes(PLANTED)]
    lines = PLANTED.splitlines()
    flagged = {lines[line - 1].strip() for line, _ in found}
    assert flagged == {
        'self.status = "paused"',
        'job.status = "failed"',
        'job.status, job.error = "failed", "boom"',
        'setattr(job, "status", "failed")',
        'session.execute(update(Job).where(Job.id == job_id).values(status="failed"))',
        'session.execute(update(Job).values({"status": "failed"}))',
        'session.execute(update(Job).values(**{"status": "failed"}))',
        "session.execute(update(Job).values(**values))",
        "session.execute(update(Job), more)",
        """session.execute(text("UPDATE job SET status = 'failed' WHERE id = :id"), {"id": 1})""",
        'session.execute(update(Job), [{"id": 1, "status": "failed"}])',
    }


def test_the_checker_passes_creation_and_reads() -> None:
    source = '''
def create(session, job):
    session.add(Job(kind="deploy", status=JobStatus.PENDING))
    if job.status == "failed":
        return {"status": job.status}
    session.execute(select(Job).where(Job.status == "pending"))
'''
    assert status_writes(source) == []


def test_the_checker_fails_the_package_on_a_planted_write(tmp_path: Path) -> None:
    """The package walk reports a write in any module outside the transitions modules,
    with its place, and none in the transitions modules themselves."""
    (tmp_path / "server" / "bench").mkdir(parents=True)
    write = "def f(run):\n    run.status = 'failed'\n"
    (tmp_path / "server" / "bench" / "transitions.py").write_text(write)
    (tmp_path / "server" / "bench" / "runs.py").write_text(write)
    assert [str(w) for w in package_writes(tmp_path)] == [
        "server/bench/runs.py:2: assignment to run.status"]
