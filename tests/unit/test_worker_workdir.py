"""Execution folders: created with their subfolders, recycled only when left clean."""

from __future__ import annotations

import os

from scitq_bench.client.worker.workdir import ExecutionDirs


def _listing(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))


def test_create_and_recycle(tmp_path):
    dirs = ExecutionDirs(tmp_path / "executions")
    dirs.reset()
    first = dirs.create(1)
    assert _listing(first) == ["input", "output", "resource", "tmp"]
    (first / "stdout.log").write_text("old log")
    dirs.release(first)
    second = dirs.create(2)
    assert second == tmp_path / "executions" / "2" and not first.exists()
    assert _listing(second) == ["input", "output", "resource", "stdout.log", "tmp"]
    assert (second / "stdout.log").stat().st_size == 0  # a spare keeps no log on disk
    dirs.release(second)
    dirs.discard_spares()
    assert list((tmp_path / "executions").iterdir()) == []


def test_dirty_folders_are_deleted_not_recycled(tmp_path):
    dirs = ExecutionDirs(tmp_path / "executions")
    dirs.reset()
    cases = {
        "file in output": lambda p: (p / "output" / "x").write_text("x"),
        "extra file": lambda p: (p / "result.txt").write_text("x"),
        "symlinked input": lambda p: (os.rmdir(p / "input"),
                                      os.symlink(tmp_path, p / "input")),
        "unwritable tmp": lambda p: os.chmod(p / "tmp", 0o500),
        "missing input": lambda p: os.rmdir(p / "input"),
    }
    for number, (name, spoil) in enumerate(cases.items()):
        path = dirs.create(number)
        spoil(path)
        dirs.release(path)
        assert not path.exists(), name
        assert dirs._spare == [], name
    assert tmp_path.exists()  # the symlink was removed, not followed


def test_reset_removes_leftovers(tmp_path):
    root = tmp_path / "executions"
    (root / "17" / "output").mkdir(parents=True)
    ExecutionDirs(root).reset()
    assert root.is_dir() and list(root.iterdir()) == []
