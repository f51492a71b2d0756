"""The Python client (``Client``), used by the CLI, the worker agent and user scripts."""

from scitq_bench.client.api import Client

__all__ = ["Client"]
