"""An FTP or FTPS server in its own process, for the tests of the ftp:// and ftps:// stores.

``python -m tests.support.ftpserver ROOT PORT USER PASSWORD [--tls CERT KEY]
[--passive LOW-HIGH]`` serves ROOT on 127.0.0.1:PORT to one user with a password. With
``--tls`` it speaks explicit TLS (AUTH TLS) and requires it on the control and data
connections, so a client that forgets to secure them fails instead of passing in clear.
"""

from __future__ import annotations

import argparse

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.servers import FTPServer

PERMISSIONS = "elradfmwMT"  # everything: list, read, write, rename, delete, mkdir, chmod, mtime


def build(root: str, port: int, user: str, password: str, tls: tuple[str, str] | None,
          passive: range | None) -> FTPServer:
    authorizer = DummyAuthorizer()
    authorizer.add_user(user, password, root, perm=PERMISSIONS)
    base = TLS_FTPHandler if tls else FTPHandler
    attributes: dict[str, object] = {"authorizer": authorizer, "permit_foreign_addresses": False,
                                     "auth_failed_timeout": 0.05}
    if passive is not None:
        attributes["passive_ports"] = passive
    if tls:
        attributes.update(certfile=tls[0], keyfile=tls[1], tls_control_required=True,
                          tls_data_required=True)
    handler = type("Handler", (base,), attributes)  # a class of its own: settings are class-wide
    return FTPServer(("127.0.0.1", port), handler)


def _ports(text: str) -> range:
    low, _, high = text.partition("-")
    return range(int(low), int(high) + 1)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.ftpserver")
    parser.add_argument("root")
    parser.add_argument("port", type=int)
    parser.add_argument("user")
    parser.add_argument("password")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--passive", type=_ports, metavar="LOW-HIGH")
    args = parser.parse_args()
    tls = (args.tls[0], args.tls[1]) if args.tls else None
    build(args.root, args.port, args.user, args.password, tls, args.passive).serve_forever()


if __name__ == "__main__":
    main()
