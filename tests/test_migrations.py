"""Alembic migrations on a real PostgreSQL: up from empty, idempotent, down to base, up again."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

import asyncpg
import numpy as np

from codebase_mcp.db import migrations
from codebase_mcp.jobs import IndexingJobStatus
from tests.support import connection

APP_TABLES = {
    "indexing_jobs",
    "projects",
    "repositories",
    "index_generations",
    "file_contents",
    "file_versions",
    "generation_files",
    "chunks",
    "embedding_cache",
}

SCHEMA_SNAPSHOT = """
SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner),
       (SELECT string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod) || ':' || a.attnotnull,
                          ',' ORDER BY a.attnum)
          FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public'
ORDER BY c.relname
"""


async def _fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def _tables(dsn: str) -> set[str]:
    rows = await _fetch(
        dsn, "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') AND relnamespace = 'public'::regnamespace"
    )
    return {row["relname"] for row in rows}


async def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    dsn = empty_database_url
    assert await asyncio.to_thread(migrations.current, dsn) is None

    await asyncio.to_thread(migrations.upgrade, dsn)
    assert await asyncio.to_thread(migrations.current, dsn) == migrations.head_revision()
    assert await _tables(dsn) >= APP_TABLES
    extension = await _fetch(dsn, "SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    assert extension, "pgvector must be installed by the migration"

    before = [tuple(row) for row in await _fetch(dsn, SCHEMA_SNAPSHOT)]
    await asyncio.to_thread(migrations.upgrade, dsn)  # second upgrade: a no-op
    after = [tuple(row) for row in await _fetch(dsn, SCHEMA_SNAPSHOT)]
    assert before == after

    await asyncio.to_thread(migrations.downgrade, dsn, "base")
    assert await asyncio.to_thread(migrations.current, dsn) is None
    assert await _tables(dsn) == {"alembic_version"}
    functions = await _fetch(
        dsn, "SELECT proname FROM pg_proc WHERE proname IN ('ensure_project', 'notify_indexing_job')"
    )
    assert functions == []

    await asyncio.to_thread(migrations.upgrade, dsn)
    assert await asyncio.to_thread(migrations.current, dsn) == migrations.head_revision()
    assert [tuple(row) for row in await _fetch(dsn, SCHEMA_SNAPSHOT)] == before


async def test_step_by_step_downgrade(empty_database_url: str) -> None:
    dsn = empty_database_url
    await asyncio.to_thread(migrations.upgrade, dsn)
    await asyncio.to_thread(migrations.downgrade, dsn, "0001")
    triggers = await _fetch(dsn, "SELECT tgname FROM pg_trigger WHERE tgrelid = 'indexing_jobs'::regclass")
    assert triggers == []
    assert await _tables(dsn) == {"alembic_version", "indexing_jobs"}
    constraints = await _fetch(
        dsn, "SELECT conname FROM pg_constraint WHERE conrelid = 'indexing_jobs'::regclass AND contype = 'f'"
    )
    assert constraints == [], "the FK to repositories must go with the repositories table"
    await asyncio.to_thread(migrations.upgrade, dsn)
    assert await _tables(dsn) >= APP_TABLES


async def test_indexing_jobs_matches_the_seed_design(database_url: str) -> None:
    columns = {
        row["column_name"]: (row["data_type"], row["is_nullable"], row["column_default"])
        for row in await _fetch(
            database_url,
            "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns"
            " WHERE table_name = 'indexing_jobs'",
        )
    }
    seed = {
        "id": "uuid",
        "repository_id": "uuid",
        "repo_path": "text",
        "repo_name": "text",
        "project_id": "character varying",
        "force_reindex": "boolean",
        "status": "character varying",
        "progress_percentage": "integer",
        "progress_message": "text",
        "files_scanned": "integer",
        "files_indexed": "integer",
        "chunks_created": "integer",
        "error_message": "text",
        "error_type": "character varying",
        "error_traceback": "text",
        "created_at": "timestamp with time zone",
        "started_at": "timestamp with time zone",
        "completed_at": "timestamp with time zone",
        "cancelled_at": "timestamp with time zone",
        "metadata": "jsonb",
        "worker_task_id": "text",
        "connection_id": "text",
    }
    kubernetes = {
        "repo_url": "text",
        "ref": "text",
        "commit_sha": "text",
        "k8s_namespace": "text",
        "k8s_job_name": "text",
        "attempt_count": "integer",
        "heartbeat_at": "timestamp with time zone",
        "claimed_by": "text",
    }
    assert {name: spec[0] for name, spec in columns.items()} == seed | kubernetes
    assert columns["id"][2] == "gen_random_uuid()"
    assert columns["status"][1] == "NO"
    for counter in ("progress_percentage", "files_scanned", "files_indexed", "chunks_created"):
        assert columns[counter][1:] == ("NO", "0")

    indexes = {
        row["indexname"]: row["indexdef"]
        for row in await _fetch(
            database_url, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'indexing_jobs'"
        )
    }
    assert "WHERE ((status)::text = ANY" in indexes["idx_indexing_jobs_status"]
    assert "(project_id)" in indexes["idx_indexing_jobs_project_id"]
    assert "created_at DESC" in indexes["idx_indexing_jobs_created_at"]
    assert "WHERE (repository_id IS NOT NULL)" in indexes["idx_indexing_jobs_repository_id"]

    check = await _fetch(
        database_url,
        "SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conname = 'ck_indexing_jobs_status'",
    )
    for status in IndexingJobStatus:
        assert f"'{status.value}'" in check[0]["def"], "the model's statuses and the CHECK must agree"

    comments = await _fetch(
        database_url,
        "SELECT a.attname, col_description(a.attrelid, a.attnum) AS comment FROM pg_attribute a"
        " WHERE a.attrelid = 'indexing_jobs'::regclass AND a.attnum > 0 AND NOT a.attisdropped",
    )
    assert all(row["comment"] for row in comments), [row["attname"] for row in comments if not row["comment"]]
    table_comment = await _fetch(database_url, "SELECT obj_description('indexing_jobs'::regclass) AS c")
    assert table_comment[0]["c"]


async def test_job_changes_are_notified(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    received: asyncio.Queue[str] = asyncio.Queue()
    await conn.add_listener("indexing_jobs", lambda *args: received.put_nowait(args[3]))
    writer = await asyncpg.connect(database_url)
    try:
        job = await writer.fetchval(
            "INSERT INTO indexing_jobs (repo_path, repo_name, project_id, status) VALUES ('/r', 'r', 'n', 'pending')"
            " RETURNING id"
        )
        assert await asyncio.wait_for(received.get(), 5) == f"{job}:pending"
        await writer.execute("UPDATE indexing_jobs SET progress_message = 'no status change' WHERE id = $1", job)
        await writer.execute("UPDATE indexing_jobs SET status = 'cancelled' WHERE id = $1", job)
        assert await asyncio.wait_for(received.get(), 5) == f"{job}:cancelled"
        assert received.empty()
    finally:
        await writer.close()
        await conn.close()


async def test_vector_indexes_exist(database_url: str) -> None:
    indexes = {
        row["indexname"]: row["indexdef"]
        for row in await _fetch(database_url, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chunks'")
    }
    assert "USING hnsw (embedding vector_cosine_ops)" in indexes["idx_chunks_embedding_hnsw"]
    assert "USING gin (search_tsv)" in indexes["idx_chunks_search_tsv"]


async def _old_file(conn: asyncpg.Connection[Any], path: str) -> tuple[uuid.UUID, int, bytes]:
    """Project 'old' with repository 'r' holding one file version at `path`: (repository, version, sha)."""
    await conn.execute("SELECT ensure_project('old')")
    repo: uuid.UUID = await conn.fetchval(
        "INSERT INTO repositories (project_id, name, source_kind, source) VALUES ('old', 'r', 'path', '/r')"
        " RETURNING id"
    )
    digest = hashlib.sha256(b"body").digest()
    await conn.execute("INSERT INTO file_contents VALUES ('old', $1, 'body')", digest)
    version: int = await conn.fetchval(
        "INSERT INTO file_versions (project_id, repository_id, path, content_sha256, size_bytes, line_count)"
        " VALUES ('old', $1, $2, $3, 4, 1) RETURNING id",
        repo,
        path,
        digest,
    )
    return repo, version, digest


async def test_0004_weights_the_names_of_chunks_written_before_it(empty_database_url: str) -> None:
    dsn = empty_database_url
    await asyncio.to_thread(migrations.upgrade, dsn, "0003")
    async with connection(dsn) as conn:
        repo, version, digest = await _old_file(conn, "pkg/config_loader.py")
        # A chunk as the indexer wrote it before 0004: every token at the default weight.
        await conn.execute(
            "INSERT INTO chunks (project_id, repository_id, file_version_id, path, symbol_name, start_line, end_line,"
            " content, content_sha256, embedding, search_tsv) VALUES ('old', $1, $2, 'pkg/config_loader.py',"
            " 'ConfigLoader.read_section', 1, 1, 'return value', $3, $4, to_tsvector('english', 'return value'))",
            repo,
            version,
            digest,
            np.ones(384, dtype=np.float32) / np.sqrt(384),
        )
    weighted = "SELECT array_agg(lexeme ORDER BY lexeme) FROM chunks, unnest(search_tsv) WHERE 'A' = ANY(weights)"
    await asyncio.to_thread(migrations.upgrade, dsn)
    [row] = await _fetch(dsn, weighted)
    assert set(row[0]) >= {"configload", "read", "section", "pkg"}, row[0]
    assert "return" not in row[0], "the code itself keeps its default weight"
    await asyncio.to_thread(migrations.downgrade, dsn, "0003")
    [row] = await _fetch(dsn, weighted)
    assert row[0] is None


async def test_0005_sets_finer_search_statistics_on_old_and_new_partitions(empty_database_url: str) -> None:
    dsn = empty_database_url
    target = (
        "SELECT p.id, a.attstattarget FROM projects p"
        " JOIN pg_attribute a ON a.attrelid = p.chunk_partition::regclass AND a.attname = 'search_tsv' ORDER BY p.id"
    )
    await asyncio.to_thread(migrations.upgrade, dsn, "0004")
    await _fetch(dsn, "SELECT ensure_project('old')")
    await asyncio.to_thread(migrations.upgrade, dsn)
    await _fetch(dsn, "SELECT ensure_project('new')")
    assert [tuple(row) for row in await _fetch(dsn, target)] == [("new", 1000), ("old", 1000)]
    hnsw = "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_chunks_embedding_hnsw'"
    assert "ef_construction='128'" in (await _fetch(dsn, hnsw))[0][0]
    await asyncio.to_thread(migrations.downgrade, dsn, "0004")
    await _fetch(dsn, "SELECT ensure_project('newer')")
    assert [row[1] for row in await _fetch(dsn, target)] == [None, None, None], "back to the default target"
    assert "ef_construction='64'" in (await _fetch(dsn, hnsw))[0][0]


async def test_0006_keeps_vectors_in_the_row_and_counts_each_generations_chunks(empty_database_url: str) -> None:
    dsn = empty_database_url
    layout = """
        SELECT p.id, c.reloptions, e.attstorage AS embedding, t.attstorage AS search_tsv
          FROM projects p JOIN pg_class c ON c.relname = p.chunk_partition
          JOIN pg_attribute e ON e.attrelid = c.oid AND e.attname = 'embedding'
          JOIN pg_attribute t ON t.attrelid = c.oid AND t.attname = 'search_tsv'
         ORDER BY p.id
    """
    await asyncio.to_thread(migrations.upgrade, dsn, "0005")
    async with connection(dsn) as conn:
        repo, version, digest = await _old_file(conn, "a.py")
        generation = await conn.fetchval(
            "INSERT INTO index_generations (repository_id, project_id, embedding_model) VALUES ($1, 'old', 'm')"
            " RETURNING id",
            repo,
        )
        await conn.execute("UPDATE repositories SET active_generation_id = $2 WHERE id = $1", repo, generation)
        await conn.execute("INSERT INTO generation_files VALUES ($1, $2)", generation, version)
        await conn.executemany(
            "INSERT INTO chunks (project_id, repository_id, file_version_id, path, start_line, end_line, content,"
            " content_sha256, embedding, search_tsv) VALUES ('old', $1, $2, 'a.py', $3, $3, 'body', $4, $5, '')",
            [(repo, version, line, digest, np.ones(384, dtype=np.float32) / np.sqrt(384)) for line in (1, 2, 3)],
        )
    await asyncio.to_thread(migrations.upgrade, dsn)
    await _fetch(dsn, "SELECT ensure_project('new')")
    assert [tuple(row) for row in await _fetch(dsn, layout)] == [
        ("new", ["toast_tuple_target=4000"], b"m", b"m"),
        ("old", ["toast_tuple_target=4000"], b"m", b"m"),
    ]
    counts = "SELECT chunk_count FROM index_generations WHERE id = $1"
    assert [row[0] for row in await _fetch(dsn, counts, generation)] == [3], "backfilled from the chunks"

    await asyncio.to_thread(migrations.downgrade, dsn, "0005")
    await _fetch(dsn, "SELECT ensure_project('newer')")
    assert [tuple(row) for row in await _fetch(dsn, layout)] == [
        ("new", None, b"e", b"x"),
        ("newer", None, b"e", b"x"),
        ("old", None, b"e", b"x"),
    ]
    columns = "SELECT attname FROM pg_attribute WHERE attrelid = 'index_generations'::regclass AND attname = $1"
    assert await _fetch(dsn, columns, "chunk_count") == []
