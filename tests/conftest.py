"""Shared fixtures: a real, throwaway embedded PostgreSQL with pgvector, migrated to head."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from codebase_mcp.db import migrations
from codebase_mcp.db.embedded import EmbeddedPostgres
from codebase_mcp.settings import get_settings
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


@pytest.fixture
async def empty_database_url(embedded_pg: EmbeddedPostgres) -> AsyncIterator[str]:
    """A brand-new, never-migrated database on the session server, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin_dsn = embedded_pg.url("postgres")
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield with_database(admin_dsn, name)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def migrated_database_url(empty_database_url: str) -> str:
    """A brand-new database migrated to head: for tests whose executors claim every pending row."""
    await asyncio.to_thread(migrations.upgrade, empty_database_url)
    return empty_database_url


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let a test change the environment and see get_settings() re-read it."""
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def make_dir(base: Path, *parts: str) -> Path:
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
