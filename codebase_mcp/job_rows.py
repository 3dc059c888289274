"""Every statement on indexing_jobs: the gateway's requests, the executors' and the workers'
state transitions, each transition guarded by the state it leaves.

pending -> running (claim) -> completed | failed ; pending|running -> cancelled (cancel tool).
An executor first marks a pending job as its own (`claimed_by`, status still pending) and starts a
worker; the worker's claim then moves it to running.
Every UPDATE names the status it expects, so two writers can never both win: a second indexer
finds the job no longer pending, and a worker finds a cancelled job no longer running.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg

from codebase_mcp.jobs import ACTIVE_STATUSES, TERMINAL_STATUSES, IndexingJobStatus
from codebase_mcp.sources import CheckedSource

# A string: asyncpg's classes are generic only in its type stubs, not at run time.
Connection: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"
# Single statements may run on a pool (each takes a connection for its statement).
Database: TypeAlias = "asyncpg.Pool[Any] | Connection"


# The sets as the SQL takes them (status = ANY($n)), so no statement spells a set by hand.
_ACTIVE = sorted(status.value for status in ACTIVE_STATUSES)
_TERMINAL = sorted(status.value for status in TERMINAL_STATUSES)

# A job as people see it: the columns of IndexingJobProgress and the gateway's JobStatus.
JOB_COLUMNS = """id AS job_id, project_id, repo_name AS repository, status, progress_percentage,
    COALESCE(progress_message, '') AS progress_message, files_scanned, files_indexed, chunks_created,
    error_message, error_type, created_at, started_at, completed_at, cancelled_at, k8s_namespace, k8s_job_name"""


# -- requests (the gateway) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Enqueued:
    job_id: uuid.UUID
    status: IndexingJobStatus
    existing: bool  # an active job of the same source was returned instead of a new one


async def enqueue(conn: Connection, project_id: str, source: CheckedSource, *, force_reindex: bool) -> Enqueued:
    """A pending job for the source, or the source's active job if it has one (never two).

    The row's INSERT fires the trigger whose NOTIFY wakes the executors.
    """
    async with conn.transaction():
        # One active job per source: serialise on the source so two calls cannot both insert.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))", f"{project_id}\n{source.identity}\n{source.ref or ''}"
        )
        existing = await conn.fetchrow(
            "SELECT id, status FROM indexing_jobs WHERE project_id = $1 AND status = ANY($2::text[])"
            " AND COALESCE(repo_path, repo_url) = $3 AND ref IS NOT DISTINCT FROM $4 ORDER BY created_at LIMIT 1",
            project_id,
            _ACTIVE,
            source.identity,
            source.ref,
        )
        if existing is not None:
            return Enqueued(existing["id"], IndexingJobStatus(existing["status"]), existing=True)
        job_id = await conn.fetchval(
            "INSERT INTO indexing_jobs (repo_path, repo_url, ref, repo_name, project_id, force_reindex, status,"
            " progress_message) VALUES ($1, $2, $3, $4, $5, $6, $7, 'Queued') RETURNING id",
            source.repo_path,
            source.repo_url,
            source.ref,
            source.name,
            project_id,
            force_reindex,
            IndexingJobStatus.PENDING.value,
        )
    return Enqueued(job_id, IndexingJobStatus.PENDING, existing=False)


async def get(conn: Database, project_id: str, job_id: uuid.UUID) -> dict[str, Any] | None:
    """The job as people see it (JOB_COLUMNS); None when the project has no such job."""
    row = await conn.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM indexing_jobs WHERE id = $1 AND project_id = $2", job_id, project_id
    )
    return dict(row) if row is not None else None


async def list_for_project(
    conn: Database, project_id: str, status: IndexingJobStatus | None, limit: int
) -> list[dict[str, Any]]:
    """The project's jobs (JOB_COLUMNS), newest first."""
    rows = await conn.fetch(
        f"SELECT {JOB_COLUMNS} FROM indexing_jobs WHERE project_id = $1 AND ($2::text IS NULL OR status = $2)"
        " ORDER BY created_at DESC LIMIT $3",
        project_id,
        status.value if status else None,
        limit,
    )
    return [dict(row) for row in rows]


