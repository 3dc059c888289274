"""A large repository's own HNSW graph: a partial index of its project's partition.

Search filtered to one repository walks the project's graph past every other repository's chunks
until enough of the filtered one turn up, several times slower than an unfiltered search at 1M
chunks (docs/benchmarks.md, sixth round).
A partial HNSW index `WHERE repository_id = '<id>'` holds only that repository's chunks, so the
filtered query is an unfiltered walk of a smaller graph; the planner picks it whenever a query's
repository filter names that one repository (search plans such queries with their values).

Small repositories get no graph: search ranks their chunks exactly (search.EXACT_VECTOR_SQL), and
an index per repository would only add write cost. The indexer calls `ensure_graph` before it writes
a generation larger than its setting `REPOSITORY_GRAPH_MIN_CHUNKS`, so its new chunks go into both
graphs in the generation's own transaction and "completed" means the graph is there.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

# REPOSITORY_GRAPH_MIN_CHUNKS's default: below it an exact ranking of a repository's chunks is
# fast enough and an index would only add write cost; above it a graph of its own is faster at any
# size (docs/benchmarks.md, sixth round).
DEFAULT_MIN_CHUNKS = 5_000

# The name of a repository's graph: this prefix and the repository id's 32 hex digits (45
# characters, under PostgreSQL's 63). search.resolve_repositories looks graphs up by it.
GRAPH_PREFIX = "chunks_graph_"

# What pgvector keeps per chunk while it builds a graph in memory (a 384-float vector and its
# neighbour lists, about 2 KB), with room: a build that outgrows maintenance_work_mem goes on far
# more slowly on disk. Capped, as a build shares the server with everything else.
_BUILD_BYTES_PER_CHUNK = 3 * 1024
_BUILD_MEMORY_MIN = 64 * 1024**2
_BUILD_MEMORY_MAX = 1024**3

# The project-wide graph's options (migration 0005 sets them): a repository's graph is built the same way.
_PROJECT_GRAPH_OPTIONS_SQL = "SELECT reloptions FROM pg_class WHERE oid = to_regclass('idx_chunks_embedding_hnsw')"


def graph_name(repository_id: uuid.UUID) -> str:
    return GRAPH_PREFIX + repository_id.hex


async def has_graph(conn: Any, repository_id: uuid.UUID) -> bool:
    """Whether the repository's graph exists and the planner may use it."""
    valid: bool | None = await conn.fetchval(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)", graph_name(repository_id)
    )
    return bool(valid)


async def ensure_graph(conn: asyncpg.Connection[Any], project_id: str, repository_id: uuid.UUID, chunks: int) -> bool:
    """Build the repository's graph unless it exists; True when this call built it.

    Runs outside any transaction of the caller's (it commits on its own). A plain CREATE INDEX, not
    CONCURRENTLY: it is all or nothing (a cancelled build leaves no invalid index behind), and it
    waits only for writers of this project's partition, where CONCURRENTLY would wait for every
    older transaction in the database, another project's long write included. It holds those
    writers back while it runs: for a first index nothing (the repository has no chunks yet, so only
    the partition is scanned), for a repository that grows past the threshold about a second per
    1,000 of its chunks. Searches are never blocked.
    """
    if await has_graph(conn, repository_id):
        return False
    partition = await conn.fetchval("SELECT chunk_partition FROM projects WHERE id = $1", project_id)
    if partition is None:
        raise ValueError(f"project {project_id!r} has no chunks partition")
    options = await conn.fetchval(_PROJECT_GRAPH_OPTIONS_SQL) or []
    with_clause = f" WITH ({', '.join(options)})" if options else ""
    memory = min(_BUILD_MEMORY_MAX, max(_BUILD_MEMORY_MIN, chunks * _BUILD_BYTES_PER_CHUNK))
    # Names are ours: the partition's from ensure_project, the graph's and the id from a UUID.
    statement = (
        f'CREATE INDEX IF NOT EXISTS "{graph_name(repository_id)}" ON "{partition}"'
        f" USING hnsw (embedding vector_cosine_ops){with_clause} WHERE repository_id = '{repository_id}'"
    )
    await conn.execute(f"SET maintenance_work_mem = '{memory // 1024}kB'")
    try:
        await conn.execute(statement)
    finally:
        await conn.execute("RESET maintenance_work_mem")
    return True
