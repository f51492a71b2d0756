"""The Python client (``Client``), used by the CLI, the worker agent and user scripts;
``Files`` copies data across every store (also ``Client.files``)."""

from scitq_bench.client.api import Client
from scitq_bench.client.files import Files

__all__ = ["Client", "Files"]
