"""The shared dispatch loop with the local (subprocess) launcher, on a real database."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from codebase_mcp.dispatch import Dispatcher
from codebase_mcp.settings import Settings
from mcp_gateway.local_executor import SubprocessLauncher
from tests import support

pytestmark = pytest.mark.slow


@pytest.fixture
def dsn(migrated_database_url: str) -> str:
    return migrated_database_url


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    async with support.connection(dsn) as connection:
        yield connection


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "allowed"
    root.mkdir()
    return root


def launcher_for(dsn: str, workspace: Path, tmp_path: Path, **kwargs: Any) -> SubprocessLauncher:
    env = {
        "DATABASE_URL": dsn,
        "ALLOWED_REPO_ROOTS": str(workspace),
        "CANCELLATION_CHECK_INTERVAL_SECONDS": "0.5",
        "PROGRESS_UPDATE_INTERVAL_SECONDS": "0.2",
    }
    return SubprocessLauncher(tmp_path / "logs", env=env, **kwargs)


async def running_dispatcher(dispatcher: Dispatcher) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    await asyncio.wait_for(dispatcher.ready.wait(), 10)
    return stop, task


async def wait_status(conn: asyncpg.Connection[Any], job_id: uuid.UUID, statuses: set[str], seconds: float) -> str:
    async def status() -> str | None:
        found: str = await conn.fetchval("SELECT status FROM indexing_jobs WHERE id = $1", job_id)
        return found if found in statuses else None

    return await support.eventually(status, seconds, f"job {job_id} to be {' or '.join(sorted(statuses))}")


async def test_notify_dispatches_at_once_and_the_job_completes(
    dsn: str, conn: asyncpg.Connection[Any], workspace: Path, tmp_path: Path
) -> None:
    repo = support.make_large_repository(workspace / "r", files=2, functions=2, salt=uuid.uuid4().hex[:8])
    # A 60 s sweep: anything faster than that came from LISTEN/NOTIFY.
    dispatcher = Dispatcher(dsn, launcher_for(dsn, workspace, tmp_path), Settings(), sweep_seconds=60)
    stop, task = await running_dispatcher(dispatcher)
    try:
        inserted = time.monotonic()
        job_id = await support.insert_job(conn, project_id="notify", repo_path=str(repo))
        while await conn.fetchval("SELECT claimed_by FROM indexing_jobs WHERE id = $1", job_id) is None:
            assert time.monotonic() - inserted < 5, "not dispatched"
            await asyncio.sleep(0.01)
        assert time.monotonic() - inserted < 1.0
        assert await wait_status(conn, job_id, {"completed", "failed"}, 120) == "completed"
        row = await conn.fetchrow("SELECT claimed_by, worker_task_id FROM indexing_jobs WHERE id = $1", job_id)
        assert row is not None
        assert row["claimed_by"] == dispatcher.identity
        assert (tmp_path / "logs" / f"job-{job_id}.log").exists()
    finally:
        stop.set()
        await task


async def test_concurrency_limit_is_honoured(
    dsn: str, conn: asyncpg.Connection[Any], workspace: Path, tmp_path: Path
) -> None:
    launcher = launcher_for(dsn, workspace, tmp_path)
    dispatcher = Dispatcher(dsn, launcher, Settings(max_concurrent_indexing_jobs=2), sweep_seconds=0.5)
    jobs = []
    for n in range(3):
        repo = support.make_large_repository(workspace / f"r{n}", files=4, functions=4, salt=uuid.uuid4().hex[:8])
        jobs.append(await support.insert_job(conn, project_id=f"project-{n}", repo_path=str(repo)))
    stop, task = await running_dispatcher(dispatcher)
    peak_rows = peak_workers = 0
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            running = await conn.fetchval(
                "SELECT count(*) FROM indexing_jobs WHERE status = 'running' AND id = ANY($1::uuid[])", jobs
            )
            peak_rows = max(peak_rows, running)
            peak_workers = max(peak_workers, len(launcher.live()))
            done = await conn.fetchval(
                "SELECT count(*) FROM indexing_jobs WHERE status IN ('completed', 'failed') AND id = ANY($1::uuid[])",
                jobs,
            )
            if done == 3:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    statuses = [await conn.fetchval("SELECT status FROM indexing_jobs WHERE id = $1", job) for job in jobs]
    assert statuses == ["completed"] * 3
    assert peak_workers == 2, "two at a time, never more"
    assert peak_rows <= 2


async def test_cancel_stops_the_worker_process(
    dsn: str, conn: asyncpg.Connection[Any], workspace: Path, tmp_path: Path
) -> None:
    launcher = launcher_for(dsn, workspace, tmp_path)
    dispatcher = Dispatcher(dsn, launcher, Settings(), sweep_seconds=30)
    repo = support.make_large_repository(workspace / "big", files=40, functions=12, salt=uuid.uuid4().hex[:8])
    stop, task = await running_dispatcher(dispatcher)
    try:
        job_id = await support.insert_job(conn, project_id="cancel", repo_path=str(repo))
        await wait_status(conn, job_id, {"running"}, 60)
        pid = launcher.pid(job_id)
        assert pid is not None
        cancelled_at = time.monotonic()
        await conn.execute("UPDATE indexing_jobs SET status = 'cancelled', cancelled_at = now() WHERE id = $1", job_id)
        while launcher.live():
            assert time.monotonic() - cancelled_at < 30, "worker still alive"
            await asyncio.sleep(0.05)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        stop.set()
        await task
    assert await conn.fetchval("SELECT status FROM indexing_jobs WHERE id = $1", job_id) == "cancelled"
    assert await conn.fetchval("SELECT count(*) FROM chunks WHERE project_id = 'cancel'") == 0
    assert dispatcher.stats.stopped == 1


async def crash_one_job(
    dsn: str,
    conn: asyncpg.Connection[Any],
    workspace: Path,
    tmp_path: Path,
    *,
    sweep: float,
    woken: bool,
    within: float,
) -> uuid.UUID:
    """Dispatch one job to a worker that exits with status 7 at once; wait `within` s for it to fail.
    `woken`: the launcher is given the loop's wake callback, as LocalExecutor and the operator do."""
    wake = asyncio.Event()
    crashing = launcher_for(
        dsn, workspace, tmp_path, command=[sys.executable, "-c", "import sys; sys.exit(7)"],
        **({"on_change": wake.set} if woken else {}),
    )  # fmt: skip
    dispatcher = Dispatcher(dsn, crashing, Settings(), sweep_seconds=sweep, wake=wake)
    job_id = await support.insert_job(conn, project_id=f"crash-{uuid.uuid4().hex[:6]}", repo_path=str(workspace))
    stop, task = await running_dispatcher(dispatcher)
    try:
        assert await wait_status(conn, job_id, {"failed"}, within) == "failed"
    finally:
        stop.set()
        await task
    return job_id


