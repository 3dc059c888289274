"""Where the database is and how to connect to it (asyncpg, with pgvector's codec registered)."""

from __future__ import annotations

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


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    # Vectors cross the wire as pgvector's binary format instead of text: no float formatting.
    await register_vector(conn)


async def connect(dsn: str, *, vector: bool = True) -> asyncpg.Connection[Any]:
    """One connection; `vector=False` before the extension exists (migrations, bootstrap)."""
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn, timeout=30)
    if vector:
        await _init_connection(conn)
    return conn


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool[Any]:
    pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, timeout=30
    )
    return pool
