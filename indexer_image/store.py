"""Reading and writing the code index: previous versions, the embedding cache, the new generation.

A new generation is written in one transaction that also switches the repository to it and marks
the job completed. Search therefore sees the old generation or the new one, never a mix; a failed
or cancelled job leaves nothing behind; and "completed" is true exactly when the switch happened.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np

from codebase_mcp import job_rows
from codebase_mcp.embedding import Vectors
from indexer_image.progress import JobCancelledError

SliceCallback = Callable[[int, int], Awaitable[None]]
# Chunks move from the staging table in slices so progress and cancellation get a turn.
INSERT_SLICE = 2000


@dataclass(frozen=True)
class PreviousVersion:
    version_id: int
    sha256: bytes


@dataclass(frozen=True)
class NewFile:
    path: str
    sha256: bytes
    language: str | None
    size_bytes: int
    line_count: int
    text: str


@dataclass(frozen=True)
class NewChunk:
    file_index: int  # into the list of NewFile
    start_line: int
    end_line: int
    symbol: str | None
    content: str
    content_sha256: bytes  # of the text that was embedded
    search_names: str  # code tokens of path and symbol: weight A in search_tsv, so a name match ranks first
    search_body: str  # code tokens of the content


@dataclass(frozen=True)
class RepositoryKey:
    project_id: str
    kind: str
    source: str
    ref: str | None
    name: str


# Names a new repository's id before its row exists (its search graph is built first; see
# codebase_mcp/repository_graphs.py), and names it the same on every try: a failed first index
# leaves a graph that the next try of the same source uses instead of another one left behind.
_REPOSITORY_IDS = uuid.UUID("5f0d6c3e-8a59-4c1e-9a56-2f4d3b1c7e90")


def repository_id_for(key: RepositoryKey) -> uuid.UUID:
    """The id a repository gets when its first index creates its row (unique as its source is)."""
    # JSON keeps a missing ref (null) apart from an empty one, as the unique constraint does.
    return uuid.uuid5(_REPOSITORY_IDS, json.dumps([key.project_id, key.kind, key.source, key.ref]))


@dataclass(frozen=True)
class Baseline:
    """The repository as search sees it now: its id, active generation and files."""

    repository_id: uuid.UUID | None
    generation_id: int | None
    files: dict[str, PreviousVersion]


async def baseline(conn: asyncpg.Connection[Any], key: RepositoryKey) -> Baseline:
    repo = await conn.fetchrow(
        "SELECT id, active_generation_id FROM repositories"
        " WHERE project_id = $1 AND source_kind = $2 AND source = $3 AND ref IS NOT DISTINCT FROM $4",
        key.project_id,
        key.kind,
        key.source,
        key.ref,
    )
    if repo is None:
        return Baseline(None, None, {})
    rows = await conn.fetch(
        "SELECT fv.path, fv.id, fv.content_sha256 FROM generation_files g"
        " JOIN file_versions fv ON fv.id = g.file_version_id WHERE g.generation_id = $1",
        repo["active_generation_id"],
    )
    files = {row["path"]: PreviousVersion(row["id"], bytes(row["content_sha256"])) for row in rows}
    return Baseline(repo["id"], repo["active_generation_id"], files)


async def cached_embeddings(conn: asyncpg.Connection[Any], model: str, shas: Sequence[bytes]) -> dict[bytes, Any]:
    if not shas:
        return {}
    rows = await conn.fetch(
        "SELECT content_sha256, embedding FROM embedding_cache WHERE model = $1 AND content_sha256 = ANY($2::bytea[])",
        model,
        list(shas),
    )
    return {bytes(row["content_sha256"]): _as_array(row["embedding"]) for row in rows}


def _as_array(value: Any) -> np.ndarray[Any, Any]:
    """pgvector's codec returns a Vector object (0.3+) or a numpy array (older releases)."""
    to_numpy = getattr(value, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy else value, dtype=np.float32)


