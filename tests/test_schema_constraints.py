"""The database itself refuses bad rows: statuses, progress, sources, projects, generations."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

import asyncpg
import numpy as np
import pytest

from codebase_mcp.db.connect import connect

SEED_INSERT = """
INSERT INTO indexing_jobs (repo_path, repo_name, project_id, status, progress_message)
VALUES ($1, $2, $3, $4, $5) RETURNING *
"""


async def test_seed_columns_alone_make_a_complete_row(db: asyncpg.Connection[Any]) -> None:
    row = await db.fetchrow(SEED_INSERT, "/srv/repo", "repo", "p1", "pending", "Job queued")
    assert row is not None
    assert isinstance(row["id"], uuid.UUID)
    assert row["progress_percentage"] == 0
    assert (row["files_scanned"], row["files_indexed"], row["chunks_created"]) == (0, 0, 0)
    assert row["force_reindex"] is False
    assert row["attempt_count"] == 0
    assert row["metadata"] == "{}"
    assert row["created_at"] is not None


@pytest.mark.parametrize("status", ["queued", "done", "PENDING", ""])
async def test_unknown_status_is_refused(db: asyncpg.Connection[Any], status: str) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="ck_indexing_jobs_status"):
        await db.execute(SEED_INSERT, "/srv/repo", "repo", "p1", status, None)


@pytest.mark.parametrize("progress", [101, -1, 1000])
async def test_progress_outside_0_to_100_is_refused(db: asyncpg.Connection[Any], progress: int) -> None:
    job = await db.fetchval("INSERT INTO indexing_jobs (repo_path, repo_name, project_id, status)"
                            " VALUES ('/r', 'r', 'p1', 'running') RETURNING id")  # fmt: skip
    with pytest.raises(asyncpg.CheckViolationError, match="ck_indexing_jobs_progress_range"):
        await db.execute("UPDATE indexing_jobs SET progress_percentage = $2 WHERE id = $1", job, progress)
    assert await db.fetchval("SELECT progress_percentage FROM indexing_jobs WHERE id = $1", job) == 0


async def test_a_job_needs_a_path_or_a_url(db: asyncpg.Connection[Any]) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="ck_indexing_jobs_source_present"):
        await db.execute("INSERT INTO indexing_jobs (repo_name, project_id, status) VALUES ('r', 'p', 'pending')")
    job = await db.fetchval(
        "INSERT INTO indexing_jobs (repo_url, ref, repo_name, project_id, status)"
        " VALUES ('https://example.org/r.git', 'main', 'r', 'p', 'pending') RETURNING id"
    )
    assert job is not None


async def test_status_is_required(db: asyncpg.Connection[Any]) -> None:
    with pytest.raises(asyncpg.NotNullViolationError):
        await db.execute("INSERT INTO indexing_jobs (repo_path, repo_name, project_id) VALUES ('/r', 'r', 'p')")


async def test_project_ids_are_checked_by_the_database(db: asyncpg.Connection[Any]) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="ck_projects_id_alphabet"):
        await db.execute("SELECT ensure_project($1)", "bad'; DROP TABLE chunks; --")


async def test_ensure_project_is_idempotent_and_creates_a_partition(db: asyncpg.Connection[Any]) -> None:
    project = f"proj-{uuid.uuid4().hex[:8]}"
    first = await db.fetchval("SELECT ensure_project($1)", project)
    second = await db.fetchval("SELECT ensure_project($1)", project)
    assert first == second == "chunks_p_" + hashlib.md5(project.encode()).hexdigest()  # noqa: S324
    bound = await db.fetchval("SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c WHERE c.relname = $1", first)
    assert bound == f"FOR VALUES IN ('{project}')"


async def test_concurrent_ensure_project_calls_do_not_race(database_url: str) -> None:
    project = f"race-{uuid.uuid4().hex[:8]}"
    conns = [await connect(database_url) for _ in range(6)]
    try:
        results = await asyncio.gather(*(conn.fetchval("SELECT ensure_project($1)", project) for conn in conns))
    finally:
        for conn in conns:
            await conn.close()
    assert len(set(results)) == 1


async def _generation(conn: asyncpg.Connection[Any], project: str, source: str) -> tuple[uuid.UUID, int]:
    await conn.execute("SELECT ensure_project($1)", project)
    repo = await conn.fetchval(
        "INSERT INTO repositories (project_id, name, source_kind, source) VALUES ($1, 'r', 'path', $2) RETURNING id",
        project,
        source,
    )
    generation = await conn.fetchval(
        "INSERT INTO index_generations (repository_id, project_id, embedding_model) VALUES ($1, $2, 'm') RETURNING id",
        repo,
        project,
    )
    return repo, generation


async def test_active_generation_must_belong_to_the_repository(db: asyncpg.Connection[Any]) -> None:
    project = f"gen-{uuid.uuid4().hex[:8]}"
    repo_a, gen_a = await _generation(db, project, "/a")
    _repo_b, gen_b = await _generation(db, project, "/b")
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await db.execute("UPDATE repositories SET active_generation_id = $2 WHERE id = $1", repo_a, gen_b)
    await db.execute("UPDATE repositories SET active_generation_id = $2 WHERE id = $1", repo_a, gen_a)
    # Deleting the active generation unsets the pointer and nothing else.
    await db.execute("DELETE FROM index_generations WHERE id = $1", gen_a)
    row = await db.fetchrow("SELECT id, active_generation_id FROM repositories WHERE id = $1", repo_a)
    assert row is not None
    assert row["id"] == repo_a
    assert row["active_generation_id"] is None


async def test_same_source_twice_in_a_project_is_refused(db: asyncpg.Connection[Any]) -> None:
    project = f"dup-{uuid.uuid4().hex[:8]}"
    await _generation(db, project, "/same")
    with pytest.raises(asyncpg.UniqueViolationError):
        await _generation(db, project, "/same")


async def test_a_chunk_needs_its_projects_partition(db: asyncpg.Connection[Any]) -> None:
    vector = np.zeros(384, dtype=np.float32)
    vector[0] = 1.0
    with pytest.raises(asyncpg.CheckViolationError, match="no partition"):
        await db.execute(
            "INSERT INTO chunks (project_id, repository_id, file_version_id, path, start_line, end_line,"
            " content, content_sha256, embedding, search_tsv)"
            " VALUES ('never-created', gen_random_uuid(), 1, 'a.py', 1, 1, 'x', $1, $2, ''::tsvector)",
            hashlib.sha256(b"x").digest(),
            vector,
        )


async def test_bad_line_ranges_and_hashes_are_refused(db: asyncpg.Connection[Any]) -> None:
    project = f"lines-{uuid.uuid4().hex[:8]}"
    repo, _generation_id = await _generation(db, project, "/lines")
    digest = hashlib.sha256(b"text").digest()
    await db.execute(
        "INSERT INTO file_contents (project_id, content_sha256, content) VALUES ($1, $2, 'text')", project, digest
    )
    version_insert = (
        "INSERT INTO file_versions (project_id, repository_id, path, content_sha256, size_bytes, line_count)"
        " VALUES ($1, $2, 'a.py', $3, 4, 1) RETURNING id"
    )
    with pytest.raises(asyncpg.CheckViolationError, match="ck_file_versions_sha"):
        await db.execute(version_insert, project, repo, b"short")
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="fk_file_versions_content"):
        await db.execute(version_insert, project, repo, hashlib.sha256(b"never stored").digest())
    version = await db.fetchval(version_insert, project, repo, digest)
    chunk_insert = (
        "INSERT INTO chunks (project_id, repository_id, file_version_id, path, start_line, end_line,"
        " content, content_sha256, embedding, search_tsv)"
        " VALUES ($1, $2, $3, 'a.py', $4, $5, 'text', $6, $7, ''::tsvector)"
    )
    vector = np.ones(384, dtype=np.float32) / np.sqrt(384)
    with pytest.raises(asyncpg.CheckViolationError, match="ck_chunks_lines"):
        await db.execute(chunk_insert, project, repo, version, 5, 4, digest, vector)
    with pytest.raises(asyncpg.CheckViolationError, match="ck_chunks_start"):
        await db.execute(chunk_insert, project, repo, version, 0, 4, digest, vector)
    with pytest.raises(asyncpg.DataError, match="384"):
        await db.execute(chunk_insert, project, repo, version, 1, 1, digest, np.ones(3, dtype=np.float32))
    await db.execute(chunk_insert, project, repo, version, 1, 1, digest, vector)
    # Deleting a file version takes its chunks with it.
    await db.execute("DELETE FROM file_versions WHERE id = $1", version)
    assert await db.fetchval("SELECT count(*) FROM chunks WHERE file_version_id = $1", version) == 0
