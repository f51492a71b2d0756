"""Where a workflow's data is: paths relative to the workflow's base, made URIs."""

from __future__ import annotations

import re

from scitq_bench.workflow.errors import WorkflowError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(text: str) -> bool:
    return bool(_SCHEME.match(text))


def check_base(base: str | None) -> str | None:
    """The base as a folder URI (``file:///data/qc/``); a local absolute path becomes
    a ``file://`` URI, anything else that is not a URI is refused."""
    if base is None:
        return None
    text = base.strip()
    if text.startswith("/"):
        text = "file://" + text
    if not is_uri(text):
        raise WorkflowError(f"base {base!r} must be a URI (file:///abs/path, s3://bucket/"
                            "prefix, server://path, ...) or an absolute path")
    return text if text.endswith("/") else text + "/"


def resolve(path: str, base: str | None, what: str = "path") -> str:
    """``path`` as a URI: a URI is kept, a local absolute path is made ``file://``, a
    relative path is put under ``base`` (actions after ``|`` kept)."""
    if not isinstance(path, str) or not path.strip():
        raise WorkflowError(f"{what}: empty path")
    text = path.strip()
    if is_uri(text):
        return text
    if text.startswith("/"):
        return "file://" + text
    if base is None:
        raise WorkflowError(f"{what} {path!r} is relative, and the workflow has no base "
                            "to put it under (Workflow(..., base=URI))")
    while text.startswith("./"):
        text = text[2:]
    return base + text


def as_folder(uri: str) -> str:
    """An output is a folder: its URI ends with "/" (so that, as an input, its files
    are copied into the next task's input folder)."""
    location, bar, actions = uri.partition("|")
    return (location if location.endswith("/") else location + "/") + bar + actions