async def cancel(
    conn: Database, project_id: str, job_id: uuid.UUID
) -> tuple[dict[str, Any] | None, IndexingJobStatus | None]:
    """pending|running -> cancelled: (the cancelled job, None); else (None, the status it has),
    (None, None) when the project has no such job. The executor sees the row and stops the worker."""
    row = await conn.fetchrow(
        f"UPDATE indexing_jobs SET status = $3, cancelled_at = now(), progress_message = 'Cancellation requested'"
        f" WHERE id = $1 AND project_id = $2 AND status = ANY($4::text[]) RETURNING {JOB_COLUMNS}",
        job_id,
        project_id,
        IndexingJobStatus.CANCELLED.value,
        _ACTIVE,
    )
    if row is not None:
        return dict(row), None
    status = await conn.fetchval(
        "SELECT status FROM indexing_jobs WHERE id = $1 AND project_id = $2", job_id, project_id
    )
    return None, IndexingJobStatus(status) if status is not None else None


# -- workers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedJob:
    id: uuid.UUID
    project_id: str
    repo_path: str | None
    repo_url: str | None
    ref: str | None
    repo_name: str
    force_reindex: bool


async def claim(conn: Connection, job_id: uuid.UUID, worker: str, task_id: str) -> ClaimedJob | None:
    """pending -> running, atomically; None when the job is missing or not pending."""
    row = await conn.fetchrow(
        """
        UPDATE indexing_jobs
           SET status = 'running', started_at = now(), heartbeat_at = now(),
               attempt_count = attempt_count + 1, claimed_by = COALESCE(claimed_by, $2), worker_task_id = $3,
               connection_id = pg_backend_pid()::text, progress_message = 'Starting'
         WHERE id = $1 AND status = 'pending'
        RETURNING id, project_id, repo_path, repo_url, ref, repo_name, force_reindex
        """,
        job_id,
        worker,
        task_id,
    )
    return ClaimedJob(**dict(row)) if row else None


async def heartbeat(conn: Connection, job_id: uuid.UUID) -> bool:
    """The worker is alive; False when the job is no longer running (cancelled, or settled)."""
    row = await conn.fetchval(
        "UPDATE indexing_jobs SET heartbeat_at = now() WHERE id = $1 AND status = 'running' RETURNING 1", job_id
    )
    return row is not None


async def status_of(conn: Connection, job_id: uuid.UUID) -> IndexingJobStatus | None:
    value = await conn.fetchval("SELECT status FROM indexing_jobs WHERE id = $1", job_id)
    return IndexingJobStatus(value) if value else None


async def record_progress(
    conn: Connection, job_id: uuid.UUID, percentage: int, message: str, counters: dict[str, int]
) -> bool:
    """Write progress (never backwards) and the heartbeat; False when the job is no longer running."""
    row = await conn.fetchval(
        """
        UPDATE indexing_jobs
           SET progress_percentage = GREATEST(progress_percentage, $2), progress_message = $3,
               files_scanned = GREATEST(files_scanned, $4), files_indexed = GREATEST(files_indexed, $5),
               chunks_created = GREATEST(chunks_created, $6), heartbeat_at = now()
         WHERE id = $1 AND status = 'running'
        RETURNING 1
        """,
        job_id,
        percentage,
        message,
        counters.get("files_scanned", 0),
        counters.get("files_indexed", 0),
        counters.get("chunks_created", 0),
    )
    return row is not None


async def complete(
    conn: Connection,
    job_id: uuid.UUID,
    *,
    message: str,
    counters: dict[str, int],
    repository_id: uuid.UUID,
    commit_sha: str | None,
    metadata: dict[str, Any],
) -> bool:
    """running -> completed; False when it was cancelled meanwhile (the caller must roll back)."""
    row = await conn.fetchval(
        """
        UPDATE indexing_jobs
           SET status = 'completed', progress_percentage = 100, progress_message = $2,
               files_scanned = $3, files_indexed = $4, chunks_created = $5, repository_id = $6,
               commit_sha = $7, metadata = COALESCE(metadata, '{}'::jsonb) || $8::jsonb,
               completed_at = now(), heartbeat_at = now()
         WHERE id = $1 AND status = 'running'
        RETURNING 1
        """,
        job_id,
        message,
        counters.get("files_scanned", 0),
        counters.get("files_indexed", 0),
        counters.get("chunks_created", 0),
        repository_id,
        commit_sha,
        json.dumps(metadata),
    )
    return row is not None


async def fail(
    conn: Connection,
    job_id: uuid.UUID,
    *,
    message: str,
    error_type: str,
    traceback: str | None = None,
    unstarted_too: bool = False,
) -> bool:
    """running -> failed (and pending -> failed with `unstarted_too`, for an executor whose worker
    died before claiming). A job cancelled meanwhile stays cancelled: False."""
    row = await conn.fetchval(
        """
        UPDATE indexing_jobs
           SET status = 'failed', error_message = $2, error_type = $3, error_traceback = $4,
               progress_message = 'Failed: ' || left($2, 200), completed_at = now(), heartbeat_at = now()
         WHERE id = $1 AND (status = 'running' OR ($5 AND status = 'pending'))
        RETURNING 1
        """,
        job_id,
        message,
        error_type,
        traceback,
        unstarted_too,
    )
    return row is not None


