"""Watching a ``Leadership`` campaign: tests wait for a follower's attempts to lead
instead of sleeping through them."""

from __future__ import annotations

from scitq_bench.server.leader import Leadership


def attempts(leadership: Leadership) -> list[bool]:
    """What each of ``leadership``'s later attempts to lead (``try_lead``, which its
    campaign calls) answered, in order."""
    answers: list[bool] = []
    attempt = leadership.try_lead

    def counted() -> bool:
        answers.append(attempt())
        return answers[-1]

    leadership.try_lead = counted  # type: ignore[method-assign]
    return answers
