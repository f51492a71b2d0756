"""What a script declares: steps (batches), their tasks, and the links between them.

Declaring talks to no server: the tasks are sent by ``Workflow.run``, all at once and
in the order they were declared (a task can only depend on one declared before it, so
that order is always one the server accepts). A task's output URI is known as soon as
it is declared, so it can be used at once as another task's input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any

from scitq_bench.workflow.errors import WorkflowError


@dataclass(frozen=True)
class TaskOptions:
    """How each task runs; None: inherited (step call, then workflow, then server)."""

    container: str | None = None
    container_options: str | None = None
    shell: bool | None = None
    retry: int | None = None
    download_timeout: float | None = None
    run_timeout: float | None = None
    cpu: int | None = None
    mem: float | None = None
    priority: int | None = None

    def over(self, base: TaskOptions) -> TaskOptions:
        """These options, each one left None taken from ``base``."""
        return _over(self, base)


@dataclass(frozen=True)
class StepOptions:
    """How a step is staffed (its batch's recruiter); None: inherited from the
    workflow. ``tasks_per_worker`` defaults to ``concurrency`` x ``rounds``."""

    flavor: str | None = None
    provider: str | None = None
    region: str | None = None
    concurrency: int | None = None
    rounds: int | None = None
    tasks_per_worker: int | None = None
    max_workers: int | None = None
    prefetch: int | None = None

    def over(self, base: StepOptions) -> StepOptions:
        return _over(self, base)

    def merged(self, later: StepOptions, step: str) -> StepOptions:
        """The options of a step declared again: what ``later`` gives must agree with
        what was given before (a step has one recruiter; a value silently dropped
        would hire other machines than the script says)."""
        for option in fields(self):
            before, after = getattr(self, option.name), getattr(later, option.name)
            if before is not None and after is not None and before != after:
                raise WorkflowError(f"step {step!r}: {option.name}={after!r} differs from "
                                    f"{before!r} given earlier for the same step")
        return later.over(self)

    @property
    def workers_tasks(self) -> int | None:
        """Pending tasks per worker hired: explicit, else concurrency x rounds."""
        if self.tasks_per_worker is not None:
            return self.tasks_per_worker
        if self.concurrency is None:
            return None
        return self.concurrency * (self.rounds or 1)


def _over(own: Any, base: Any) -> Any:
    return replace(own, **{f.name: getattr(base, f.name) for f in fields(own)
                           if getattr(own, f.name) is None})


class OutputURI(str):
    """A task's output URI: a plain string (it goes in commands and f-strings), which,
    given as another task's input, also makes that task wait for this one."""

    task: Task

    def __new__(cls, uri: str, task: Task) -> OutputURI:
        made = super().__new__(cls, uri)
        made.task = task
        return made


@dataclass(eq=False)
class Task:
    """A declared task; ``id`` is known once ``run`` sent it (or found it)."""

    step: Step
    key: str
    name: str
    command: str
    inputs: tuple[str, ...]
    resources: tuple[str, ...]
    output: OutputURI | None
    options: TaskOptions
    depends: tuple[Task, ...]
    id: int | None = None

    def gather(self, attribute: str | None = None) -> Gather:
        """The step's tasks (or their ``attribute``): as scitq's ``step.gather()``."""
        return self.step.gather(attribute)

    def __repr__(self) -> str:
        return f"Task({self.step.name}/{self.key}, id={self.id})"


@dataclass(eq=False)
class Step:
    """One step: a batch, its options, and the tasks declared in it so far."""

    name: str
    batch: str
    options: StepOptions
    tasks: list[Task] = field(default_factory=list)
    keys: dict[str, Task] = field(default_factory=dict)  # the tasks by key, kept with them

    def add(self, task: Task) -> None:
        if task.key in self.keys:
            raise WorkflowError(f"step {self.name!r}: key {task.key!r} is declared twice "
                                "(give each task its own name or key)")
        self.tasks.append(task)
        self.keys[task.key] = task

    def gather(self, attribute: str | None = None) -> Gather:
        """Every task declared in this step so far: given to ``depends`` it waits for
        them all; given to ``inputs`` (or with ``attribute="output"``) it is their
        output URIs. Taken when called: tasks declared later are not in it."""
        if attribute not in (None, "output"):
            raise WorkflowError(f"step {self.name!r}: gather({attribute!r}): only 'output' "
                                "(or nothing, for the tasks) can be gathered")
        return Gather(self, tuple(self.tasks), attribute)

    @property
    def output(self) -> OutputURI | None:
        """The output of the last task declared (scitq's ``step.output``)."""
        return self.tasks[-1].output if self.tasks else None


@dataclass(frozen=True, eq=False)
class Gather:
    """Tasks of one step, taken together: iterating gives the tasks, or their output
    URIs when gathered with ``"output"``."""

    step: Step
    tasks: tuple[Task, ...]
    attribute: str | None = None

    def outputs(self) -> list[OutputURI]:
        found = []
        for task in self.tasks:
            if task.output is None:
                raise WorkflowError(f"step {self.step.name!r}: task {task.key!r} has no "
                                    "output to gather (give it one, or the workflow a base)")
            found.append(task.output)
        return found

    def __iter__(self) -> Iterator[Any]:
        return iter(self.outputs() if self.attribute == "output" else self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)



def flatten(value: Any) -> list[Any]:
    """A single item, or any nesting of lists and tuples of them, as one list."""
    if value is None:
        return []
    if isinstance(value, (str, Task, Step, Gather)):
        return [value]
    if isinstance(value, Iterable):
        return [item for part in value for item in flatten(part)]
    return [value]


def prerequisites(value: Any, step: str) -> list[Task]:
    """The tasks ``depends`` names: tasks, steps (their tasks so far), gathers, or
    output URIs (their tasks)."""
    found: list[Task] = []
    for item in flatten(value):
        if isinstance(item, OutputURI):
            found.append(item.task)
        elif isinstance(item, Task):
            found.append(item)
        elif isinstance(item, Step):
            found.extend(item.tasks)
        elif isinstance(item, Gather):
            found.extend(item.tasks)
        else:
            raise WorkflowError(f"step {step!r}: depends takes tasks, steps or gathers, "
                                f"got {item!r}")
    return found


def input_uris(value: Any, step: str, resolve: Callable[[str], str]) -> tuple[list[str], list[Task]]:
    """The inputs as URIs, and the tasks they come from: a task, step or gather stands
    for its outputs (and is waited for); a plain text is a path or URI (``resolve``)."""
    uris: list[str] = []
    needed: list[Task] = []
    for item in flatten(value):
        if isinstance(item, OutputURI):
            uris.append(str(item))
            needed.append(item.task)
        elif isinstance(item, str):
            uris.append(resolve(item))
        elif isinstance(item, (Task, Step, Gather)):
            for task in [item] if isinstance(item, Task) else list(item.tasks):
                if task.output is None:
                    raise WorkflowError(f"step {step!r}: input task {task.step.name}/"
                                        f"{task.key} has no output")
                uris.append(str(task.output))
                needed.append(task)
        else:
            raise WorkflowError(f"step {step!r}: an input must be a path, a URI, a task, "
                                f"a step or a gather, got {item!r}")
    return uris, needed
