"""``Workflow``: declare steps and tasks in a script, then ``run`` them (see
docs/workflows.md)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scitq_bench.workflow import housekeeping, naming, running
from scitq_bench.workflow.errors import WorkflowError
from scitq_bench.workflow.locations import as_folder, check_base, resolve
from scitq_bench.workflow.model import (
    OutputURI,
    Step,
    StepOptions,
    Task,
    TaskOptions,
    input_uris,
    prerequisites,
)

if TYPE_CHECKING:
    from scitq_bench.client.api import Client


class Workflow:
    """A named set of steps. Everything given here is a default that each ``step``
    call may override; ``max_workflow_workers`` caps the workers all steps keep alive
    together. ``debug``: steps one at a time, tasks one at a time, no retry, and a
    failed task holds the workflow (``WorkflowHeld``)."""

    def __init__(
        self,
        name: str,
        *,
        client: Client | None = None,
        base: str | None = None,
        container: str | None = None,
        container_options: str | None = None,
        shell: bool | None = None,
        retry: int | None = None,
        download_timeout: float | None = None,
        run_timeout: float | None = None,
        flavor: str | None = None,
        provider: str | None = None,
        region: str | None = None,
        concurrency: int | None = None,
        rounds: int | None = None,
        prefetch: int | None = None,
        max_step_workers: int | None = None,
        max_workflow_workers: int | None = None,
        priority: int = 0,
        debug: bool = False,
    ) -> None:
        self.name = naming.check_workflow_name(name)
        self._client = client
        self.base = check_base(base)
        self.task_defaults = TaskOptions(
            container=container, container_options=container_options, shell=shell,
            retry=retry, download_timeout=download_timeout, run_timeout=run_timeout)
        self.step_defaults = StepOptions(
            flavor=flavor, provider=provider, region=region, concurrency=concurrency,
            rounds=rounds, prefetch=prefetch, max_workers=max_step_workers)
        if max_workflow_workers is not None and max_workflow_workers < 1:
            raise WorkflowError(f"max_workflow_workers must be 1 or more, got "
                                f"{max_workflow_workers}")
        self.max_workflow_workers = max_workflow_workers
        self.priority = priority
        self.debug = debug
        self.steps: dict[str, Step] = {}

    @property
    def client(self) -> Client:
        """The client given, else one from the environment or the config file (made
        on first use: declaring needs no server)."""
        if self._client is None:
            from scitq_bench.client.api import Client

            self._client = Client()
        return self._client

    def step(
        self,
        step: str,
        *,
        command: str,
        name: str | None = None,
        key: str | None = None,
        inputs: Any = None,
        output: str | None = None,
        resources: str | Sequence[str] | None = None,
        depends: Any = None,
        container: str | None = None,
        container_options: str | None = None,
        shell: bool | None = None,
        retry: int | None = None,
        download_timeout: float | None = None,
        run_timeout: float | None = None,
        cpu: int | None = None,
        mem: float | None = None,
        priority: int | None = None,
        flavor: str | None = None,
        provider: str | None = None,
        region: str | None = None,
        concurrency: int | None = None,
        rounds: int | None = None,
        tasks_per_worker: int | None = None,
        max_workers: int | None = None,
        prefetch: int | None = None,
    ) -> Task:
        """Declare one task of step ``step`` (its batch is ``<workflow>.<step>``) and
        return it.

        ``inputs``: paths (relative ones under the base), URIs, tasks, steps or gathers
        (a task stands for its output, and is waited for). ``output``: a folder URI or a
        path under the base; by default ``<base>/<step>/<key>/``. ``depends``: tasks,
        steps or gathers to wait for. ``name``/``key``: how the task is found again
        (see ``naming``). The staffing options (flavor ... prefetch) are the step's:
        a later call may repeat them, not change them."""
        batch = naming.batch_name(self.name, step)
        staffing = StepOptions(flavor=flavor, provider=provider, region=region,
                               concurrency=concurrency, rounds=rounds,
                               tasks_per_worker=tasks_per_worker, max_workers=max_workers,
                               prefetch=prefetch)
        found = self.steps.get(step)
        merged = staffing if found is None else found.options.merged(staffing, step)
        if found is None:
            found = Step(step, batch, staffing)
        options = TaskOptions(container=container, container_options=container_options,
                              shell=shell, retry=retry, download_timeout=download_timeout,
                              run_timeout=run_timeout, cpu=cpu, mem=mem,
                              priority=priority).over(self.task_defaults)
        uris, from_inputs = input_uris(inputs, step, lambda p: resolve(p, self.base, "input"))
        resource_uris = [resolve(r, self.base, "resource")
                         for r in ([resources] if isinstance(resources, str) else resources or [])]
        given_output = None if output is None else as_folder(resolve(output, self.base, "output"))
        task_key = naming.task_key(step, key=key, name=name, command=command,
                                   container=options.container, inputs=uris,
                                   resources=resource_uris, output=given_output)
        if given_output is None and self.base is not None:
            given_output = f"{self.base}{step}/{naming.path_segment(task_key)}/"
        needed = list(dict.fromkeys([*from_inputs, *prerequisites(depends, step)]))
        task = Task(step=found, key=task_key, name=name or task_key, command=command,
                    inputs=tuple(uris), resources=tuple(resource_uris), output=None,
                    options=options, depends=tuple(needed))
        if given_output is not None:
            task.output = OutputURI(given_output, task)
        found.add(task)
        found.options = merged
        self.steps[step] = found  # only now: a refused declaration leaves nothing behind
        return task

    def staffing(self, step: Step) -> StepOptions:
        """The step's options with the workflow's defaults filled in."""
        return step.options.over(self.step_defaults)

    def gather(self, step: str, attribute: str | None = None) -> Any:
        """``step``'s tasks so far (or their outputs): as ``Step.gather``."""
        if step not in self.steps:
            raise WorkflowError(f"no step {step!r} declared in workflow {self.name!r}")
        return self.steps[step].gather(attribute)

    # -- running ---------------------------------------------------------------------

    def run(self, refresh: float = 2.0, progress: bool = True,
            retry_failed: bool = False) -> running.RunResult:
        """Send what is not on the server yet (found by batch and key: a second run
        creates nothing twice), staff each step, and follow the work until it ends,
        with a live display when ``progress``. ``retry_failed``: relaunch the tasks a
        previous run left failed. Ctrl-C stops following, not the work."""
        return running.run(self, refresh=refresh, progress=progress,
                           retry_failed=retry_failed)

    # -- afterwards ------------------------------------------------------------------

    def tasks(self, step: str | None = None) -> list[housekeeping.StoredTask]:
        """The workflow's tasks as the server has them (all steps, or ``step``)."""
        return housekeeping.stored_tasks(self.client, self.name, self._step_names(step))

    def outputs(self, step: str | None = None) -> list[str]:
        """The output URIs of the workflow's tasks (all steps, or ``step``)."""
        return [t.output for t in self.tasks(step) if t.output]

    def fetch_outputs(self, dest: str | Path, step: str | None = None) -> list[Path]:
        """Copy every task's output to ``dest/<step>/<key>/``; returns those folders."""
        return housekeeping.fetch_outputs(self.client, self.tasks(step), Path(dest))

    def logs(self, step: str | None = None) -> list[housekeeping.TaskLog]:
        """stdout and stderr of every task's latest execution."""
        return housekeeping.logs(self.client, self.tasks(step))

    def fetch_logs(self, dest: str | Path, step: str | None = None) -> list[Path]:
        """Write ``dest/<step>/<key>.stdout`` and ``.stderr`` for every task."""
        return housekeeping.write_logs(self.logs(step), Path(dest))

    def clean(self, delete_outputs: bool = False,
              logs_to: str | Path | None = None) -> housekeeping.Cleaned:
        """Delete the workflow's batches (their tasks and recruiters with them), after
        saving the logs under ``logs_to`` when given; with ``delete_outputs``, the
        tasks' output folders too (not the rest of the base: inputs may live there)."""
        return housekeeping.clean(self.client, self.name, self._step_names(None),
                                  delete_outputs=delete_outputs,
                                  logs_to=None if logs_to is None else Path(logs_to))

    def _step_names(self, step: str | None) -> list[str]:
        """``[step]``, else the declared steps and those found on the server (a script
        that only cleans need not declare them; a step dropped from the script is
        still the workflow's)."""
        if step is not None:
            naming.batch_name(self.name, step)
            return [step]
        found = housekeeping.steps_on_server(self.client, self.name)
        return list(self.steps) + [name for name in found if name not in self.steps]
