"""The deployment templates and their generators (`server config`, `worker config`):
what they render, what they refuse, what they never write, and that they stay in step
with the code they describe (gunicorn's settings, the environment variables, the
metric names, the wheel's data files)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from scitq_bench import shared_files
from scitq_bench.cli.main import cli
from scitq_bench.deployment import output
from scitq_bench.deployment.render import KINDS, render, templates_dir
from scitq_bench.deployment.values import Values, strip_password
from scitq_bench.exceptions import InvalidInput
from scitq_bench.server.gunicorn_config import read as read_gunicorn_config
from scitq_bench.server.metrics import METRIC_NAMES
from scitq_bench.server.serving import ServeOptions, gunicorn_options

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "scitq_bench"
PASSWORD = "S3cret-Pa55"
EXECUTABLE = "/opt/scitq-bench/venv/bin/scitq-bench"
# set by the worker in each task's environment: documented in the template, not settings
TASK_VARIABLES = {"SCITQ_BENCH_EXECUTION_ID", "SCITQ_BENCH_TASK_ID"}


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


# -- rendering ---------------------------------------------------------------------------


def test_every_kind_renders_without_the_database_password() -> None:
    stripped, removed = strip_password(
        f"postgresql+psycopg2://scitq:{PASSWORD}@db.example.org:5432/scitq?sslmode=require")
    assert removed and PASSWORD not in stripped
    values = Values(executable=EXECUTABLE, database_url=stripped,
                    public_url="https://scitq.example.org")
    for kind in KINDS:
        text = render(kind, values)
        assert text.endswith("\n") and PASSWORD not in text, kind
    assert "SCITQ_BENCH_DATABASE_URL='postgresql+psycopg2://scitq@db.example.org:5432/scitq" \
           "?sslmode=require'" in render("env-server", values)


def test_a_password_is_refused_however_it_is_written() -> None:
    for url in (f"postgresql://scitq:{PASSWORD}@db/scitq",
                f"postgresql://scitq@db/scitq?password={PASSWORD}&sslmode=require"):
        stripped, removed = strip_password(url)
        assert removed and PASSWORD not in stripped
        with pytest.raises(InvalidInput, match="password"):
            Values(database_url=url)
    assert strip_password("sqlite:////var/lib/scitq-bench/x.db") == (
        "sqlite:////var/lib/scitq-bench/x.db", False)


def test_env_command_leaves_the_password_out_and_says_where_it_goes(tmp_path: Path) -> None:
    target = tmp_path / "scitq-bench.env"
    result = invoke("server", "config", "env", "--output", str(target), "--database-url",
                    f"postgresql+psycopg2://scitq:{PASSWORD}@db.example.org/scitq")
    assert result.exit_code == 0, result.output
    text = target.read_text()
    assert PASSWORD not in text and PASSWORD not in result.output
    assert "SCITQ_BENCH_DATABASE_URL='postgresql+psycopg2://scitq@db.example.org/scitq'" in text
    assert re.search(r"^PGPASSWORD=$", text, re.MULTILINE)
    assert "PGPASSWORD" in result.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_units_carry_the_values_and_no_secret() -> None:
    values = Values(executable=EXECUTABLE, user="sqb", data_dir="/srv/sqb",
                    log_dir="/mnt/shared/logs", processes=4, port=5100,
                    gunicorn_config="/etc/scitq-bench/gunicorn.conf.py")
    server = render("systemd-server", values)
    assert (f"ExecStart={EXECUTABLE} server run --host 127.0.0.1 --port 5100 --processes 4 "
            "--max-long-polls 10000 --no-reaper --data-dir /srv/sqb --gunicorn-config "
            "/etc/scitq-bench/gunicorn.conf.py\n") in server
    assert "ReadWritePaths=/srv/sqb /mnt/shared/logs\n" in server
    assert "User=sqb\nGroup=scitq-bench\n" in server
    assert "EnvironmentFile=/etc/scitq-bench/scitq-bench.env\n" in server
    assert "Environment=PROMETHEUS_MULTIPROC_DIR=/run/scitq-bench/metrics\n" in server
    # without --processes, `server run` picks (one per CPU on PostgreSQL, one on SQLite)
    assert "--processes" not in render("systemd-server", Values(executable=EXECUTABLE))
    scheduler = render("systemd-scheduler", values)
    assert f"ExecStart={EXECUTABLE} server scheduler --data-dir /srv/sqb\n" in scheduler
    worker = render("systemd-worker", Values(executable=EXECUTABLE, worker_name="gpu-1",
                                             server_url="https://scitq.example.org",
                                             concurrency=4, engine_group="docker"))
    assert (f"ExecStart={EXECUTABLE} worker run https://scitq.example.org --name gpu-1 "
            "--concurrency 4 --work-dir /var/lib/scitq-bench-worker\n") in worker
    assert "KillMode=mixed\n" in worker and "\nSupplementaryGroups=docker\n" in worker
    assert "\nPrivateDevices=" not in worker  # GPUs: /dev/nvidia*
    for unit in (server, scheduler, worker):
        assert "SCITQ_BENCH_TOKEN=" not in unit and "PGPASSWORD" not in unit


def test_nginx_site_values() -> None:
    values = Values(public_url="https://scitq.example.org",
                    upstreams=("10.0.0.1:5000", "[fd00::2]:5000"),
                    metrics_allow=("10.0.0.0/8",), max_body_size="8g")
    site = render("nginx", values)
    assert "server 10.0.0.1:5000 max_fails=3" in site and "server [fd00::2]:5000 " in site
    assert "server_name scitq.example.org;" in site
    assert "ssl_certificate /etc/letsencrypt/live/scitq.example.org/fullchain.pem;" in site
    assert "client_max_body_size 8g;" in site and "allow 10.0.0.0/8;" in site
    assert "return 301 https://scitq.example.org$request_uri;" in site
    assert "proxy_read_timeout 90s;" in site and "proxy_request_buffering off;" in site
    with pytest.raises(InvalidInput, match="HTTPS"):
        render("nginx", Values(public_url="http://scitq.example.org"))


def test_templates_are_strict_about_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name no value defines is an error, never an empty string in a unit."""
    import jinja2

    (tmp_path / "systemd").mkdir()
    (tmp_path / "systemd" / "scitq-bench.target").write_text("[Unit]\nWants={{ no_such }}\n")
    monkeypatch.setattr("scitq_bench.deployment.render.templates_dir", lambda: tmp_path)
    with pytest.raises(jinja2.UndefinedError, match="no_such"):
        render("systemd-target", Values())


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "reason"), [
    (["server", "config", "sshd"], "No such command"),
    (["server", "config", "systemd", "--unit", "socket"], "'socket' is not one of"),
    (["server", "config", "systemd", "--port", "70000"], "70000 is not in the range"),
    (["server", "config", "systemd", "--processes", "0"], "0 is not in the range"),
    (["server", "config", "systemd", "--data-dir", "var/lib/x"], "not an absolute path"),
    (["server", "config", "systemd", "--executable", "bin/scitq-bench"], "not an absolute path"),
    (["server", "config", "systemd", "--data-dir", "/var/lib/%H"], "'%'"),
    (["server", "config", "systemd", "--data-dir", "/var/lib/$USER"], "'$'"),
    (["server", "config", "systemd", "--data-dir", "/var/lib/a b"], "no space"),
    (["server", "config", "systemd", "--data-dir", "/var/lib/x\nExecStartPre=/bin/sh"],
     "newline"),
    (["server", "config", "systemd", "--user", "9lives"], "group name systemd accepts"),
    (["server", "config", "systemd", "--user", "root;rm"], "group name systemd accepts"),
    (["server", "config", "systemd", "--host", "local host"], "host name"),
    (["server", "config", "nginx", "--upstream", "10.0.0.1"], "not host:port"),
    (["server", "config", "nginx", "--upstream", "::1:5000"], "in brackets"),
    (["server", "config", "nginx", "--upstream", "10.0.0.1:99999"], "not a port"),
    (["server", "config", "nginx", "--public-url", "ftp://scitq.example.org"], "http"),
    (["server", "config", "nginx", "--public-url", "https://a\"b.org"], "plain http"),
    (["server", "config", "nginx", "--certificate", "cert.pem"], "not an absolute path"),
    (["server", "config", "nginx", "--max-body-size", "4 g"], "a size"),
    (["server", "config", "nginx", "--metrics-allow", "everyone"], "not an address"),
    (["server", "config", "env", "--database-url", "mysql://db/x"], "PostgreSQL or SQLite"),
    (["server", "config", "env", "--database-url", "postgresql://u@db/x?a='1'"],
     "characters"),
    (["server", "config", "env", "--public-url", "https://u:p@scitq.example.org"],
     "plain http"),
    (["server", "config", "prometheus", "--scrape-interval", "often"], "a duration"),
    (["worker", "config", "systemd", "https://scitq.example.org", "--work-dir", "work"],
     "not an absolute path"),
    (["worker", "config", "systemd", "https://scitq.example.org", "--name", "a b"],
     "worker name"),
    (["worker", "config", "systemd", "https://scitq.example.org", "--concurrency", "0"],
     "0 is not in the range"),
    (["worker", "config", "systemd", "not a url"], "http"),
])
def test_bad_input_is_refused_and_nothing_written(args: list[str], reason: str,
                                                   tmp_path: Path) -> None:
    target = tmp_path / "out"
    result = invoke(*args, "--output", str(target))
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert reason in result.output
    assert not target.exists() and list(tmp_path.iterdir()) == []