async def acknowledge_cancel(conn: Connection, job_id: uuid.UUID) -> None:
    """Say on a cancelled row that the worker has stopped and cleaned up."""
    await conn.execute(
        """
        UPDATE indexing_jobs
           SET progress_message = 'Cancelled: the worker stopped and removed its partial work',
               cancelled_at = COALESCE(cancelled_at, now()), heartbeat_at = now()
         WHERE id = $1 AND status = 'cancelled'
        """,
        job_id,
    )


# -- executors ----------------------------------------------------------------------------------


async def claim_for_dispatch(conn: Connection, executor: str, limit: int) -> list[uuid.UUID]:
    """Mark up to `limit` unclaimed pending jobs, oldest first, as this executor's.

    FOR UPDATE SKIP LOCKED lets several executors claim at once without waiting on or taking
    each other's rows (the pattern procrastinate and other PostgreSQL job queues use).
    """
    if limit <= 0:
        return []
    rows = await conn.fetch(
        """
        UPDATE indexing_jobs SET claimed_by = $1, heartbeat_at = now()
         WHERE id IN (SELECT id FROM indexing_jobs WHERE status = 'pending' AND claimed_by IS NULL
                       ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT $2)
        RETURNING id
        """,
        executor,
        limit,
    )
    return [row["id"] for row in rows]


async def record_kubernetes_job(conn: Connection, job_id: uuid.UUID, namespace: str | None, name: str) -> None:
    """Where the operator runs the job, for people with kubectl."""
    await conn.execute(
        "UPDATE indexing_jobs SET k8s_namespace = $2, k8s_job_name = $3 WHERE id = $1", job_id, namespace, name
    )


async def statuses(conn: Connection, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, IndexingJobStatus]:
    rows = await conn.fetch("SELECT id, status FROM indexing_jobs WHERE id = ANY($1::uuid[])", job_ids)
    return {row["id"]: IndexingJobStatus(row["status"]) for row in rows}


async def recover_orphans(conn: Connection, stale_seconds: float, live: set[uuid.UUID]) -> dict[str, int]:
    """Jobs whose worker is gone: running with a stale heartbeat -> failed; claimed but never
    started with a stale claim -> unclaimed, so an executor dispatches them again."""
    failed = await conn.fetchval(
        """
        WITH lost AS (
            UPDATE indexing_jobs
               SET status = 'failed', error_type = 'WorkerLost', completed_at = now(),
                   error_message = 'the worker stopped sending heartbeats (last at '
                       || to_char(heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC); '
                       || 'it was probably killed. Start the job again.',
                   progress_message = 'Failed: worker lost'
             WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => $1)
               AND NOT (id = ANY($2::uuid[]))
            RETURNING 1)
        SELECT count(*) FROM lost
        """,
        stale_seconds,
        list(live),
    )
    released = await conn.fetchval(
        """
        WITH released AS (
            UPDATE indexing_jobs SET claimed_by = NULL
             WHERE status = 'pending' AND claimed_by IS NOT NULL
               AND heartbeat_at < now() - make_interval(secs => $1) AND NOT (id = ANY($2::uuid[]))
            RETURNING 1)
        SELECT count(*) FROM released
        """,
        stale_seconds,
        list(live),
    )
    return {"failed": int(failed), "released": int(released)}


async def counts(conn: Database) -> tuple[dict[IndexingJobStatus, int], int]:
    """Jobs by status, and the pending ones no executor has claimed yet (the queue), for metrics."""
    rows = await conn.fetch("SELECT status, count(*) AS n FROM indexing_jobs GROUP BY status")
    queued = await conn.fetchval("SELECT count(*) FROM indexing_jobs WHERE status = 'pending' AND claimed_by IS NULL")
    by_status = dict.fromkeys(IndexingJobStatus, 0)
    by_status.update({IndexingJobStatus(row["status"]): row["n"] for row in rows})
    return by_status, int(queued)


async def purge_finished(conn: Connection, retention_days: int) -> int:
    """Delete finished jobs older than the retention period."""
    value = await conn.fetchval(
        """
        WITH gone AS (
            DELETE FROM indexing_jobs
             WHERE status = ANY($2::text[])
               AND COALESCE(completed_at, cancelled_at, created_at) < now() - make_interval(days => $1)
            RETURNING 1)
        SELECT count(*) FROM gone
        """,
        retention_days,
        _TERMINAL,
    )
    return int(value)
