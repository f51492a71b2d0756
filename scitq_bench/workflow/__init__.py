"""Workflows: scripts that launch bulk work as steps of tasks, staffed per step, and
follow it (docs/workflows.md)."""

from scitq_bench.workflow.errors import HeldTask, WorkflowError, WorkflowHeld
from scitq_bench.workflow.model import Gather, OutputURI, Step, Task
from scitq_bench.workflow.running import FailedTask, RunResult, StepResult
from scitq_bench.workflow.workflow import Workflow

__all__ = ["FailedTask", "Gather", "HeldTask", "OutputURI", "RunResult", "Step",
           "StepResult", "Task", "Workflow", "WorkflowError", "WorkflowHeld"]
