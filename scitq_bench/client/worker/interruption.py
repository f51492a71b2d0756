"""Spot interruption notices, read from the instance metadata service.

A spot machine learns a minute or two ahead that its provider takes it back: AWS posts
``/latest/meta-data/spot/instance-action`` (IMDSv2: a token first), Azure lists a
``Preempt`` event in ``/metadata/scheduledevents``. The worker polls the one its
provider uses, and on a notice tells the server, which re-queues what it held without
spending retries and recruits a replacement if work remains.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import requests

log = logging.getLogger("scitq_bench.worker")

METADATA_URL = "http://169.254.169.254"
KINDS = ("aws", "azure")
TIMEOUT = 2.0


def aws_notice(base: str = METADATA_URL, session: requests.Session | None = None) -> str | None:
    """The interruption notice (its JSON text), or None."""
    http = session or requests.Session()
    token = http.put(f"{base}/latest/api/token", timeout=TIMEOUT,
                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    headers = {"X-aws-ec2-metadata-token": token.text} if token.ok else {}
    answer = http.get(f"{base}/latest/meta-data/spot/instance-action", headers=headers,
                      timeout=TIMEOUT)
    return answer.text if answer.status_code == 200 and answer.text.strip() else None


def azure_notice(base: str = METADATA_URL, session: requests.Session | None = None) -> str | None:
    http = session or requests.Session()
    answer = http.get(f"{base}/metadata/scheduledevents", params={"api-version": "2020-07-01"},
                      headers={"Metadata": "true"}, timeout=TIMEOUT)
    if answer.status_code != 200:
        return None
    events = (answer.json() or {}).get("Events") or []
    preempts = [e for e in events if e.get("EventType") == "Preempt"]
    if not preempts:
        return None
    event = preempts[0]
    return f"Preempt {event.get('EventId', '')} not before {event.get('NotBefore', '?')}"


def reader(kind: str, base: str = METADATA_URL) -> Callable[[], str | None]:
    """A function polling ``kind``'s metadata service; errors read as no notice (the
    service may be slow to answer, and a missed poll is retried)."""
    if kind not in KINDS:
        raise ValueError(f"unknown spot provider {kind!r} (one of {', '.join(KINDS)})")
    read = aws_notice if kind == "aws" else azure_notice
    session = requests.Session()

    def poll() -> str | None:
        try:
            return read(base, session)
        except (requests.RequestException, ValueError) as exc:
            log.debug("metadata service: %s", exc)
            return None

    return poll
