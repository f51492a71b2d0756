"""Each generated deployment file checked by its own program, from the distribution's
packages: systemd-analyze (units), nginx -t (the site), gunicorn --check-config,
promtool (Prometheus); and ``server run --gunicorn-config`` observed applying a file.

A missing program skips its test on a developer's machine; the test command installs
them and sets SCITQ_BENCH_TEST_DEPLOY_TOOLS=required, so there they run or fail.

systemd-analyze verify needs no systemd running (it works in a container, as any user)
and no User= that exists; it needs ExecStart's program to exist, hence the venv's own
scitq-bench. It exits 0 on a directive it ignores (unknown or unparsable), printing a
warning: the tests require its output to be empty.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from scitq_bench.deployment.render import render
from scitq_bench.deployment.values import Values
from tests.support.postgres import free_port

VENV_BIN = Path(sys.executable).parent
SCITQ_BENCH = VENV_BIN / "scitq-bench"
UNITS = {"systemd-server": "scitq-bench-server.service",
         "systemd-scheduler": "scitq-bench-scheduler.service",
         "systemd-target": "scitq-bench.target",
         "systemd-worker": "scitq-bench-worker.service"}


def tool(name: str) -> str:
    """The program's path; skip without it, unless the test command requires it."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found:
        return found
    if os.environ.get("SCITQ_BENCH_TEST_DEPLOY_TOOLS") == "required":
        pytest.fail(f"{name} is required: install nginx-light, prometheus and systemd")
    pytest.skip(f"{name} is not installed")


def run(*argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)


def environment_without_ours() -> dict[str, str]:
    """This environment less its SCITQ_BENCH_* variables: a program under test reads
    only the settings the test gives it."""
    return {key: value for key, value in os.environ.items()
            if not key.startswith("SCITQ_BENCH_")}


# -- systemd -------------------------------------------------------------------------------


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    assert SCITQ_BENCH.is_file()
    values = Values(executable=str(SCITQ_BENCH), processes=2,
                    gunicorn_config="/etc/scitq-bench/gunicorn.conf.py",
                    log_dir="/srv/shared/logs", engine_group="docker",
                    worker_name="gpu-1", server_url="https://scitq.example.org")
    paths = []
    for kind, name in UNITS.items():
        path = tmp_path / name
        path.write_text(render(kind, values))
        paths.append(str(path))
    checked = run(analyze, "verify", *paths)
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")

    # the check sees a mistake: a directive systemd would ignore
    broken = tmp_path / "broken" / UNITS["systemd-worker"]
    broken.parent.mkdir()
    broken.write_text(render("systemd-worker", values).replace("KillMode=mixed",
                                                               "KillMode=gentle"))
    refused = run(analyze, "verify", str(broken))
    assert "kill mode" in refused.stderr and "gentle" in refused.stderr


# -- nginx ---------------------------------------------------------------------------------


