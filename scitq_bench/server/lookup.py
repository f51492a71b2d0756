"""Fetching a row by id, or the 404 that names it."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import Session

from scitq_bench.exceptions import NotFound

Model = TypeVar("Model")


def get_or_404(session: Session, model: type[Model], object_id: int, *,
               lock: bool = False) -> Model:
    """The row, or NotFound naming it. ``lock``: read it afresh and hold its row until
    commit (PostgreSQL; SQLite's write lock already excludes other writers), so that a
    decision taken on it cannot be overtaken by another transaction."""
    found = session.get(model, object_id, with_for_update=lock or None,
                        populate_existing=lock)
    if found is None:
        label = model.__tablename__  # type: ignore[attr-defined]
        raise NotFound(f"{label} {object_id} not found", details={f"{label}_id": object_id})
    return found