async def store_embeddings(
    conn: asyncpg.Connection[Any], model: str, shas: Sequence[bytes], vectors: Vectors, *, replace: bool
) -> None:
    """Cache freshly computed embeddings (outside the index transaction: a cache, never partial index)."""
    conflict = "DO UPDATE SET embedding = EXCLUDED.embedding, created_at = now()" if replace else "DO NOTHING"
    await conn.executemany(
        f"INSERT INTO embedding_cache (model, content_sha256, embedding) VALUES ($1, $2, $3)"
        f" ON CONFLICT (model, content_sha256) {conflict}",
        [(model, sha, vector) for sha, vector in zip(shas, vectors, strict=True)],
    )


class ConcurrentReindexError(RuntimeError):
    """Another job switched this repository's index while this one was working."""


async def write_generation(
    conn: asyncpg.Connection[Any],
    *,
    job_id: uuid.UUID,
    key: RepositoryKey,
    base: Baseline,
    model: str,
    commit_sha: str | None,
    carried: Sequence[int],
    files: Sequence[NewFile],
    chunks: Sequence[NewChunk],
    embeddings: Vectors,
    completion: dict[str, Any],
    on_slice: SliceCallback,
) -> uuid.UUID:
    """Write the new generation, switch to it and complete the job, all in one transaction.

    `on_slice(done, total)` is awaited between chunk slices (progress, and a chance to be cancelled).
    Returns the repository id.
    """
    async with conn.transaction():
        repository_id: uuid.UUID = await conn.fetchval(
            """
            INSERT INTO repositories (id, project_id, name, source_kind, source, ref) VALUES ($6, $1, $2, $3, $4, $5)
            ON CONFLICT ON CONSTRAINT uq_repositories_source DO UPDATE SET name = EXCLUDED.name, updated_at = now()
            RETURNING id
            """,
            key.project_id,
            key.name,
            key.kind,
            key.source,
            key.ref,
            repository_id_for(key),
        )
        active = await conn.fetchval(
            "SELECT active_generation_id FROM repositories WHERE id = $1 FOR UPDATE", repository_id
        )
        if active != base.generation_id:
            raise ConcurrentReindexError(
                "another job re-indexed this repository while this one ran; start this job again"
            )
        generation_id: int = await conn.fetchval(
            "INSERT INTO index_generations (repository_id, project_id, job_id, embedding_model, commit_sha,"
            " activated_at) VALUES ($1, $2, $3, $4, $5, now()) RETURNING id",
            repository_id,
            key.project_id,
            job_id,
            model,
            commit_sha,
        )
        if files:
            await conn.execute(
                "INSERT INTO file_contents (project_id, content_sha256, content)"
                " SELECT $1, sha, content FROM unnest($2::bytea[], $3::text[]) AS t(sha, content)"
                " ON CONFLICT DO NOTHING",
                key.project_id,
                [f.sha256 for f in files],
                [f.text for f in files],
            )
        version_rows = await conn.fetch(
            """
            INSERT INTO file_versions (project_id, repository_id, path, content_sha256, language, size_bytes,
                                       line_count)
            SELECT $1, $2, path, sha, language, size, lines
              FROM unnest($3::text[], $4::bytea[], $5::text[], $6::bigint[], $7::int[])
                   AS t(path, sha, language, size, lines)
            RETURNING id, path
            """,
            key.project_id,
            repository_id,
            [f.path for f in files],
            [f.sha256 for f in files],
            [f.language for f in files],
            [f.size_bytes for f in files],
            [f.line_count for f in files],
        )
        version_by_path = {row["path"]: row["id"] for row in version_rows}
        await conn.execute(
            "INSERT INTO generation_files (generation_id, file_version_id) SELECT $1, unnest($2::bigint[])",
            generation_id,
            [*carried, *version_by_path.values()],
        )
        await _write_chunks(conn, key, repository_id, files, version_by_path, chunks, embeddings, on_slice)
        # New chunks and those of carried files: search sizes a repository filter by it.
        await conn.execute(
            """
            UPDATE index_generations g
               SET chunk_count = (SELECT count(*) FROM generation_files f
                                    JOIN chunks c ON c.file_version_id = f.file_version_id AND c.project_id = $2
                                   WHERE f.generation_id = g.id)
             WHERE g.id = $1
            """,
            generation_id,
            key.project_id,
        )
        await conn.execute(
            "UPDATE repositories SET active_generation_id = $2, last_commit_sha = $3, updated_at = now() WHERE id = $1",
            repository_id,
            generation_id,
            commit_sha,
        )
        if base.generation_id is not None:
            await conn.execute("DELETE FROM index_generations WHERE id = $1", base.generation_id)
        if not await job_rows.complete(conn, job_id, repository_id=repository_id, **completion):
            raise JobCancelledError()  # rolls the whole generation back
    return repository_id


