"""A benchmark's environment on the worker's host (a virtualenv or a conda prefix), for
programs run in the sandbox: the sandbox otherwise sees only the host's system folders,
so the environment is bound read-only at its own path and its ``bin/`` put first on
PATH. A virtualenv's interpreter lives in the installation it was made from (its
``pyvenv.cfg`` ``home``): that installation is bound too when the system folders do not
already hold it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

Mount = tuple[str, str, bool]  # (host path, path in the sandbox, read only)


class HostEnvironmentMissing(Exception):
    """The environment the task names is not usable on this worker."""


@dataclass(frozen=True)
class HostEnvironment:
    mounts: list[Mount] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)

    def bwrap_args(self) -> list[str]:
        """bwrap's arguments for the mounts, after the execution's own: each mount
        point's missing parents made first, open to all (a root bwrap makes them 0700
        otherwise, and the sandbox's non-root user could not reach the environment)."""
        args: list[str] = []
        made: set[str] = set()
        for source, target, read_only in self.mounts:
            parents = PurePosixPath(target).parents
            for parent in reversed([str(p) for p in parents if str(p) != "/"]):
                if parent not in made:
                    made.add(parent)
                    args += ["--perms", "0755", "--dir", parent]
            args += ["--ro-bind" if read_only else "--bind", source, target]
        return args


def host_environment(path: str | None, sandbox_path: str,
                     system_dirs: Sequence[str] = ("/usr", "/bin", "/sbin", "/lib", "/lib64",
                                                   "/etc")) -> HostEnvironment:
    """The mounts to add and the variables to set in the sandbox for the environment
    at ``path`` (nothing for None or ''); ``sandbox_path``: the sandbox's PATH without
    it. HostEnvironmentMissing, naming the path, when it is not an absolute path to a
    folder with a ``bin/`` on this worker."""
    if not path:
        return HostEnvironment()
    if not os.path.isabs(path) or ".." in PurePosixPath(path).parts:
        raise HostEnvironmentMissing(f"host_environment {path!r}: not an absolute path")
    root = os.path.normpath(path)
    if not os.path.isdir(root):
        raise HostEnvironmentMissing(f"host_environment {root}: no such folder on this worker")
    if not os.path.isdir(os.path.join(root, "bin")):
        raise HostEnvironmentMissing(
            f"host_environment {root}: has no bin/ folder (not a virtualenv or conda prefix)")
    mounts: list[Mount] = [] if _under(root, system_dirs) else [(root, root, True)]
    variables = {"PATH": f"{root}/bin:{sandbox_path}"}
    base = _venv_base(root)
    if base is not None:
        variables["VIRTUAL_ENV"] = root
        if base != "/" and not _under(base, [root, *system_dirs]) and os.path.isdir(base):
            mounts.append((base, base, True))
    elif os.path.isdir(os.path.join(root, "conda-meta")):
        variables["CONDA_PREFIX"] = root
    return HostEnvironment(mounts, variables)


def apply(env: Mapping[str, str], found: HostEnvironment) -> dict[str, str]:
    """``env`` with the environment's variables (its PATH replacing the sandbox's)."""
    return {**env, **found.variables}


def _venv_base(root: str) -> str | None:
    """The prefix of the installation a virtualenv was made from (the folder above its
    ``home``), or None when ``root`` is no virtualenv."""
    try:
        with open(os.path.join(root, "pyvenv.cfg"), encoding="utf-8") as config:
            lines = config.read(1 << 16).splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "home" and value.strip():
            return os.path.dirname(os.path.normpath(value.strip()))
    return root  # a virtualenv without a home: nothing more to bind


def _under(path: str, folders: Sequence[str]) -> bool:
    return any(path == folder or path.startswith(folder.rstrip("/") + "/")
               for folder in folders)
