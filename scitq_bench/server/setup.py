"""``server init``: migrate the schema and create the first admin token."""

from __future__ import annotations

from sqlalchemy import func, select

from scitq_bench.exceptions import Conflict
from scitq_bench.server import auth
from scitq_bench.server.db import Database
from scitq_bench.server.migrate import upgrade
from scitq_bench.server.queue.models import ApiToken
from scitq_bench.settings import ServerSettings


def init_server(settings: ServerSettings, *, new_token: bool = False) -> str:
    """Create the schema and an admin token; returns the token (shown once).
    Refuses to mint a second admin token unless ``new_token``."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    try:
        with db.write() as session:
            admins = session.scalar(
                select(func.count()).select_from(ApiToken).where(ApiToken.role == auth.ADMIN)
            )
            if admins and not new_token:
                raise Conflict(
                    "the server is already initialised (an admin token exists); "
                    "use --new-token to create another one"
                )
            return auth.issue_token(session, auth.ADMIN, name="admin")
    finally:
        db.dispose()


def create_token(settings: ServerSettings, role: str, name: str | None = None) -> str:
    """Mint an admin or enrollment token directly in the database (server side)."""
    db = Database(settings.database_url)
    try:
        with db.write() as session:
            return auth.issue_token(session, role, name=name)
    finally:
        db.dispose()
