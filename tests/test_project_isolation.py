"""Project isolation in the shared schema (docs/architecture.md).

A small project inside a large chunks table must still get its full k nearest neighbours from the
HNSW index, and a query for one project must never read another project's rows. Without the
per-project partitions, one HNSW graph over every project returns ef_search candidates and the
project filter then throws most of them away.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np
import pytest

from codebase_mcp.embedding import Embedder, Vectors

DIM = 384
K = 10


@dataclass
class Seeded:
    project: str
    repositories: dict[str, uuid.UUID]


def _unit_vectors(rng: np.random.Generator, count: int) -> np.ndarray[Any, Any]:
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    normed: np.ndarray[Any, Any] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normed


async def _seed(conn: asyncpg.Connection[Any], rng: np.random.Generator, project: str, sizes: dict[str, int]) -> Seeded:
    await conn.execute("SELECT ensure_project($1)", project)
    repositories: dict[str, uuid.UUID] = {}
    for name, count in sizes.items():
        repo = await conn.fetchval(
            "INSERT INTO repositories (project_id, name, source_kind, source) VALUES ($1, $2, 'path', $3) RETURNING id",
            project, name, f"/{project}/{name}",
        )  # fmt: skip
        generation = await conn.fetchval(
            "INSERT INTO index_generations (repository_id, project_id, embedding_model) VALUES ($1, $2, 'm')"
            " RETURNING id",
            repo, project,
        )  # fmt: skip
        await conn.execute("UPDATE repositories SET active_generation_id = $2 WHERE id = $1", repo, generation)
        await conn.execute("UPDATE index_generations SET chunk_count = $2 WHERE id = $1", generation, count)
        text = f"contents of {name}"
        digest = hashlib.sha256(text.encode()).digest()
        await conn.execute(
            "INSERT INTO file_contents (project_id, content_sha256, content) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            project, digest, text,
        )  # fmt: skip
        version = await conn.fetchval(
            "INSERT INTO file_versions (project_id, repository_id, path, content_sha256, size_bytes, line_count)"
            " VALUES ($1, $2, 'main.py', $3, 10, 1) RETURNING id",
            project, repo, digest,
        )  # fmt: skip
        await conn.execute("INSERT INTO generation_files VALUES ($1, $2)", generation, version)
        await conn.executemany(
            "INSERT INTO chunks (project_id, repository_id, file_version_id, path, start_line, end_line,"
            " content, content_sha256, embedding, search_tsv)"
            " VALUES ($1, $2, $3, 'main.py', $4, $4, $5, $6, $7, to_tsvector('simple', $5))",
            [
                (project, repo, version, i + 1, text, digest, vector)
                for i, vector in enumerate(_unit_vectors(rng, count))
            ],
        )
        repositories[name] = repo
    await conn.execute("ANALYZE chunks")
    return Seeded(project, repositories)


@pytest.fixture(scope="module")
async def corpus(database_url: str) -> dict[str, Seeded]:
    from codebase_mcp.db.connect import connect

    rng = np.random.default_rng(7)
    suffix = uuid.uuid4().hex[:8]
    conn = await connect(database_url)
    try:
        big = await _seed(conn, rng, f"big-{suffix}", {"monolith": 4000, "tiny-lib": 20})
        small = await _seed(conn, rng, f"small-{suffix}", {"app": 15})
    finally:
        await conn.close()
    return {"big": big, "small": small}


async def _force_index_scans(conn: asyncpg.Connection[Any]) -> None:
    # Make the planner take the HNSW index even where a sequential scan would be cheaper, so the
    # test exercises the approximate path that a large deployment really uses.
    await conn.execute("SET LOCAL enable_seqscan = off")
    await conn.execute("SET LOCAL enable_bitmapscan = off")
    await conn.execute("SET LOCAL enable_sort = off")
    await conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")


async def test_small_project_gets_its_full_k(db: asyncpg.Connection[Any], corpus: dict[str, Seeded]) -> None:
    small = corpus["small"]
    query = _unit_vectors(np.random.default_rng(1), 1)[0]
    async with db.transaction():
        await _force_index_scans(db)
        rows = await db.fetch(
            "SELECT project_id FROM chunks WHERE project_id = $1 ORDER BY embedding <=> $2 LIMIT $3",
            small.project, query, K,
        )  # fmt: skip
        plan = "\n".join(
            row[0]
            for row in await db.fetch(
                "EXPLAIN SELECT project_id FROM chunks WHERE project_id = $1 ORDER BY embedding <=> $2 LIMIT 10",
                small.project,
                query,
            )
        )
    assert len(rows) == K
    assert {row["project_id"] for row in rows} == {small.project}
    big_partition = "chunks_p_" + hashlib.md5(corpus["big"].project.encode()).hexdigest()  # noqa: S324
    assert big_partition not in plan, "a query for one project must be pruned to its own partition"


async def test_small_repository_inside_a_large_project_gets_its_full_k(
    db: asyncpg.Connection[Any], corpus: dict[str, Seeded]
) -> None:
    big = corpus["big"]
    tiny = big.repositories["tiny-lib"]
    query = _unit_vectors(np.random.default_rng(2), 1)[0]
    sql = (
        "SELECT repository_id, embedding <=> $3 AS distance FROM chunks"
        " WHERE project_id = $1 AND repository_id = $2 ORDER BY embedding <=> $3 LIMIT $4"
    )
    async with db.transaction():
        await _force_index_scans(db)
        rows = await db.fetch(sql, big.project, tiny, query, K)
        plan = "\n".join(row[0] for row in await db.fetch("EXPLAIN " + sql, big.project, tiny, query, K))
    assert "embedding_idx" in plan, f"expected an HNSW index scan:\n{plan}"
    assert len(rows) == K
    assert {row["repository_id"] for row in rows} == {tiny}
    # The failure mode this guards against: without iterative scans, HNSW hands back ef_search
    # candidates from the whole partition and the repository filter leaves almost none of them.
    async with db.transaction():
        await _force_index_scans(db)
        await db.execute("SET LOCAL hnsw.iterative_scan = off")
        starved = await db.fetch(sql, big.project, tiny, query, K)
    assert len(starved) < K


async def test_no_project_reads_another_projects_rows(db: asyncpg.Connection[Any], corpus: dict[str, Seeded]) -> None:
    for name, seeded in corpus.items():
        partition = "chunks_p_" + hashlib.md5(seeded.project.encode()).hexdigest()  # noqa: S324
        foreign = await db.fetchval(f'SELECT count(*) FROM "{partition}" WHERE project_id <> $1', seeded.project)
        own = await db.fetchval(f'SELECT count(*) FROM "{partition}"')
        assert foreign == 0, name
        assert own > 0, name
    # A row cannot be moved into another project's partition by mistake either.
    small = corpus["small"]
    partition = "chunks_p_" + hashlib.md5(small.project.encode()).hexdigest()  # noqa: S324
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            f'INSERT INTO "{partition}" SELECT * FROM chunks WHERE project_id = $1 LIMIT 1', corpus["big"].project
        )


async def test_filtered_vector_candidates_come_back_nearest_first(
    db: asyncpg.Connection[Any], corpus: dict[str, Seeded]
) -> None:
    # Iterative scans in relaxed order (as search_code runs them) hand rows back only roughly by
    # distance once the filter makes them walk past the first batch; search's ranks must not be that order.
    from codebase_mcp.search import VECTOR_SQL

    big = corpus["big"]
    tiny = big.repositories["tiny-lib"]
    unordered = 0
    for seed in range(5):
        query = _unit_vectors(np.random.default_rng(100 + seed), 1)[0]
        async with db.transaction():
            await _force_index_scans(db)
            await db.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            plan = "\n".join(
                row[0] for row in await db.fetch("EXPLAIN " + VECTOR_SQL, big.project, [tiny], None, None, query, K)
            )
            ids = [row["id"] for row in await db.fetch(VECTOR_SQL, big.project, [tiny], None, None, query, K)]
            # The same scan's own order, as the index hands it back.
            raw = await db.fetch(
                "SELECT embedding <=> $3 AS distance FROM chunks WHERE project_id = $1 AND repository_id = $2"
                " ORDER BY embedding <=> $3 LIMIT $4",
                big.project, tiny, query, K,
            )  # fmt: skip
        assert "embedding_idx" in plan, f"expected an HNSW index scan:\n{plan}"
        assert len(ids) == K
        distances = [
            await db.fetchval("SELECT embedding <=> $2 FROM chunks WHERE id = $1", chunk_id, query) for chunk_id in ids
        ]
        assert distances == sorted(distances)
        unordered += [row["distance"] for row in raw] != sorted(row["distance"] for row in raw)
    # Without this the test could not fail: the index itself must return some scans out of order.
    assert unordered, "no relaxed-order scan came back out of order; the test no longer exercises the re-sort"


class _GivenVector(Embedder):
    """The query's vector, chosen by the test: search runs without the model."""

    def __init__(self, vector: np.ndarray[Any, Any]) -> None:
        super().__init__()
        self.vector = vector

    def encode(self, texts: list[str], batch_size: int = 32) -> Vectors:
        return np.stack([self.vector for _ in texts])


