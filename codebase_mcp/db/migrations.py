"""Alembic, driven from code: `codebase-mcp db upgrade | downgrade REV | current`.

The Alembic scripts live in the top-level migrations/ folder, installed as the package
codebase_mcp.migrations (pyproject.toml) and found here as its resources. Alembic runs on asyncpg through
SQLAlchemy's asyncio engine, so the project needs one PostgreSQL driver, not two.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, TextIO, TypeVar

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

T = TypeVar("T")
# A regular package (it has an __init__.py), so its resources are a directory on disk in a wheel's
# install and in an editable one alike: Alembic reads env.py and versions/ from a path.
MIGRATIONS_DIR = Path(str(resources.files("codebase_mcp.migrations")))


def sqlalchemy_url(dsn: str) -> str:
    """postgresql://... -> postgresql+asyncpg://... (the scheme SQLAlchemy needs)."""
    for prefix in ("postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+asyncpg://" + dsn[len(prefix) :]
    raise ValueError("database URL must start with postgresql:// or postgres://")


def alembic_config(dsn: str, *, stdout: TextIO | None = None) -> Config:
    if not (MIGRATIONS_DIR / "env.py").exists():
        raise RuntimeError(f"Alembic scripts not found in {MIGRATIONS_DIR}")
    config = Config(stdout=stdout) if stdout is not None else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute, not an ini option: configparser would choke on '%' in passwords.
    config.attributes["sqlalchemy_url"] = sqlalchemy_url(dsn)
    return config


def head_revision() -> str:
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None
    return head


def _outside_event_loop(function: Callable[[], T]) -> T:
    """Run `function` here, or on a helper thread when this thread runs an event loop.

    Alembic's env.py drives asyncpg with asyncio.run(), which refuses to start inside a running
    loop; these functions stay synchronous and callable from anywhere.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return function()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function).result()


def upgrade(dsn: str, revision: str = "head") -> None:
    _outside_event_loop(lambda: command.upgrade(alembic_config(dsn), revision))


def downgrade(dsn: str, revision: str) -> None:
    _outside_event_loop(lambda: command.downgrade(alembic_config(dsn), revision))


def current(dsn: str) -> str | None:
    """The database's revision (None on a database that was never migrated)."""
    buffer = io.StringIO()
    _outside_event_loop(lambda: command.current(alembic_config(dsn, stdout=buffer)))
    text = buffer.getvalue().strip()
    return text.split()[0] if text else None


def run_with_connection(work: Callable[[Any], Awaitable[Any]]) -> None:
    """Run `work(asyncpg connection)` inside the current migration's transaction (data migrations)."""
    from alembic import op

    adapted = op.get_bind().connection.dbapi_connection
    assert adapted is not None
    adapted.run_async(work)


def run_sql_script(sql: str) -> None:
    """Run a multi-statement SQL script inside the current migration's transaction.

    SQLAlchemy's asyncpg adapter prepares every statement, and a prepared statement holds one
    command; asyncpg's own execute() without arguments uses the simple query protocol instead.
    """
    run_with_connection(lambda conn: conn.execute(sql))
