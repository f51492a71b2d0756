"""What the benchmarks share: server-clock instants and the median round."""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any


def instant(text: str) -> datetime:
    """A timestamp from an API answer (UTC, ISO 8601)."""
    return datetime.fromisoformat(text.rstrip("Z"))


def batch_span(client: Any, batch: str, created: list[dict[str, Any]]) -> float:
    """Seconds from the first task's creation to the last success's finish, both on the
    server's clock (no client-side polling delay in the figure)."""
    finished = max(instant(e["finished_at"])
                   for e in client.execution_list(batch=batch, status="succeeded"))
    return (finished - instant(created[0]["created_at"])).total_seconds()


def median_round(rounds: list[tuple[float, float]]) -> tuple[tuple[float, float], list[float]]:
    """The (ours, baseline) round whose ratio is the median (the lower one for an even
    count: rounds are noisy, a real round beats an average of two), and every ratio."""
    ratios = [ours / baseline for ours, baseline in rounds]
    chosen = rounds[ratios.index(statistics.median_low(ratios))]
    return chosen, sorted(ratios)
