"""Request bodies, validated with pydantic; the same models document the API (OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from scitq_bench.container_options import (
    GPU_ALL,
    ContainerOptions,
    parse_container_options,
    validate_image,
)
from scitq_bench.exceptions import InvalidInput
from scitq_bench.server.limits import ID_MAX, INT_MAX, INT_MIN
from scitq_bench.states import (
    ReportedExecutionStatus,
    RequestedTaskStatus,
    RequestedWorkerStatus,
    Signal,
)
from scitq_bench.uris import parse_uri

SCORE_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"
NAME_PATTERN = r"^[A-Za-z0-9_.:@+-][A-Za-z0-9_.:@+ -]*$"


class Strict(BaseModel):
    """Every request body: unknown fields refused and numbers finite (the body as a
    whole was checked for what no column could take when it was read:
    ``registry.json_body``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# an id given in a body: a 64-bit key
DbId = Annotated[int, Field(ge=1, le=ID_MAX)]
# an integer stored in an Integer column (32 bits on PostgreSQL)
DbInt = Annotated[int, Field(ge=INT_MIN, le=INT_MAX)]
# ... with a lower bound of its own: ``x: DbInt = Field(ge=1)`` would keep DbInt's bound
# only (pydantic merges the two Fields, the annotated one winning)
PositiveDbInt = Annotated[int, Field(ge=1, le=INT_MAX)]
NonNegativeDbInt = Annotated[int, Field(ge=0, le=INT_MAX)]


class FieldProblem(ValueError):
    """A check across fields that blames one of them: ``parse_body`` reports it at that
    field (``container_options: ...``, ``tasks.3.container_options: ...`` in a bulk)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_gpu(value: Any) -> Any:
    """A task's GPUs: a count, or ``'all'`` (stored as ``GPU_ALL``, -1)."""
    if isinstance(value, str) and value.strip().lower() == "all":
        return GPU_ALL
    count = value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        count = int(value) if len(value.strip()) <= 10 else INT_MAX + 1
    if isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= INT_MAX:
        return count
    raise ValueError(f"expected a number of GPUs (0 to {INT_MAX}) or 'all', got {value!r:.40}")


GpuCount = Annotated[
    int | Literal["all"],
    BeforeValidator(parse_gpu),
    Field(description="GPUs needed: a count, or 'all' for every GPU of the worker"),
]


def gpu_label(gpu: int | None) -> int | str | None:
    """How a stored gpu value is shown: ``'all'`` for ``GPU_ALL``."""
    return "all" if gpu == GPU_ALL else gpu


def _image(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_image(value)
    except InvalidInput as exc:
        raise ValueError(str(exc).removeprefix("container: ")) from None


def _options_text(value: str | None) -> str | None:
    """Empty options are no options; the rest must pass the allow-list (the network
    permission, which depends on the batch, is checked when the task is written)."""
    if value is None or not value.strip():
        return None
    try:
        parse_container_options(value, network_allowed=True)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None
    return value


def container_settings(
    container: str | None, options: str | None, gpu: int, *, network_allowed: bool
) -> tuple[ContainerOptions, int]:
    """Check a task's container fields together; returns the parsed options and the
    task's gpu (a task asking for no GPU takes the count of ``--gpus``). Raises
    ``FieldProblem`` naming the field at fault."""
    if not options:
        return ContainerOptions(), gpu
    if not container:
        raise FieldProblem("container_options",
                           "container options need a container image: set container too")
    try:
        parsed = parse_container_options(options, network_allowed=network_allowed)
    except InvalidInput as exc:
        raise FieldProblem("container_options", str(exc)) from None
    if parsed.gpus is not None:
        if gpu == 0:
            gpu = parsed.gpus
        elif gpu != parsed.gpus:
            raise FieldProblem(
                "container_options",
                f"container option --gpus {gpu_label(parsed.gpus)} contradicts "
                f"gpu {gpu_label(gpu)}: give one of them, or the same value",
            )
    return parsed, gpu


class TaskCreate(Strict):
    command: str = Field(min_length=1, description="command line to run")
    name: str | None = Field(default=None, max_length=255)
    batch: str = Field(default="default", max_length=200, pattern=NAME_PATTERN)
    shell: bool = Field(default=False, description="run through /bin/sh -c")
    container: str | None = Field(default=None, max_length=500,
                                  description="image to run the command in")
    container_options: str | None = Field(
        default=None, description="allow-listed docker run options (--gpus, --shm-size, -e, "
        "--network, -w, --entrypoint, --pids-limit)")
    network: bool = Field(default=False, description="the task may use the network "
                          "(also granted by its batch)")
    inputs: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list)
    output: str | None = None
    retry: int = Field(default=0, ge=0, le=100)
    download_timeout: float | None = Field(default=None, gt=0)
    run_timeout: float | None = Field(default=None, gt=0)
    cpu: DbInt | None = Field(default=None, ge=1)
    mem: float | None = Field(default=None, gt=0, description="GB of memory needed")
    gpu: GpuCount = 0
    priority: DbInt = 0
    requires: list[DbId] = Field(default_factory=list, description="ids of prerequisite tasks")
    paused: bool = Field(default=False, description="create held back (status paused)")
    layout: Literal["codabench"] | None = Field(
        default=None, description="codabench: the run sees /app/program, /app/input_data, "
        "/app/input/ref, /app/input/res, /app/ingested_program, /app/output, /app/shared "
        "(from the input subfolders of the same names) instead of the standard slots")
    host_environment: str | None = Field(
        default=None, max_length=500, pattern=r"^/[^\x00]*$",
        description="codabench layout on the host: a virtualenv or conda prefix on the "
        "worker whose bin/ comes first on PATH in the sandbox")
    score_keys: list[Annotated[str, Field(pattern=SCORE_KEY_PATTERN)]] | None = Field(
        default=None, max_length=1000, description="read scores.json (or scores.txt) from "
        "the output after the run; only these keys are accepted")
    key: str | None = Field(
        default=None, min_length=1, max_length=255, description="the caller's name for the "
        "task, unique in its batch: creating a task whose key exists there returns the "
        "existing task unchanged (submitting again creates nothing twice)")

    _options: ContainerOptions = PrivateAttr(default_factory=ContainerOptions)

    @field_validator("container")
    @classmethod
    def _valid_image(cls, value: str | None) -> str | None:
        return _image(value)

    @field_validator("container_options")
    @classmethod
    def _no_empty_options(cls, value: str | None) -> str | None:
        return value if value is None or value.strip() else None

    @model_validator(mode="after")
    def _container_fields(self) -> TaskCreate:
        # syntax and allow-list here; whether --network is permitted depends on the
        # batch and is checked when the task is written
        self._options, self.gpu = container_settings(
            self.container, self.container_options, int(self.gpu), network_allowed=True
        )
        return self

    @property
    def options(self) -> ContainerOptions:
        return self._options

    _valid_uris = field_validator("inputs", "resources")(classmethod(
        lambda cls, values, info: _uri_list(values, info)))
    _valid_output = field_validator("output")(classmethod(lambda cls, value: _output_uri(value)))
    _valid_key = field_validator("key")(classmethod(lambda cls, value: _task_key(value)))


def _uri_list(values: list[str] | None, info: Any) -> list[str] | None:
    """Inputs or resources: each URI parsed, errors naming its place (``inputs[2]``)."""
    for index, uri in enumerate(values or ()):
        _check_uri(uri, field=f"{info.field_name}[{index}]", allow_actions=True)
    return values


def _output_uri(value: str | None) -> str | None:
    if value is not None:
        _check_uri(value, field="output", allow_actions=False)
    return value


def control_character(text: str) -> str | None:
    """The first control character of ``text`` (newline, tab, DEL, C1...), if any: a
    key is shown in tables and files and typed back, so it holds none."""
    return next((c for c in text if ord(c) < 32 or 127 <= ord(c) < 160), None)


def _task_key(value: str | None) -> str | None:
    if value is not None and control_character(value) is not None:
        raise ValueError("control characters are not allowed in a key")
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
    container: str | None = Field(default=None, max_length=500)
    container_options: str | None = None
    network: bool | None = None
    gpu: DbInt | Literal["all"] | None = Field(
        default=None, description="GPUs needed: a count, or 'all' for every GPU of the worker")
    retry: int | None = Field(default=None, ge=0, le=100)
    download_timeout: float | None = Field(default=None, gt=0)
    run_timeout: float | None = Field(default=None, gt=0)
    priority: DbInt | None = None
    status: RequestedTaskStatus | None = Field(
        default=None, description="pause a queued task, or put a paused one back in the queue"
    )
    # what and where the task runs: changed only while it does not run
    batch: str | None = Field(default=None, max_length=200, pattern=NAME_PATTERN,
                              description="move the task to this batch (created if missing)")
    inputs: list[str] | None = None
    resources: list[str] | None = None
    output: str | None = Field(default=None, description="null clears it")
    requires: list[DbId] | None = Field(
        default=None, description="ids of prerequisite tasks: the whole new list")

    _valid_uris = field_validator("inputs", "resources")(classmethod(
        lambda cls, values, info: _uri_list(values, info)))
    _valid_output = field_validator("output")(classmethod(lambda cls, value: _output_uri(value)))

    @field_validator("container")
    @classmethod
    def _valid_image(cls, value: str | None) -> str | None:
        return _image(value)

    @field_validator("container_options")
    @classmethod
    def _valid_options(cls, value: str | None) -> str | None:
        return _options_text(value)

    @field_validator("gpu", mode="before")
    @classmethod
    def _gpu(cls, value: Any) -> Any:
        return None if value is None else parse_gpu(value)


class SignalRequest(Strict):
    signal: Signal


class BatchCreate(Strict):
    name: str = Field(max_length=200, pattern=NAME_PATTERN)
    priority: DbInt = 0
    network: bool = Field(default=False, description="every task of the batch may use "
                          "the network")


class BatchUpdate(Strict):
    priority: DbInt | None = None
    network: bool | None = Field(default=None, description="every task of the batch may "
                                 "use the network")
    budget: float | None = Field(default=None, ge=0, description="recruiting for the batch "
                                 "stops once its tasks cost this much (null: no budget)")

    @model_validator(mode="after")
    def _something(self) -> BatchUpdate:
        if not self.model_fields_set:
            raise ValueError("nothing to change: give priority, network and/or budget")
        if "priority" in self.model_fields_set and self.priority is None:
            raise ValueError("priority: a number is needed")
        if "network" in self.model_fields_set and self.network is None:
            raise ValueError("network: true or false is needed")
        return self


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
    cpus: DbInt | None = Field(default=None, ge=1)
    mem_gb: float | None = Field(default=None, gt=0)
    gpus: NonNegativeDbInt = 0
    gpu_model: str | None = Field(default=None, max_length=200)
    gpu_mem_gb: float | None = Field(default=None, gt=0, description="memory of each GPU")
    containers: bool = Field(default=False, description="the worker has a container engine: "
                             "tasks with a container are only sent to such workers")
    flavor: str | None = None
    provider: str | None = None
    region: str | None = None
    permanent: bool = True
    version: str | None = None


class WorkerUpdate(Strict):
    concurrency: int | None = Field(default=None, ge=0, le=1024)
    prefetch: int | None = Field(default=None, ge=0, le=10_000)
    batch: str | None = Field(default=None, max_length=200)
    status: RequestedWorkerStatus | None = None


class Heartbeat(Strict):
    stats: dict[str, Any] = Field(default_factory=dict)
    executions: list[DbId] = Field(default_factory=list, description="executions held")
    acknowledged_signals: list[DbId] = Field(default_factory=list)


class ExecutionEvent(Strict):
    execution_id: DbId
    status: ReportedExecutionStatus
    return_code: DbInt | None = None
    error: str | None = Field(default=None, max_length=10_000)
    reason: str | None = Field(
        default=None, max_length=64, pattern=r"^[a-z][a-z0-9_]*$",
        description="why it failed, for machines: image_pull_failed, out_of_memory, timeout...",
    )
    output_files: list[str] = Field(default_factory=list)
    scores: dict[Annotated[str, Field(pattern=SCORE_KEY_PATTERN)], float] | None = Field(
        default=None, max_length=1000, description="what the run's scores file said")
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
            location = [str(part) for part in error["loc"]]
            message = error["msg"].removeprefix("Value error, ")
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, FieldProblem):
                location.append(cause.field)
                message = str(cause)
            location, message = _one_path(location, message)
            where = ".".join(location) or "body"
            problems.append(f"{where}: {message}")
        raise InvalidInput("; ".join(problems), details=problems) from None


def _one_path(location: list[str], message: str) -> tuple[list[str], str]:
    """A message that names its own field (``inputs[0]: ...``, as URI checks say it)
    under that field's location (``tasks.0.inputs``) keeps one path:
    ``tasks.0.inputs[0]: ...``, not ``tasks.0.inputs: inputs[0]: ...``."""
    head, sep, rest = message.partition(": ")
    if not sep or not location:
        return location, message
    last = location[-1]
    if head == last or (head.startswith(f"{last}[") and head.endswith("]")
                        and " " not in head):
        return [*location[:-1], head], rest
    return location, message


def changed_fields(changes: BaseModel, table: Any) -> dict[str, Any]:
    """The fields a PATCH body sets, refusing null for a column that cannot hold it
    (the database would refuse it only at the end, as an error of its own)."""
    fields = changes.model_dump(exclude_unset=True)
    for key, value in fields.items():
        column = table.__table__.columns.get(key)
        if value is None and column is not None and not column.nullable:
            raise InvalidInput(f"{key}: may not be null", field=key)
    return fields