# -- writing -----------------------------------------------------------------------------


def test_output_is_atomic_private_for_env_and_never_overwritten(tmp_path: Path) -> None:
    env = tmp_path / "scitq-bench.env"
    unit = tmp_path / "scitq-bench.target"
    assert invoke("server", "config", "env", "-o", str(env)).exit_code == 0
    assert invoke("server", "config", "systemd", "--unit", "target", "-o", str(unit)).exit_code == 0
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    env.write_text("kept\n")
    env.chmod(0o644)
    again = invoke("server", "config", "env", "-o", str(env))
    assert again.exit_code == 1 and "--force" in again.output
    assert env.read_text() == "kept\n"
    forced = invoke("server", "config", "env", "-o", str(env), "--force")
    assert forced.exit_code == 0 and "SCITQ_BENCH_DATA_DIR=" in env.read_text()
    assert stat.S_IMODE(env.stat().st_mode) == 0o600  # also when replacing a 0644 file
    assert sorted(p.name for p in tmp_path.iterdir()) == [env.name, unit.name]  # no temp left


def test_output_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        output.write(tmp_path / "no" / "file", "x", private=False)


def test_without_output_the_file_is_printed() -> None:
    result = invoke("server", "config", "grafana")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["uid"] == "scitq-bench"


def test_the_default_executable_is_the_running_command(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    command = tmp_path / "bin" / "scitq-bench"
    command.parent.mkdir()
    command.write_text("#!/bin/sh\n")
    command.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(command), "server", "config"])
    result = invoke("server", "config", "systemd")
    assert result.exit_code == 0, result.output
    assert f"ExecStart={command} server run " in result.stdout


