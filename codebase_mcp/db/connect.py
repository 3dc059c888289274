"""Where the database is and how to connect to it (asyncpg, with pgvector's codec registered)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from pgvector.asyncpg import register_vector

from codebase_mcp.db.embedded import EmbeddedPostgres
from codebase_mcp.settings import Settings


def describe_dsn(dsn: str) -> str:
    """host:port/database of a DSN, for messages: never the user or password."""
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or '/'}"


def embedded_server(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.codebase_mcp_home, port=settings.embedded_db_port)


def resolve_database_url(settings: Settings, *, start_embedded: bool = False) -> str:
    """DATABASE_URL when set; otherwise the embedded server's DSN (started first if asked)."""
    if settings.database_url:
        return settings.database_url
    server = embedded_server(settings)
    return server.start() if start_embedded else server.url()


class StartedConnection(asyncpg.Connection):
    """asyncpg's connection, knowing the server settings it started with (see `connect`)."""

    started_with: Mapping[str, str] = {}


async def _init_connection(conn: StartedConnection, settings: Mapping[str, str]) -> None:
    # Vectors cross the wire as pgvector's binary format instead of text: no float formatting.
    await register_vector(conn)
    conn.started_with = dict(settings)


async def connect(
    dsn: str, *, vector: bool = True, settings: Mapping[str, str] | None = None
) -> asyncpg.Connection[Any]:
    """One connection; `vector=False` before the extension exists (migrations, bootstrap).

    `settings` are server settings the session has from its first packet on: a caller that needs
    them on every query (search: codebase_mcp.search.SESSION_SETTINGS) then needs no transaction
    and SET LOCAL per query. `started_with` on the connection says which it has; a pool's RESET
    ALL on release keeps them (they are the session's defaults, not SETs).
    """
    settings = dict(settings or {})
    conn: StartedConnection = await asyncpg.connect(
        dsn, timeout=30, server_settings=settings, connection_class=StartedConnection
    )
    if vector:
        await _init_connection(conn, settings)
    else:
        conn.started_with = settings
    return conn


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, settings: Mapping[str, str] | None = None
) -> asyncpg.Pool[Any]:
    """A pool whose connections start with `settings`, as `connect`'s do."""
    settings = dict(settings or {})
    pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=partial(_init_connection, settings=settings),
        timeout=30,
        server_settings=settings,
        connection_class=StartedConnection,
    )
    return pool
