"""Request bodies, validated with pydantic; the same models document the API (OpenAPI)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scitq_bench.exceptions import InvalidInput
from scitq_bench.states import ExecutionStatus, Signal, TaskStatus, WorkerStatus
from scitq_bench.uris import parse_uri

NAME_PATTERN = r"^[A-Za-z0-9_.:@+-][A-Za-z0-9_.:@+ -]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskCreate(Strict):
    command: str = Field(min_length=1, description="command line to run")
    name: str | None = Field(default=None, max_length=255)
    batch: str = Field(default="default", max_length=200, pattern=NAME_PATTERN)
    shell: bool = Field(default=False, description="run through /bin/sh -c")
    container: str | None = Field(default=None, max_length=500)
    container_options: str | None = None
    inputs: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list)
    output: str | None = None
    retry: int = Field(default=0, ge=0, le=100)
    download_timeout: float | None = Field(default=None, gt=0)
    run_timeout: float | None = Field(default=None, gt=0)
    cpu: int | None = Field(default=None, ge=1)
    mem: float | None = Field(default=None, gt=0, description="GB of memory needed")
    gpu: int = Field(default=0, ge=0)
    priority: int = 0
    requires: list[int] = Field(default_factory=list, description="ids of prerequisite tasks")
    paused: bool = Field(default=False, description="create held back (status paused)")

    @field_validator("inputs", "resources")
    @classmethod
    def _valid_uris(cls, values: list[str], info: Any) -> list[str]:
        for index, uri in enumerate(values):
            _check_uri(uri, field=f"{info.field_name}[{index}]", allow_actions=True)
        return values

    @field_validator("output")
    @classmethod
    def _valid_output(cls, value: str | None) -> str | None:
        if value is not None:
            _check_uri(value, field="output", allow_actions=False)
        return value


def _check_uri(uri: str, *, field: str, allow_actions: bool) -> None:
    """pydantic reports ValueError with the field's location; ours becomes one."""
    try:
        parse_uri(uri, field=field, allow_actions=allow_actions)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None


class TaskBulkCreate(Strict):
    tasks: list[TaskCreate] = Field(min_length=1, max_length=100_000)


class TaskUpdate(Strict):
    command: str | None = Field(default=None, min_length=1)
    name: str | None = None
    shell: bool | None = None
    container: str | None = None
    container_options: str | None = None
    retry: int | None = Field(default=None, ge=0, le=100)
    download_timeout: float | None = Field(default=None, gt=0)
    run_timeout: float | None = Field(default=None, gt=0)
    priority: int | None = None
    status: Literal["paused", "pending"] | None = Field(
        default=None, description="pause a queued task, or put a paused one back in the queue"
    )


class SignalRequest(Strict):
    signal: Signal


class BatchCreate(Strict):
    name: str = Field(max_length=200, pattern=NAME_PATTERN)
    priority: int = 0


class BatchUpdate(Strict):
    priority: int


class BatchStop(Strict):
    signal: Literal["none", "pause", "stop", "kill"] = Field(
        default="none",
        description="what to do to running tasks: leave them (none), suspend them (pause), "
        "terminate (stop) or kill them; killed or stopped tasks are paused and run again on go",
    )
    workers: bool = Field(default=False, description="also pause the batch's workers")


class WorkerRegister(Strict):
    name: str = Field(max_length=200, pattern=NAME_PATTERN)
    hostname: str | None = None
    concurrency: int = Field(default=1, ge=0, le=1024)
    prefetch: int = Field(default=0, ge=0, le=10_000)
    batch: str | None = Field(default=None, max_length=200, pattern=NAME_PATTERN)
    cpus: int | None = Field(default=None, ge=1)
    mem_gb: float | None = Field(default=None, gt=0)
    gpus: int = Field(default=0, ge=0)
    flavor: str | None = None
    provider: str | None = None
    region: str | None = None
    permanent: bool = True
    version: str | None = None


class WorkerUpdate(Strict):
    concurrency: int | None = Field(default=None, ge=0, le=1024)
    prefetch: int | None = Field(default=None, ge=0, le=10_000)
    batch: str | None = Field(default=None, max_length=200)
    status: Literal["running", "paused"] | None = None


class Heartbeat(Strict):
    stats: dict[str, Any] = Field(default_factory=dict)
    executions: list[int] = Field(default_factory=list, description="executions held")
    acknowledged_signals: list[int] = Field(default_factory=list)


class ExecutionEvent(Strict):
    execution_id: int
    status: Literal[
        "accepted", "running", "succeeded", "failed", "refused", "timeout", "cancelled"
    ]
    return_code: int | None = None
    error: str | None = Field(default=None, max_length=10_000)
    output_files: list[str] = Field(default_factory=list)
    duration: float | None = Field(default=None, ge=0, description="seconds the command ran")
    age: float = Field(
        default=0, ge=0, description="seconds between the event and this report (no clock skew)"
    )


class WorkerReport(Strict):
    events: list[ExecutionEvent] = Field(default_factory=list, max_length=10_000)


def parse_body(model: type[BaseModel], data: Any) -> Any:
    """Validate ``data`` against ``model``; errors become a 400 naming each field."""
    if data is None:
        raise InvalidInput("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "body"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}")
        raise InvalidInput("; ".join(problems), details=problems) from None


STATUS_VALUES = {
    "task": [s.value for s in TaskStatus],
    "execution": [s.value for s in ExecutionStatus],
    "worker": [s.value for s in WorkerStatus],
}