async def test_a_worker_that_dies_fails_its_job(
    dsn: str, conn: asyncpg.Connection[Any], workspace: Path, tmp_path: Path
) -> None:
    job_id = await crash_one_job(dsn, conn, workspace, tmp_path, sweep=0.2, woken=False, within=30)
    row = await conn.fetchrow("SELECT error_type, error_message FROM indexing_jobs WHERE id = $1", job_id)
    assert row is not None
    assert row["error_type"] == "WorkerExited"
    assert "status 7" in row["error_message"]


async def test_a_worker_that_exits_wakes_the_loop_at_once(
    dsn: str, conn: asyncpg.Connection[Any], workspace: Path, tmp_path: Path
) -> None:
    """The launcher is made with the loop's wake callback (as LocalExecutor and the operator make
    theirs): a worker's exit is handled at once, not at the next sweep a minute later."""
    await crash_one_job(dsn, conn, workspace, tmp_path, sweep=60, woken=True, within=15)


async def test_orphans_stale_claims_and_retention(
    dsn: str, conn: asyncpg.Connection[Any], workspace: Path, tmp_path: Path
) -> None:
    async def job(status: str, **columns: Any) -> uuid.UUID:
        names = ", ".join(["repo_path", "repo_name", "project_id", "status", *columns])
        values = ", ".join(f"${n}" for n in range(1, 5 + len(columns)))
        job_id: uuid.UUID = await conn.fetchval(
            f"INSERT INTO indexing_jobs ({names}) VALUES ({values}) RETURNING id",
            "/r", "r", "maint", status, *columns.values(),
        )  # fmt: skip
        return job_id

    long_ago = await conn.fetchval("SELECT now() - interval '10 minutes'")
    dead_worker = await job("running", heartbeat_at=long_ago, started_at=long_ago, claimed_by="gone/1/x")
    live_worker = await job("running", heartbeat_at=await conn.fetchval("SELECT now()"), claimed_by="other/2/y")
    stale_claim = await job("pending", heartbeat_at=long_ago, claimed_by="gone/1/x")
    old_done = await job("completed", completed_at=await conn.fetchval("SELECT now() - interval '10 days'"))
    recent_done = await job("completed", completed_at=await conn.fetchval("SELECT now() - interval '1 day'"))
    old_cancelled = await job("cancelled", cancelled_at=await conn.fetchval("SELECT now() - interval '8 days'"))

    # The maintenance pass an executor runs at start-up and then every maintenance interval.
    dispatcher = Dispatcher(dsn, launcher_for(dsn, workspace, tmp_path), Settings(job_status_retention_days=7))
    await dispatcher.maintain(conn)

    rows = {row["id"]: row for row in await conn.fetch("SELECT * FROM indexing_jobs")}
    assert rows[dead_worker]["status"] == "failed"
    assert rows[dead_worker]["error_type"] == "WorkerLost"
    assert "heartbeat" in rows[dead_worker]["error_message"]
    assert rows[live_worker]["status"] == "running"
    assert rows[stale_claim]["status"] == "pending"
    assert rows[stale_claim]["claimed_by"] is None, "released so that an executor dispatches it again"
    assert old_done not in rows
    assert old_cancelled not in rows
    assert recent_done in rows
    assert (dispatcher.stats.orphans_failed, dispatcher.stats.claims_released, dispatcher.stats.purged) == (1, 1, 2)