def test_home_paths_are_warned_about() -> None:
    result = invoke("worker", "config", "systemd", "https://scitq.example.org",
                    "--executable", "/home/me/venv/bin/scitq-bench")
    assert result.exit_code == 0
    assert "ProtectHome" in result.stderr and "/home/me/venv/bin/scitq-bench" in result.stderr


# -- in step with the code ----------------------------------------------------------------


@pytest.mark.parametrize(("processes", "log_format"), [(3, "text"), (None, "json")])
def test_gunicorn_template_equals_what_server_run_sets(
        processes: int | None, log_format: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCITQ_BENCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SCITQ_BENCH_LOG_FORMAT", log_format)
    monkeypatch.setenv("SCITQ_BENCH_MAX_LONG_POLLS", "0")
    monkeypatch.delenv("SCITQ_BENCH_MAX_LONG_POLLS")  # the file sets it; restored after
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(render("gunicorn", Values(host="::1", port=5123, processes=processes,
                                                max_long_polls=777)))
    from_file = read_gunicorn_config(config)
    expected = gunicorn_options(
        ServeOptions(host="::1", port=5123, processes=processes or os.cpu_count() or 1,
                     max_long_polls=777, log_format=log_format), when_ready=print)
    expected.pop("when_ready")  # `server run` prints its URL; gunicorn says it itself
    assert from_file == expected


def test_env_template_names_every_variable_the_package_reads() -> None:
    sources = "\n".join(path.read_text() for path in PACKAGE.rglob("*.py"))
    names = set(re.findall(r"\bSCITQ_BENCH_[A-Z][A-Z_]*[A-Z]\b", sources))
    # ServerSettings.from_env reads SCITQ_BENCH_<NAME> for each setting("name")
    settings = (PACKAGE / "settings.py").read_text()
    names |= {f"SCITQ_BENCH_{name.upper()}"
              for name in re.findall(r"\bsetting\(\"([a-z_]+)\"", settings)}
    names |= {"PGPASSWORD", "PROMETHEUS_MULTIPROC_DIR", "DOCKER_HOST"}
    assert len(names) > 20  # the search itself works
    values = Values(server_url="https://scitq.example.org")
    text = render("env-server", values) + render("env-worker", values)
    assigned = set(re.findall(r"^#?([A-Z][A-Z_]*)=", text, re.MULTILINE))
    assert sorted(names - TASK_VARIABLES - assigned) == []
    assert all(name in text for name in TASK_VARIABLES)


def test_env_files_hold_no_secret_and_split_by_role() -> None:
    values = Values(server_url="https://scitq.example.org", public_url="https://s.example.org")
    server, worker = render("env-server", values), render("env-worker", values)
    for secret in ("PGPASSWORD", "SCITQ_BENCH_SECRET_KEY"):
        assert re.search(rf"^{secret}=$", server, re.MULTILINE)
        assert secret not in worker  # tasks see the worker's environment
    assert re.search(r"^SCITQ_BENCH_TOKEN=$", worker, re.MULTILINE)
    assert "SCITQ_BENCH_SERVER=https://scitq.example.org\n" in worker
    assert "SCITQ_BENCH_PUBLIC_URL=https://s.example.org\n" in server


def test_grafana_queries_use_only_exported_metrics() -> None:
    dashboard = json.loads((templates_dir() / "grafana" / "scitq-bench.json").read_text())
    assert dashboard["__inputs"][0]["name"] == "DS_PROMETHEUS"
    expressions = [target["expr"] for panel in dashboard["panels"]
                   for target in panel.get("targets", [])]
    expressions += [str(variable.get("query")) for variable in dashboard["templating"]["list"]]
    used = {name for expression in expressions
            for name in re.findall(r"\bscitq_bench_[a-z_]+", expression)}
    exported = set(METRIC_NAMES)
    histogram_series = {f"{name}{suffix}" for name in exported
                        for suffix in ("_bucket", "_sum", "_count")}
    assert used and sorted(used - exported - histogram_series) == []
    assert len({name.removesuffix("_bucket") for name in used}) >= 12  # nearly all shown
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
    # figures read from the database are the same on every replica: never summed raw
    for expression in expressions:
        for name in ("scitq_bench_tasks", "scitq_bench_workers", "scitq_bench_submissions",
                     "scitq_bench_executions_ended_total", "scitq_bench_machines_hired"):
            assert f"sum({name}" not in expression and f"sum(rate({name}" not in expression


def test_every_template_ships_in_the_wheel() -> None:
    """Each file under templates/ is in [tool.setuptools.data-files], at its place under
    share/scitq_bench/templates, where render finds it in an installed package."""
    tomllib = pytest.importorskip("tomllib")  # the standard library's from Python 3.11
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = {f"{destination}/{Path(source).name}": source
               for destination, sources in config["tool"]["setuptools"]["data-files"].items()
               for source in sources}
    for template in sorted(p for p in (ROOT / "templates").rglob("*") if p.is_file()):
        relative = template.relative_to(ROOT).as_posix()
        assert shipped.get(f"share/scitq_bench/{relative}") == relative
    assert {spec.template for spec in KINDS.values()} <= {
        p.relative_to(ROOT / "templates").as_posix()
        for p in (ROOT / "templates").rglob("*") if p.is_file()}


def test_templates_are_found_in_a_source_tree_and_an_installation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert templates_dir() == ROOT / "templates"  # this source tree's
    installed = tmp_path / "prefix" / "share" / "scitq_bench" / "templates"
    installed.mkdir(parents=True)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    assert templates_dir() == ROOT / "templates"  # the source tree still comes first
    monkeypatch.setattr(shared_files, "__file__", str(tmp_path / "site-packages"
                                                      / "scitq_bench" / "shared_files.py"))
    assert templates_dir() == installed  # a wheel's: no templates/ beside the package


def test_config_commands_load_neither_flask_nor_sqlalchemy() -> None:
    code = ("import sys, scitq_bench.cli.config; "
            "print(sorted(m for m in ('flask', 'sqlalchemy', 'jinja2') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True)
    assert found.stdout.strip() == "[]"
