"""Request bodies of the recruitment API."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from scitq_bench.exceptions import InvalidInput
from scitq_bench.server.schemas import (
    NAME_PATTERN,
    DbInt,
    NonNegativeDbInt,
    PositiveDbInt,
    Strict,
)


def _check_flavor(value: str) -> str:
    """A flavor name, or ``auto:`` protofilters (parsed now: a bad one is refused with
    the part that is wrong)."""
    if value.startswith("auto"):
        from scitq_bench.recruiters import protofilter

        try:
            protofilter.parse(value, require_auto=True)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None
    elif not value.strip():
        raise ValueError("a flavor name or auto:<protofilters> is required")
    return value


WORKFLOW = ("recruiters of one workflow (the batches of its steps) share a cap on the "
            "workers they keep alive together")
WORKFLOW_MAXIMUM = ("recruited workers alive at once across the workflow (the smallest of "
                    "its recruiters' values applies; 0: only workers its steps pass along)")


class RecruiterCreate(Strict):
    batch: str = Field(max_length=200, pattern=NAME_PATTERN)
    rank: PositiveDbInt = 1
    flavor: str = Field(max_length=500, description="flavor name, or auto:<protofilters>")
    provider: str = Field(default="auto", max_length=50)
    region: str = Field(default="auto", max_length=100)
    concurrency: int | None = Field(default=None, ge=1, le=1024,
                                    description="default: from the tasks' needs and the flavor")
    prefetch: int = Field(default=0, ge=0, le=10_000)
    tasks_per_worker: DbInt | None = Field(default=None, ge=1)
    minimum_tasks: NonNegativeDbInt = 0
    maximum_workers: int = Field(default=1, ge=0, le=10_000)
    workflow: str | None = Field(default=None, max_length=200, pattern=NAME_PATTERN,
                                 description=WORKFLOW)
    workflow_maximum_workers: int | None = Field(default=None, ge=0, le=10_000,
                                                 description=WORKFLOW_MAXIMUM)

    _flavor = field_validator("flavor")(classmethod(lambda cls, v: _check_flavor(v)))


class RecruiterUpdate(Strict):
    flavor: str | None = Field(default=None, max_length=500)
    provider: str | None = Field(default=None, max_length=50)
    region: str | None = Field(default=None, max_length=100)
    concurrency: int | None = Field(default=None, ge=1, le=1024)
    prefetch: int | None = Field(default=None, ge=0, le=10_000)
    tasks_per_worker: DbInt | None = Field(default=None, ge=1)
    minimum_tasks: DbInt | None = Field(default=None, ge=0)
    maximum_workers: int | None = Field(default=None, ge=0, le=10_000)
    workflow: str | None = Field(default=None, max_length=200, pattern=NAME_PATTERN,
                                 description=WORKFLOW + " (null: none)")
    workflow_maximum_workers: int | None = Field(default=None, ge=0, le=10_000,
                                                 description=WORKFLOW_MAXIMUM)

    @field_validator("flavor")
    @classmethod
    def _valid_flavor(cls, value: str | None) -> str | None:
        return None if value is None else _check_flavor(value)

    @model_validator(mode="after")
    def _something(self) -> RecruiterUpdate:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        return self


class DeployRequest(Strict):
    flavor: str = Field(max_length=500, description="flavor name, or auto:<protofilters>")
    provider: str = Field(default="auto", max_length=50)
    region: str = Field(default="auto", max_length=100)
    batch: str | None = Field(default=None, max_length=200, pattern=NAME_PATTERN)
    number: int = Field(default=1, ge=1, le=1000)
    concurrency: int | None = Field(default=None, ge=1, le=1024)
    prefetch: int = Field(default=0, ge=0, le=10_000)
    name: str | None = Field(default=None, max_length=200, pattern=NAME_PATTERN,
                             description="the worker's name (one machine only)")
    permanent: bool = Field(default=False, description="never given back when idle (only "
                            "by undeploy); not counted in the recruitment caps")

    _flavor = field_validator("flavor")(classmethod(lambda cls, v: _check_flavor(v)))

    @model_validator(mode="after")
    def _one_name(self) -> DeployRequest:
        if self.name is not None and self.number != 1:
            raise ValueError("name: only when deploying one machine")
        return self
