"""Shared fixtures: a real, throwaway embedded PostgreSQL with pgvector, migrated to head."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from codebase_mcp.db import migrations
from codebase_mcp.db.embedded import EmbeddedPostgres
from tests.support import connection


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def embedded_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """One embedded server for the whole session, on a free port, deleted with the temp dir."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg-home"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def database_url(embedded_pg: EmbeddedPostgres) -> str:
    """DSN of the session database, migrated to head."""
    dsn = embedded_pg.url()
    migrations.upgrade(dsn)
    return dsn


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    async with connection(database_url) as conn:
        yield conn


async def _admin(embedded_pg: EmbeddedPostgres, statement: str) -> None:
    admin = await asyncpg.connect(embedded_pg.url("postgres"))
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@asynccontextmanager
async def _database(embedded_pg: EmbeddedPostgres, template: str | None = None) -> AsyncIterator[str]:
    """A brand-new database on the session server (a copy of `template` if given), dropped after."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    await _admin(embedded_pg, f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield with_database(embedded_pg.url("postgres"), name)
    finally:
        await _admin(embedded_pg, f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_database_url(embedded_pg: EmbeddedPostgres) -> AsyncIterator[str]:
    """A brand-new, never-migrated database on the session server, dropped afterwards."""
    async with _database(embedded_pg) as dsn:
        yield dsn


@pytest.fixture(scope="session")
def migrated_template(embedded_pg: EmbeddedPostgres) -> str:
    """A database migrated to head once per session, which each test's database copies: a copy
    takes milliseconds where the migrations take seconds (procrastinate's fixtures do the same)."""
    name = "test_template_migrated"
    asyncio.run(_admin(embedded_pg, f'DROP DATABASE IF EXISTS "{name}"'))
    asyncio.run(_admin(embedded_pg, f'CREATE DATABASE "{name}"'))
    migrations.upgrade(with_database(embedded_pg.url("postgres"), name))
    return name


@pytest.fixture
async def migrated_database_url(embedded_pg: EmbeddedPostgres, migrated_template: str) -> AsyncIterator[str]:
    """A brand-new database at head: for tests whose executors claim every pending row."""
    async with _database(embedded_pg, migrated_template) as dsn:
        yield dsn


def make_dir(base: Path, *parts: str) -> Path:
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
