"""Forms checked by the API's own request models, so a form accepts and refuses
exactly what the API does, with each problem shown next to its field."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from scitq_bench.server.schemas import FieldProblem

M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: dict[str, Any],
             errors: dict[str, str]) -> M | None:
    """``model`` from ``data``; problems go into ``errors`` by field name (a problem
    that names no field is kept under ``_form``)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            location = [str(part) for part in error["loc"]]
            message = error["msg"].removeprefix("Value error, ")
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, FieldProblem):
                location, message = [cause.field], str(cause)
            errors.setdefault(location[0] if location else "_form", message)
        return None


def filled(form: Any, names: tuple[str, ...]) -> dict[str, str]:
    """The fields given a value: a blank field takes the model's default."""
    values = {name: (form.get(name) or "").strip() for name in names}
    return {name: value for name, value in values.items() if value}


def edited(model: type[M], form: Any, names: tuple[str, ...], clearable: tuple[str, ...],
           errors: dict[str, str]) -> M | None:
    """An edit form as ``model`` (a partial update): a blank field in ``clearable`` is
    cleared (null), any other blank one is refused as required."""
    given: dict[str, str | None] = dict(filled(form, names))
    for name in names:
        if name not in given:
            if name in clearable:
                given[name] = None
            else:
                errors[name] = f"{name.replace('_', ' ')} is required"
    return validate(model, given, errors)
