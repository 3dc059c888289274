"""The indexer as a real process: cancellation, SIGTERM, racing workers, a database restart."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from codebase_mcp.db import migrations
from codebase_mcp.db.connect import connect
from codebase_mcp.db.embedded import EmbeddedPostgres
from codebase_mcp.embedding import Embedder, get_embedder
from codebase_mcp.search import search_code
from codebase_mcp.settings import Settings
from indexer_image.pipeline import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, run_job
from tests import support

pytestmark = pytest.mark.slow
FAST_CHECKS = {"CANCELLATION_CHECK_INTERVAL_SECONDS": "0.5", "PROGRESS_UPDATE_INTERVAL_SECONDS": "0.2"}


async def wait_for(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    await support.eventually(check, seconds, what, interval=0.1)


async def wait_exit(process: Any, seconds: float) -> int:
    code: int = await asyncio.wait_for(asyncio.to_thread(process.wait), seconds)
    return code


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return get_embedder()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "allowed"
    root.mkdir()
    return root


async def index_first_generation(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path, project: str, salt: str
) -> tuple[Path, asyncpg.Record]:
    repo = support.make_large_repository(workspace / "repo", files=2, functions=2, salt=salt)
    job_id = await support.insert_job(db, project_id=project, repo_path=str(repo))
    settings = Settings(allowed_repo_roots=(workspace,))
    assert await run_job(job_id, settings, database_url, embedder) == EXIT_OK
    repository = await db.fetchrow(
        "SELECT r.id, r.active_generation_id, (SELECT count(*) FROM chunks c WHERE c.project_id = $1) AS chunks,"
        " (SELECT count(*) FROM file_versions f WHERE f.project_id = $1) AS versions"
        " FROM repositories r WHERE r.project_id = $1",
        project,
    )
    assert repository is not None
    return repo, repository


async def assert_previous_generation_intact(
    db: asyncpg.Connection[Any], embedder: Embedder, project: str, before: asyncpg.Record, job_id: uuid.UUID, salt: str
) -> None:
    after = await db.fetchrow(
        "SELECT r.id, r.active_generation_id, (SELECT count(*) FROM chunks c WHERE c.project_id = $1) AS chunks,"
        " (SELECT count(*) FROM file_versions f WHERE f.project_id = $1) AS versions"
        " FROM repositories r WHERE r.project_id = $1",
        project,
    )
    assert dict(after or {}) == dict(before), "no partial rows, and the old generation still active"
    assert await db.fetchval("SELECT count(*) FROM index_generations WHERE job_id = $1", job_id) == 0
    hits = await search_code(db, embedder, project, f"Handle request kind 1 of module 0 ({salt})")
    assert any(f"handler_0_1_{salt}" in hit.snippet for hit in hits), "search still answers from the old generation"


@dataclass
class Reindex:
    """A repository indexed once, then a bigger re-index running as a process, now embedding."""

    project: str
    old_salt: str
    before: asyncpg.Record
    job_id: uuid.UUID
    process: subprocess.Popen[str]


async def reindex_mid_embedding(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path, name: str
) -> Reindex:
    project = f"{name}-{uuid.uuid4().hex[:8]}"
    old_salt = uuid.uuid4().hex[:8]
    repo, before = await index_first_generation(db, database_url, embedder, workspace, project, old_salt)
    support.make_large_repository(repo, files=40, functions=12, salt=uuid.uuid4().hex[:8])
    job_id = await support.insert_job(db, project_id=project, repo_path=str(repo))
    process = support.indexer_process(job_id, database_url, ALLOWED_REPO_ROOTS=str(workspace), **FAST_CHECKS)
    try:
        await wait_for(support.embedding_started(db, job_id), 90, "the embedding phase")
    except BaseException:
        process.kill()
        raise
    return Reindex(project, old_salt, before, job_id, process)


async def test_cancel_mid_embedding(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path
) -> None:
    run = await reindex_mid_embedding(db, database_url, embedder, workspace, "cancel")
    try:
        asked = time.monotonic()
        await db.execute(
            "UPDATE indexing_jobs SET status = 'cancelled', cancelled_at = now() WHERE id = $1 AND status = 'running'",
            run.job_id,
        )
        code = await wait_exit(run.process, 60)
        stopped_after = time.monotonic() - asked
    finally:
        run.process.kill()
    assert code == EXIT_OK, run.process.stdout.read() if run.process.stdout else ""
    # The check interval (0.5 s) plus one batch of 64 chunks plus process exit.
    assert stopped_after < 20, stopped_after
    row = await db.fetchrow("SELECT * FROM indexing_jobs WHERE id = $1", run.job_id)
    assert row is not None
    assert row["status"] == "cancelled"
    assert row["progress_message"].startswith("Cancelled")
    assert row["completed_at"] is None
    await assert_previous_generation_intact(db, embedder, run.project, run.before, run.job_id, run.old_salt)


async def test_sigterm_fails_the_job_cleanly(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path
) -> None:
    run = await reindex_mid_embedding(db, database_url, embedder, workspace, "term")
    try:
        run.process.send_signal(signal.SIGTERM)
        code = await wait_exit(run.process, 60)
    finally:
        run.process.kill()
    assert code == EXIT_FAILED
    row = await db.fetchrow("SELECT * FROM indexing_jobs WHERE id = $1", run.job_id)
    assert row is not None
    assert row["status"] == "failed"
    assert row["error_type"] == "Terminated"
    assert "SIGTERM" in row["error_message"]
    await assert_previous_generation_intact(db, embedder, run.project, run.before, run.job_id, run.old_salt)


async def test_sigterm_after_a_cancel_request_ends_cancelled(
    db: asyncpg.Connection[Any], database_url: str, workspace: Path
) -> None:
    project = f"termc-{uuid.uuid4().hex[:8]}"
    repo = support.make_large_repository(workspace / "repo", files=40, functions=12, salt=uuid.uuid4().hex[:8])
    job_id = await support.insert_job(db, project_id=project, repo_path=str(repo))
    # A long check interval: the cancel is seen only through the SIGTERM that a pod deletion sends.
    process = support.indexer_process(
        job_id, database_url, ALLOWED_REPO_ROOTS=str(workspace), CANCELLATION_CHECK_INTERVAL_SECONDS="60"
    )
    try:
        await wait_for(support.embedding_started(db, job_id), 90, "the embedding phase")
        await db.execute("UPDATE indexing_jobs SET status = 'cancelled', cancelled_at = now() WHERE id = $1", job_id)
        process.send_signal(signal.SIGTERM)
        code = await wait_exit(process, 60)
    finally:
        process.kill()
    assert code == EXIT_OK
    assert await db.fetchval("SELECT status FROM indexing_jobs WHERE id = $1", job_id) == "cancelled"
    assert await db.fetchval("SELECT count(*) FROM repositories WHERE project_id = $1", project) == 0


async def test_two_indexers_race_for_one_job(db: asyncpg.Connection[Any], database_url: str, workspace: Path) -> None:
    project = f"race-{uuid.uuid4().hex[:8]}"
    repo = support.make_large_repository(workspace / "repo", files=2, functions=2, salt=uuid.uuid4().hex[:8])
    job_id = await support.insert_job(db, project_id=project, repo_path=str(repo))
    processes = [support.indexer_process(job_id, database_url, ALLOWED_REPO_ROOTS=str(workspace)) for _ in range(2)]
    try:
        codes = sorted([await wait_exit(process, 120) for process in processes])
    finally:
        for process in processes:
            process.kill()
    assert codes == [EXIT_OK, EXIT_REFUSED]
    row = await db.fetchrow("SELECT status, attempt_count FROM indexing_jobs WHERE id = $1", job_id)
    assert row is not None
    assert (row["status"], row["attempt_count"]) == ("completed", 1)
    assert await db.fetchval("SELECT count(*) FROM index_generations WHERE job_id = $1", job_id) == 1


async def test_database_restart_mid_run_ends_failed(tmp_path: Path, workspace: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "restart-home")
    dsn = server.start()  # synchronous, and safe inside a running event loop
    try:
        await asyncio.to_thread(migrations.upgrade, dsn)
        conn = await connect(dsn)
        project = "restart"
        repo = support.make_large_repository(workspace / "repo", files=40, functions=12, salt=uuid.uuid4().hex[:8])
        job_id = await support.insert_job(conn, project_id=project, repo_path=str(repo))
        process = support.indexer_process(job_id, dsn, ALLOWED_REPO_ROOTS=str(workspace), **FAST_CHECKS)
        try:
            await wait_for(support.embedding_started(conn, job_id), 90, "the embedding phase")
            await conn.close()
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(2)
            await asyncio.to_thread(server.start)
            code = await wait_exit(process, 120)
        finally:
            process.kill()
        assert code == EXIT_FAILED
        conn = await connect(dsn)
        try:
            row = await conn.fetchrow("SELECT * FROM indexing_jobs WHERE id = $1", job_id)
            assert row is not None
            assert row["status"] == "failed", "never stuck at running"
            assert row["error_message"]
            assert await conn.fetchval("SELECT count(*) FROM repositories WHERE project_id = $1", project) == 0
            assert await conn.fetchval("SELECT count(*) FROM file_versions") == 0
            assert json.loads(row["metadata"]) == {}
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(server.stop)
