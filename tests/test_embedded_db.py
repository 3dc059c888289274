"""`codebase-mcp db ...` end to end: the real console script against its own embedded server."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from codebase_mcp.db import migrations
from codebase_mcp.db.embedded import EmbeddedPostgres, find_free_port

SCRIPT = shutil.which("codebase-mcp", path=str(Path(sys.executable).parent)) or "codebase-mcp"


def run_cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "CODEBASE_MCP_HOME": str(home),
        **env,
    }
    return subprocess.run([SCRIPT, *args], env=environment, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("cli-home")
    yield path
    run_cli(path, "db", "stop")


def test_lifecycle(home: Path) -> None:
    status = run_cli(home, "db", "status")
    assert status.returncode == 3
    assert "not set up yet" in status.stdout

    started = run_cli(home, "db", "start")
    assert started.returncode == 0, started.stderr
    assert "started on 127.0.0.1:" in started.stdout

    again = run_cli(home, "db", "start")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout

    status = run_cli(home, "db", "status")
    assert status.returncode == 0
    assert "running on 127.0.0.1:" in status.stdout

    url = run_cli(home, "db", "url").stdout.strip()
    parts = urlsplit(url)
    assert parts.scheme == "postgresql"
    assert parts.hostname == "127.0.0.1"
    assert parts.path == "/codebase_mcp"
    assert parts.password

    current = run_cli(home, "db", "current")
    assert current.returncode == 0, current.stderr
    assert current.stdout.startswith("base (not migrated)")

    upgraded = run_cli(home, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    head = migrations.head_revision()
    assert f"Database at revision {head}" in upgraded.stdout
    assert run_cli(home, "db", "current").stdout.startswith(f"{head} (up to date)")

    stopped = run_cli(home, "db", "stop")
    assert stopped.returncode == 0
    assert "stopped" in stopped.stdout
    assert run_cli(home, "db", "stop").stdout.strip() == "Embedded PostgreSQL was not running"
    assert run_cli(home, "db", "status").returncode == 3
    failed_url = run_cli(home, "db", "url")
    assert failed_url.returncode == 1
    assert "not running" in failed_url.stderr


def test_data_port_and_password_survive_a_restart(home: Path) -> None:
    run_cli(home, "db", "start")
    run_cli(home, "db", "upgrade")
    url = run_cli(home, "db", "url").stdout.strip()

    async def insert() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "INSERT INTO indexing_jobs (repo_path, repo_name, project_id, status)"
                " VALUES ('/keep', 'keep', 'survivor', 'pending')"
            )
        finally:
            await conn.close()

    asyncio.run(insert())
    assert run_cli(home, "db", "stop").returncode == 0
    assert run_cli(home, "db", "start").returncode == 0
    assert run_cli(home, "db", "url").stdout.strip() == url

    async def count() -> int:
        conn = await asyncpg.connect(url)
        try:
            value: int = await conn.fetchval("SELECT count(*) FROM indexing_jobs WHERE project_id = 'survivor'")
            return value
        finally:
            await conn.close()

    assert asyncio.run(count()) == 1


def test_secured_and_loopback_only(home: Path) -> None:
    run_cli(home, "db", "start")
    server = EmbeddedPostgres(home)
    password_mode = stat.S_IMODE((home / "postgres-password").stat().st_mode)
    assert password_mode == 0o600
    lines = (server.data_dir / "postmaster.pid").read_text().splitlines()
    assert lines[5].strip() == "127.0.0.1", "must listen on loopback only"
    assert lines[4].strip() == "", "no Unix socket"

    port = urlsplit(server.url()).port

    async def wrong_password() -> None:
        await asyncpg.connect(f"postgresql://postgres:wrong@127.0.0.1:{port}/codebase_mcp")

    with pytest.raises(asyncpg.InvalidPasswordError):
        asyncio.run(wrong_password())


def test_configured_port_is_used(tmp_path: Path) -> None:
    port = find_free_port()
    try:
        started = run_cli(tmp_path, "db", "start", EMBEDDED_DB_PORT=str(port))
        assert started.returncode == 0, started.stderr
        assert f"127.0.0.1:{port}" in started.stdout
        # A second home asking for the same, now busy, port gets a clear refusal.
        other = run_cli(tmp_path / "other", "db", "start", EMBEDDED_DB_PORT=str(port))
        assert other.returncode == 1
        assert f"port {port}" in other.stderr
        assert "Traceback" not in other.stderr
    finally:
        run_cli(tmp_path, "db", "stop")


def test_unreachable_database_url_is_a_clear_error(tmp_path: Path) -> None:
    port = find_free_port()
    result = run_cli(tmp_path, "db", "upgrade", DATABASE_URL=f"postgresql://u:hunter2@127.0.0.1:{port}/db")
    assert result.returncode == 1
    assert f"cannot connect to the database at 127.0.0.1:{port}/db" in result.stderr
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr


def test_migrations_run_against_database_url(tmp_path: Path, empty_database_url: str) -> None:
    result = run_cli(tmp_path, "db", "upgrade", DATABASE_URL=empty_database_url)
    assert result.returncode == 0, result.stderr
    assert f"Database at revision {migrations.head_revision()}" in result.stdout
    down = run_cli(tmp_path, "db", "downgrade", "base", DATABASE_URL=empty_database_url)
    assert down.returncode == 0, down.stderr
    assert "base (empty)" in down.stdout
    assert not (tmp_path / "postgres").exists(), "DATABASE_URL set: the embedded server must not start"
