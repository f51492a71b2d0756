"""State shared by every command: the global options and the lazily built client."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

import click

from scitq_bench.client import Client
from scitq_bench.settings import client_config_path, load_client_settings

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")

# A server that is down or busy is tried again for this long unless --retry-seconds,
# SCITQ_BENCH_RETRY_SECONDS or the config file say otherwise: long enough to ride over
# a server restart, short enough that a typo in --server fails fast at the prompt.
CLI_RETRY_SECONDS = 5.0


@dataclass
class CliState:
    """The root group's options; the client is only built when a command needs it,
    so ``--help`` and the server commands never touch the client config."""

    server: str | None = None
    token: str | None = None
    timeout: float = 60.0
    retry_seconds: float | None = None
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        """The invocation's client: retrying for --retry-seconds, else
        SCITQ_BENCH_RETRY_SECONDS or the config file, else the CLI's own default
        (shorter than a script's)."""
        if self._client is None:
            settings = load_client_settings(self.server, self.token, self.retry_seconds)
            retry_for = (CLI_RETRY_SECONDS if settings.retry_seconds is None
                         else settings.retry_seconds)
            self._client = Client(settings.server, settings.token, timeout=self.timeout,
                                  retry_for=retry_for)
        return self._client

    def built_without_token(self) -> bool:
        """The client was built and found no token anywhere (a 401 then means that)."""
        return self._client is not None and not self._client.token


def cli_state() -> CliState:
    """The state of the current invocation (a default one outside the root group)."""
    ctx = click.get_current_context()
    return ctx.ensure_object(CliState)


def pass_client(function: Callable[Concatenate[Client, P], R]) -> Callable[P, R]:
    """Give the command the API client as its first argument."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return function(cli_state().client(), *args, **kwargs)

    return wrapper


class GpuCount(click.ParamType):
    """``--gpu N|all``: a number of GPUs, or every GPU of the worker."""

    name = "N|all"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        text = str(value).strip().lower()
        if text == "all":
            return "all"
        if text.isascii() and text.isdigit():
            return int(text)
        self.fail(f"{value!r} is not a number of GPUs (0 or more) nor 'all'", param, ctx)


def json_option(function: F) -> F:
    """``--json`` on every list and show command."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print machine-readable JSON instead of a table.")(function)


def long_option(function: F) -> F:
    return click.option("-L", "--long", is_flag=True,
                        help="Show every field, untruncated.")(function)


def status_option(kind: str) -> Callable[[F], F]:
    return click.option("-S", "--status", "status", metavar="STATUS[,STATUS...]",
                        help=f"Only {kind} in these statuses (comma-separated).")


def stream_options(function: F) -> F:
    """``-o``/``-e``/``-f`` of the output commands."""
    function = click.option("-f", "--follow", is_flag=True,
                            help="Keep printing new output until the execution ends.")(function)
    function = click.option("-e", "--stderr", "stderr_only", is_flag=True,
                            help="Only stderr (written to stdout).")(function)
    function = click.option("-o", "--stdout", "stdout_only", is_flag=True,
                            help="Only stdout.")(function)
    return function


def missing_token_message() -> str:
    """What to do when the server wants a token and none was given (never the token)."""
    return ("the server needs an API token and none was given: set SCITQ_BENCH_TOKEN, "
            "pass --token TOKEN, or use the client config file that `scitq-bench server "
            f"init` (and ./scripts/run) writes: {client_config_path()} "
            "(SCITQ_BENCH_CONFIG names another); `scitq-bench server token` mints one "
            "on the server's machine")
