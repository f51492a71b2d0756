"""``scitq-bench``: the root group, its global options and the one place errors are
turned into ``Error: <message>`` with exit code 1."""

from __future__ import annotations

import errno
from typing import Any

import click
import requests

from scitq_bench import __version__
from scitq_bench.cli.account import account
from scitq_bench.cli.batch import batch
from scitq_bench.cli.bench import bench
from scitq_bench.cli.common import CliState, missing_token_message
from scitq_bench.cli.execution import execution
from scitq_bench.cli.files import files
from scitq_bench.cli.flavor import flavor, quota
from scitq_bench.cli.job import job
from scitq_bench.cli.launch import launch
from scitq_bench.cli.leaderboard import leaderboard
from scitq_bench.cli.output import add_no_header
from scitq_bench.cli.phase import phase
from scitq_bench.cli.provider import cost, provider
from scitq_bench.cli.recruiter import recruiter
from scitq_bench.cli.repeated import refuse_repeated_options
from scitq_bench.cli.server import server
from scitq_bench.cli.submission import submission
from scitq_bench.cli.task import task
from scitq_bench.cli.up import up
from scitq_bench.cli.worker import worker
from scitq_bench.exceptions import ScitqBenchError, Unauthorized


class RootGroup(click.Group):
    """Reports expected failures as one line, never a traceback, and refuses a
    single-value option given twice (Click would keep the last one silently)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        refuse_repeated_options(ctx, self, args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Unauthorized as exc:
            state = ctx.obj if isinstance(ctx.obj, CliState) else None
            if state is not None and state.built_without_token():
                raise click.ClickException(missing_token_message()) from None
            raise click.ClickException(str(exc)) from None
        except ScitqBenchError as exc:
            raise click.ClickException(str(exc)) from None
        except requests.RequestException as exc:
            raise click.ClickException(f"request failed: {exc}") from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # click silences a closed pipe (``| head``) itself
            raise click.ClickException(str(exc)) from None


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-s", "--server", metavar="URL|HOST[:PORT]",
              help="Server URL, or its host (port 5000 implied) as scitq-manage's -s "
                   "[default: $SCITQ_BENCH_SERVER, else the client config written by "
                   "`server init`, else http://127.0.0.1:5000].")
@click.option("--token", metavar="TOKEN",
              help="API token [default: $SCITQ_BENCH_TOKEN, else the client config].")
@click.option("-t", "--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True, help="Seconds to wait for each server answer.")
@click.option("--retry-seconds", type=click.FloatRange(min=0), metavar="SECONDS",
              help="How long to keep trying a server that is down or busy, 0 for one "
                   "try [default: $SCITQ_BENCH_RETRY_SECONDS, else the client config's "
                   "retry_seconds, else 5].")
@click.version_option(__version__, prog_name="scitq-bench")
@click.pass_context
def cli(ctx: click.Context, server: str | None, token: str | None, timeout: float,
        retry_seconds: float | None) -> None:
    """scitq-bench: a batch scheduler for evaluation work. A server queues tasks
    (commands or containers, with their inputs and outputs) in batches; workers pull
    and run them, recruited on demand from clouds, SSH hosts or this machine;
    benchmarks score participants' submissions on the same queue.

    \b
    Start here:
      scitq-bench up                           a server and a worker on this machine
      scitq-bench launch -b BATCH -- COMMAND   queue a task
      scitq-bench batch list                   follow the batches
      scitq-bench task list -b BATCH           the batch's newest tasks

    Commands are OBJECT VERB; `scitq-bench OBJECT --help` lists an object's verbs."""
    ctx.obj = CliState(server=server, token=token, timeout=timeout,
                       retry_seconds=retry_seconds)


# Every top-level command, by theme (``--help`` lists them sorted by name).
COMMANDS = (
    server, up, worker, task, batch, execution, launch, files,  # running work
    flavor, quota, recruiter, job, provider, cost,  # recruiting machines
    account, bench, phase, submission, leaderboard,  # benchmarks
)
for command in COMMANDS:
    cli.add_command(command)
add_no_header(cli)  # -H on every list, as scitq-manage's lists have it


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="scitq-bench")


if __name__ == "__main__":
    main()