async def _write_chunks(
    conn: asyncpg.Connection[Any],
    key: RepositoryKey,
    repository_id: uuid.UUID,
    files: Sequence[NewFile],
    version_by_path: dict[str, int],
    chunks: Sequence[NewChunk],
    embeddings: Vectors,
    on_slice: SliceCallback,
) -> None:
    if not chunks:
        return
    await conn.execute(
        """
        CREATE TEMP TABLE chunk_stage (
            n INTEGER, file_version_id BIGINT, path TEXT, language TEXT, symbol_name TEXT, start_line INTEGER,
            end_line INTEGER, content TEXT, content_sha256 BYTEA, embedding vector(384), search_names TEXT,
            search_body TEXT
        ) ON COMMIT DROP
        """
    )
    records = []
    for n, (chunk, vector) in enumerate(zip(chunks, embeddings, strict=True)):
        file = files[chunk.file_index]
        records.append(
            (
                n,
                version_by_path[file.path],
                file.path,
                file.language,
                chunk.symbol,
                chunk.start_line,
                chunk.end_line,
                chunk.content,
                chunk.content_sha256,
                np.asarray(vector, dtype=np.float32),
                chunk.search_names,
                chunk.search_body,
            )
        )
    # Binary COPY: no per-row statements, and vectors travel in pgvector's binary format.
    await conn.copy_records_to_table("chunk_stage", records=records)
    total = len(records)
    for start in range(0, total, INSERT_SLICE):
        await conn.execute(
            """
            INSERT INTO chunks (project_id, repository_id, file_version_id, path, language, symbol_name, start_line,
                                end_line, content, content_sha256, embedding, search_tsv)
            SELECT $1, $2, file_version_id, path, language, symbol_name, start_line, end_line, content,
                   content_sha256, embedding,
                   setweight(to_tsvector('english', search_names), 'A') || to_tsvector('english', search_body)
              FROM chunk_stage WHERE n >= $3 AND n < $4
            """,
            key.project_id,
            repository_id,
            start,
            start + INSERT_SLICE,
        )
        await on_slice(min(start + INSERT_SLICE, total), total)


async def collect_garbage(conn: asyncpg.Connection[Any], project_id: str, repository_id: uuid.UUID) -> dict[str, int]:
    """Delete file versions no generation lists any more (their chunks go with them), then orphan texts."""
    versions = await conn.fetchval(
        "WITH gone AS (DELETE FROM file_versions fv WHERE fv.repository_id = $1 AND NOT EXISTS"
        " (SELECT 1 FROM generation_files g WHERE g.file_version_id = fv.id) RETURNING 1) SELECT count(*) FROM gone",
        repository_id,
    )
    contents = await conn.fetchval(
        "WITH gone AS (DELETE FROM file_contents fc WHERE fc.project_id = $1 AND NOT EXISTS"
        " (SELECT 1 FROM file_versions fv WHERE fv.project_id = fc.project_id"
        "  AND fv.content_sha256 = fc.content_sha256) RETURNING 1) SELECT count(*) FROM gone",
        project_id,
    )
    return {"file_versions": int(versions), "file_contents": int(contents)}


async def refresh_statistics(conn: asyncpg.Connection[Any], project_id: str) -> None:
    """ANALYZE what search reads, right after a new generation.

    Search filters chunks by membership of the active generations; with stale statistics (a new
    project's partition has none until autovacuum's next analyze) the planner guesses a handful
    of members and walks every chunk through a nested loop instead of the HNSW index, many times
    slower (bench/search.py measures it). Sampling costs well under a second even for a million
    chunks.
    """
    partition = await conn.fetchval("SELECT chunk_partition FROM projects WHERE id = $1", project_id)
    # The partition name is ours ('chunks_p_' + md5), never user input; quoted all the same.
    await conn.execute(f'ANALYZE repositories, file_versions, generation_files, "{partition}"')
