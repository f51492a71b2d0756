"""What a person watching a run sees: per step, its tasks by status, a bar and an
estimate of the time left; at the end, a summary table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

FINAL = ("succeeded", "failed", "cancelled")
ACTIVE = ("assigned", "accepted", "running")
SHOWN = ("waiting", "pending", "running", "succeeded", "failed", "paused", "cancelled")
COLOURS = {"succeeded": "green", "failed": "red", "running": "cyan", "pending": "yellow",
           "paused": "magenta", "cancelled": "red", "waiting": "dim"}


@dataclass
class StepState:
    """A step's batch as last seen: its tasks by status and the mean run time of its
    succeeded executions."""

    name: str
    batch: str
    counts: dict[str, int] = field(default_factory=dict)
    mean_duration: float | None = None
    stopped: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        return sum(self.counts.get(status, 0) for status in FINAL)

    @property
    def active(self) -> int:
        return sum(self.counts.get(status, 0) for status in ACTIVE)

    @property
    def done(self) -> bool:
        return self.finished == self.total

    @property
    def eta(self) -> float | None:
        """Seconds left, roughly: the tasks left times their mean run time, spread over
        as many as run now (None until one succeeded, 0 when done)."""
        left = self.total - self.finished
        if left == 0:
            return 0.0
        if self.mean_duration is None:
            return None
        return left * self.mean_duration / max(self.active, 1)

    @classmethod
    def of(cls, name: str, batch: dict[str, Any] | None) -> StepState:
        if batch is None:
            return cls(name, "")
        return cls(name, batch["name"], dict(batch.get("counts") or {}),
                   (batch.get("durations") or {}).get("mean"),
                   batch.get("status") == "paused")


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def counts_text(counts: dict[str, int]) -> str:
    parts = [f"[{COLOURS.get(s, 'white')}]{s} {counts[s]}[/]" for s in SHOWN if counts.get(s)]
    others = [f"{s} {n}" for s, n in counts.items() if s not in SHOWN and n]
    return "  ".join(parts + others) or "-"


def table(workflow: str, states: Sequence[StepState], title: str | None = None) -> Table:
    grid = Table(title=title or f"workflow {workflow}", expand=False)
    for column in ("step", "progress", "done", "tasks", "ETA"):
        grid.add_column(column)
    for state in states:
        bar = ProgressBar(total=max(state.total, 1), completed=state.finished, width=24)
        grid.add_row(state.name + (" [magenta](stopped)[/]" if state.stopped else ""), bar,
                     f"{state.finished}/{state.total}", counts_text(state.counts),
                     "done" if state.done else duration_text(state.eta))
    return grid


class LiveDisplay:
    """The live table while a run is followed (nothing when not ``enabled``)."""

    def __init__(self, workflow: str, enabled: bool, console: Console | None = None) -> None:
        self.workflow = workflow
        self.console = console or Console()
        self.live: Live | None = None
        if enabled:
            self.live = Live(Group(), console=self.console, refresh_per_second=4,
                             transient=True)
            self.live.start()

    def update(self, states: Sequence[StepState], note: str = "") -> None:
        if self.live is not None:
            self.live.update(Group(table(self.workflow, states), note) if note
                             else table(self.workflow, states))

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def print(self, *what: Any) -> None:
        self.console.print(*what)