def self_signed(folder: Path, host: str) -> tuple[Path, Path]:
    """A certificate and its key for ``host``, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def nginx_check(nginx: str, prefix: Path, site: str) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` of ``site`` in a minimal nginx.conf, everything under ``prefix``
    (pid, temporary files, logs): no root needed, nothing of the machine's nginx used."""
    (prefix / "site.conf").write_text(site)
    temporary = "\n".join(f"    {kind}_temp_path {prefix / kind};"
                          for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (prefix / "nginx.conf").write_text(
        f"pid {prefix / 'nginx.pid'};\nerror_log stderr;\nevents {{}}\nhttp {{\n"
        f"{temporary}\n    access_log off;\n    include {prefix / 'site.conf'};\n}}\n")
    return run(nginx, "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
               "-e", "stderr")


def test_nginx_site_passes_nginx_t(tmp_path: Path) -> None:
    nginx = tool("nginx")
    cert, key = self_signed(tmp_path, "scitq.example.org")
    # nginx -t binds the listening ports: free ones, above 1024
    values = Values(public_url=f"https://scitq.example.org:{free_port()}",
                    http_port=free_port(), certificate=str(cert), certificate_key=str(key),
                    upstreams=("127.0.0.1:5000", "127.0.0.2:5000", "[::1]:5001"),
                    metrics_allow=("127.0.0.1", "10.0.0.0/8"), nginx_log_dir=str(tmp_path))
    site = render("nginx", values)
    checked = nginx_check(nginx, tmp_path, site)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr

    # the check sees a mistake: an unknown directive
    refused = nginx_check(nginx, tmp_path, site.replace("proxy_buffering off;",
                                                        "proxy_buffering never;"))
    assert refused.returncode != 0 and "proxy_buffering" in refused.stderr


# -- gunicorn ------------------------------------------------------------------------------


def test_gunicorn_config_passes_check_config(tmp_path: Path) -> None:
    gunicorn = VENV_BIN / "gunicorn"
    assert gunicorn.is_file()  # a dependency of the package: always there
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(render("gunicorn", Values(port=free_port(), processes=2)))
    env = {**environment_without_ours(), "SCITQ_BENCH_DATA_DIR": str(tmp_path / "data")}
    app = "scitq_bench.server.wsgi:application"
    # --check-config loads the app too: the wsgi module builds it from the environment
    checked = run(str(gunicorn), "--check-config", "-c", str(config), app, env=env,
                  cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert (tmp_path / "data" / "scitq_bench.db").is_file()

    bad = tmp_path / "bad.conf.py"
    bad.write_text(config.read_text() + '\ntimeout = "soon"\n')
    refused = run(str(gunicorn), "--check-config", "-c", str(bad), app, env=env, cwd=tmp_path)
    assert refused.returncode != 0 and "soon" in refused.stderr


# -- Prometheus ----------------------------------------------------------------------------


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = tool("promtool")
    token = tmp_path / "scitq-bench.token"
    config = tmp_path / "prometheus.yml"
    config.write_text(render("prometheus", Values(
        upstreams=("10.0.0.1:5000", "10.0.0.2:5000", "[fd00::3]:5000"),
        metrics_token_file=str(token), scrape_interval="15s")))
    # promtool also checks that the token's file exists (Prometheus reads it at each
    # scrape): without it the configuration is refused
    missing = run(promtool, "check", "config", str(config))
    assert missing.returncode != 0 and str(token) in missing.stdout + missing.stderr
    token.write_text("sqb_metrics_token\n")
    checked = run(promtool, "check", "config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout + checked.stderr
    assert "sqb_metrics_token" not in config.read_text()


# -- server run --gunicorn-config ----------------------------------------------------------


def response_read(sock: socket.socket) -> bytes:
    """One HTTP/1.1 answer with a Content-Length, read whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(4096)
    return head


def test_server_run_applies_a_gunicorn_config_file(tmp_path: Path) -> None:
    """A file setting keepalive to 1 s: an idle connection is closed after about a
    second (server run's own keepalive is 75 s). Its bind and workers are ignored,
    with a warning: the server listens where --port says."""
    port = free_port()
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(f'keepalive = 1\nbind = ["127.0.0.1:{free_port()}"]\nworkers = 3\n')
    process = subprocess.Popen(
        [str(SCITQ_BENCH), "server", "run", "--port", str(port), "--data-dir",
         str(tmp_path / "data"), "--no-reaper", "--gunicorn-config", str(config)],
        env=environment_without_ours(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
            try:
                requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                assert time.monotonic() < deadline, "server run did not answer in 30 s"
                time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: test\r\n\r\n")
            head = response_read(sock)
            assert head.startswith(b"HTTP/1.1 200") and b"close" not in head.lower()
            answered = time.monotonic()
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):  # kept open, as asked...
                sock.recv(1)
            sock.settimeout(10)
            assert sock.recv(1) == b""  # ...then closed by the server
            assert time.monotonic() - answered < 4
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    text = output.decode()
    assert process.returncode == 0, text
    assert "sets bind and workers: ignored" in text
    assert f"listening on http://127.0.0.1:{port} (1 API process(es))" in text


def test_server_run_refuses_a_bad_gunicorn_config_at_once(tmp_path: Path) -> None:
    config = tmp_path / "gunicorn.conf.py"
    config.write_text('timeout = "soon"\n')
    refused = run(str(SCITQ_BENCH), "server", "run", "--port", str(free_port()),
                  "--data-dir", str(tmp_path / "data"), "--gunicorn-config", str(config),
                  env=environment_without_ours())
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"gunicorn config {config}: timeout:" in refused.stderr
