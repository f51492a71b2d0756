"""Fetching a row by id, or the 404 that names it."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import Session

from scitq_bench.exceptions import NotFound

Model = TypeVar("Model")


def get_or_404(session: Session, model: type[Model], object_id: int) -> Model:
    found = session.get(model, object_id)
    if found is None:
        label = model.__tablename__  # type: ignore[attr-defined]
        raise NotFound(f"{label} {object_id} not found", details={f"{label}_id": object_id})
    return found
