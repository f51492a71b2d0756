"""Request bodies of the benchmark API (validated with pydantic, documented in OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from scitq_bench.server.schemas import NAME_PATTERN, DbInt, Strict


class AccountCreate(Strict):
    name: str = Field(max_length=200, pattern=NAME_PATTERN)
    role: Literal["participant", "organizer"] = "participant"
    email: str | None = Field(default=None, max_length=300)


class TokenRequest(Strict):
    revoke_others: bool = Field(default=False, description="revoke the account's other tokens")


NOT_NULL = ("name", "start", "execution_time_limit", "hide_output", "hide_prediction_output",
            "hide_score_output", "accepts_only_result_submissions")


class PhaseUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=300)
    description: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    max_submissions: DbInt | None = Field(default=None, ge=1)
    max_submissions_per_day: DbInt | None = Field(default=None, ge=1)
    max_submission_mb: float | None = Field(default=None, gt=0)
    execution_time_limit: DbInt | None = Field(default=None, ge=1)
    hide_output: bool | None = None
    hide_prediction_output: bool | None = None
    hide_score_output: bool | None = None
    accepts_only_result_submissions: bool | None = None

    @model_validator(mode="after")
    def _utc(self) -> PhaseUpdate:
        """Dates are stored as naive UTC."""
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is not None:
                from datetime import timezone

                object.__setattr__(self, name,
                                   value.astimezone(timezone.utc).replace(tzinfo=None))
        for name in NOT_NULL:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name}: a phase always has one (null is not a value here)")
        return self


class BenchTaskUpdate(Strict):
    gpu: DbInt | Literal["all"] | None = Field(
        default=None, description="GPUs each step of this task needs (a count, or all)")
    image: str | None = Field(default=None, max_length=500,
                              description="image for this task ('' for the benchmark's)")

    @model_validator(mode="after")
    def _something(self) -> BenchTaskUpdate:
        if not self.model_fields_set:
            raise ValueError("nothing to change: give gpu and/or image")
        if isinstance(self.gpu, int) and self.gpu < 0:
            raise ValueError("gpu: a count (0 or more) or 'all'")
        return self


class BenchmarkUpdate(Strict):
    docker_image: str | None = Field(
        default=None, max_length=500,
        description="image every step runs in unless its task names one ('' for the default)")
    host_environment: str | None = Field(
        default=None, max_length=500,
        description="run on host: absolute path of a virtualenv or conda prefix on the "
        "workers, its bin/ first on PATH in the sandbox ('' for none)")

    @model_validator(mode="after")
    def _something(self) -> BenchmarkUpdate:
        if not self.model_fields_set:
            raise ValueError("nothing to change: give docker_image and/or host_environment")
        path = self.host_environment
        if path and (not path.startswith("/") or "\n" in path or "/../" in f"{path}/"):
            raise ValueError(f"host_environment: {path!r} is not an absolute path")
        return self


class LeaderboardChoice(Strict):
    on: bool = Field(description="true: put it on the leaderboard; false: take it off")