async def _hnsw_scans(conn: asyncpg.Connection[Any], project: str) -> int:
    """Scans of the project's HNSW index so far, this connection's included (flushed first)."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    scans: int = await conn.fetchval(
        "SELECT s.idx_scan FROM pg_stat_user_indexes s JOIN projects p ON s.relname = p.chunk_partition"
        " WHERE p.id = $1 AND s.indexrelname LIKE '%embedding%'",
        project,
    )
    return scans


async def test_a_small_repository_is_searched_exactly(db: asyncpg.Connection[Any]) -> None:
    # Below SearchTuning.exact_search_max_chunks a repository filter reads the repository's live
    # chunks and ranks them all (no HNSW walk past the other repositories' rows): the true nearest,
    # in order, and never a chunk outside the active generation.
    from codebase_mcp.search import SearchTuning, search_code

    rng = np.random.default_rng(21)
    seeded = await _seed(db, rng, f"exact-{uuid.uuid4().hex[:8]}", {"lib": 600, "other": 600})
    lib = seeded.repositories["lib"]
    query = _unit_vectors(rng, 1)[0]
    digest = hashlib.sha256(b"contents of lib").digest()
    stale = await db.fetchval(
        "INSERT INTO file_versions (project_id, repository_id, path, content_sha256, size_bytes, line_count)"
        " VALUES ($1, $2, 'stale.py', $3, 10, 1) RETURNING id",
        seeded.project, lib, digest,
    )  # fmt: skip
    # The query's own vector, in a file version no generation lists: nearest of all, never a result.
    await db.execute(
        "INSERT INTO chunks (project_id, repository_id, file_version_id, path, start_line, end_line, content,"
        " content_sha256, embedding, search_tsv) VALUES ($1, $2, $3, 'stale.py', 1, 1, 'x', $4, $5, ''::tsvector)",
        seeded.project, lib, stale, digest, query,
    )  # fmt: skip
    # The truth: every live chunk of lib, ranked by a sequential scan (`+ 0`: no index provides that order).
    truth = await db.fetch(
        "SELECT start_line FROM chunks WHERE project_id = $1 AND repository_id = $2 AND path = 'main.py'"
        " ORDER BY (embedding <=> $3) + 0 LIMIT 50",
        seeded.project, lib, query,
    )  # fmt: skip
    expected = [row["start_line"] for row in truth]
    embedder = _GivenVector(query)
    vector_only = SearchTuning(text_weight=0.0)

    before = await _hnsw_scans(db, seeded.project)
    hits = await search_code(db, embedder, seeded.project, "q", limit=50, repository="lib", tuning=vector_only)
    assert [hit.start_line for hit in hits] == expected
    assert {hit.path for hit in hits} == {"main.py"}
    assert await _hnsw_scans(db, seeded.project) == before, "600 chunks are under the limit: no HNSW scan"

    # Over the limit, the same search walks the graph (and still leaves the stale chunk out).
    graph = SearchTuning(text_weight=0.0, exact_search_max_chunks=100)
    hits = await search_code(db, embedder, seeded.project, "q", limit=50, repository="lib", tuning=graph)
    assert await _hnsw_scans(db, seeded.project) > before
    assert {hit.path for hit in hits} == {"main.py"}
    assert len(hits) == 50


async def _index_scans(conn: asyncpg.Connection[Any], index: str) -> int:
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    scans: int = await conn.fetchval("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = $1", index)
    return scans


async def test_a_large_repository_walks_its_own_graph(db: asyncpg.Connection[Any]) -> None:
    # A repository with its own graph (repository_graphs) is searched through it, not through the
    # project's graph past every other repository's chunks; one without still walks the project's.
    from codebase_mcp import repository_graphs
    from codebase_mcp.search import SearchTuning, search_code

    rng = np.random.default_rng(33)
    seeded = await _seed(db, rng, f"graph-{uuid.uuid4().hex[:8]}", {"lib": 800, "other": 2400})
    lib, other = seeded.repositories["lib"], seeded.repositories["other"]
    assert await repository_graphs.ensure_graph(db, seeded.project, lib, 800)
    assert not await repository_graphs.ensure_graph(db, seeded.project, lib, 800), "built once"
    assert await repository_graphs.has_graph(db, lib)
    assert not await repository_graphs.has_graph(db, other)
    graph = repository_graphs.graph_name(lib)
    indexed = await db.fetchval(
        "SELECT count(*) FROM pg_indexes WHERE indexname = $1 AND indexdef LIKE '%hnsw%' AND indexdef LIKE $2",
        graph, f"%WHERE (repository_id = '{lib}'::uuid)%",
    )  # fmt: skip
    assert indexed == 1, "a partial HNSW index over lib's chunks"

    query = _unit_vectors(rng, 1)[0]
    truth = await db.fetch(
        "SELECT start_line FROM chunks WHERE project_id = $1 AND repository_id = $2"
        " ORDER BY (embedding <=> $3) + 0 LIMIT 10",
        seeded.project, lib, query,
    )  # fmt: skip
    embedder = _GivenVector(query)
    no_exact = SearchTuning(text_weight=0.0, exact_search_max_chunks=0)  # an exact scan would hide the choice
    project_scans, graph_scans = await _hnsw_scans(db, seeded.project), await _index_scans(db, graph)
    # Several times: a prepared statement's generic plan could not use the partial index.
    for _ in range(8):
        hits = await search_code(db, embedder, seeded.project, "q", limit=10, repository="lib", tuning=no_exact)
        assert [hit.start_line for hit in hits] == [row["start_line"] for row in truth]
        assert {hit.repository_id for hit in hits} == {lib}
    assert await _index_scans(db, graph) == graph_scans + 8
    assert await _hnsw_scans(db, seeded.project) == project_scans, "lib's graph, not the project's"

    hits = await search_code(db, embedder, seeded.project, "q", limit=10, repository="other", tuning=no_exact)
    assert {hit.repository_id for hit in hits} == {other}
    assert await _hnsw_scans(db, seeded.project) == project_scans + 1
    assert await _index_scans(db, graph) == graph_scans + 8


async def test_search_sets_only_what_its_session_lacks(db: asyncpg.Connection[Any], database_url: str) -> None:
    # The gateway's connections start with search's settings (codebase_mcp.db.connect), so a
    # search sends its queries alone; given any other connection it sets them for its transaction.
    # Either way the results are the same.
    from codebase_mcp.db.connect import connect, create_pool
    from codebase_mcp.search import SESSION_SETTINGS, SearchTuning, search_code

    rng = np.random.default_rng(45)
    seeded = await _seed(db, rng, f"session-{uuid.uuid4().hex[:8]}", {"lib": 300})
    embedder = _GivenVector(_unit_vectors(rng, 1)[0])
    started = await connect(database_url, settings=SESSION_SETTINGS)
    try:
        sent: dict[str, list[str]] = {"plain": [], "started": []}
        db.add_query_logger(lambda record: sent["plain"].append(record.query))
        started.add_query_logger(lambda record: sent["started"].append(record.query))
        plain_hits = await search_code(db, embedder, seeded.project, "contents of lib")
        started_hits = await search_code(started, embedder, seeded.project, "contents of lib")
        assert [hit.start_line for hit in started_hits] == [hit.start_line for hit in plain_hits]
        assert len(plain_hits) == 10
        assert not [query for query in sent["started"] if "SET" in query or "BEGIN" in query], sent["started"]
        assert any("SET LOCAL hnsw.ef_search = 100" in query for query in sent["plain"]), sent["plain"]

        # A tuning the session does not have: only the difference is set.
        sent["started"].clear()
        await search_code(started, embedder, seeded.project, "contents of lib", tuning=SearchTuning(ef_search=200))
        settings = [query for query in sent["started"] if "SET" in query]
        assert settings == ["SET LOCAL hnsw.ef_search = 200"], sent["started"]
    finally:
        await started.close()

    # They are the sessions' defaults, so the pool's RESET ALL on release keeps them.
    pool = await create_pool(database_url, min_size=1, max_size=1, settings=SESSION_SETTINGS)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET hnsw.ef_search = 7")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW hnsw.ef_search") == SESSION_SETTINGS["hnsw.ef_search"]
            assert await conn.fetchval("SHOW max_parallel_workers_per_gather") == "0"
    finally:
        await pool.close()
