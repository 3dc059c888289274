"""Search latency at scale and HNSW recall against exact search (`python -m bench.search`).

Synthetic corpora (clustered unit vectors like a code base's embeddings, about 200 chunks a topic
in each project; code-like words for full text) of 10k, 100k and 1M chunks, laid out as one project
and as 20 projects, loaded into the real schema (files, generations, partitions, HNSW and GIN
indexes) of a throwaway embedded PostgreSQL with shared_buffers raised to 4 GB, as a deployment
would set it. Measured:
- the SQL alone: codebase_mcp.search.search_code with the query vector given, so no model;
- the whole `search_code` tool call over HTTP to a gateway process (query embedding included);
p50/p95/p99 at 1, 8 and 32 concurrent clients, without and with filters, each row after a whole
untimed pass (and the first pass after loading reported on its own); and recall@10 of the vector
side against an exact scan, per filter, for several ef_search values.
`--index-variants CHUNKS` compares HNSW build parameters (m, ef_construction) on one project.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import numpy as np
from fastmcp import Client

from bench.common import append_report, table, throwaway_database
from codebase_mcp import repository_graphs
from codebase_mcp.db.connect import connect, create_pool
from codebase_mcp.db.embedded import find_free_port
from codebase_mcp.embedding import Embedder, Vectors
from codebase_mcp.search import (
    DEFAULT_TUNING,
    EXACT_VECTOR_SQL,
    SESSION_SETTINGS,
    VECTOR_SQL,
    SearchTuning,
    resolve_repositories,
    search_code,
)
from codebase_mcp.settings import EMBEDDING_DIMENSIONS
from mcp_gateway.auth import grant_entry

CHUNKS_PER_FILE = 10
REPOSITORIES = 10
LANGUAGES = [("python", "py"), ("go", "go"), ("typescript", "ts"), ("java", "java")]
WORDS_PER_CHUNK = 40
CHUNKS_PER_TOPIC = 200  # in each project (measure)
FILTERS: dict[str, dict[str, str]] = {
    "none": {},
    "repository": {"repository": "repo-3"},
    "language": {"language": "go"},
    "path glob": {"path_glob": "src/mod1*/**"},
}
rng = np.random.default_rng(7)
VOCABULARY = [
    "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=int(rng.integers(4, 10)))) for _ in range(5000)
]
# Zipf-like word frequencies, as in code: a few words everywhere, most rare.
WORD_WEIGHTS = 1 / np.arange(1, len(VOCABULARY) + 1)
WORD_WEIGHTS /= WORD_WEIGHTS.sum()


class GivenVectors(Embedder):
    """Returns the vector the benchmark chose for the query, so the SQL is timed without the model."""

    def __init__(self) -> None:
        super().__init__()
        self.vectors: dict[str, np.ndarray[Any, Any]] = {}

    def encode(self, texts: list[str], batch_size: int = 32) -> Vectors:
        return np.stack([self.vectors[text] for text in texts])


@dataclass
class Corpus:
    centers: np.ndarray[Any, Any]
    projects: list[str]


def clustered(centers: np.ndarray[Any, Any], count: int, generator: np.random.Generator) -> np.ndarray[Any, Any]:
    """Unit vectors around random centres: neighbours share a topic, as embeddings of code do."""
    picks = generator.integers(0, len(centers), size=count)
    noise = generator.standard_normal((count, EMBEDDING_DIMENSIONS)).astype(np.float32) * 0.06
    vectors = centers[picks] + noise
    normed: np.ndarray[Any, Any] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normed


def words(generator: np.random.Generator, count: int, rows: int = 1) -> list[str]:
    """`rows` texts of `count` words each, drawn in one call (a million chunks need it fast)."""
    picks = generator.choice(len(VOCABULARY), size=(rows, count), p=WORD_WEIGHTS)
    return [" ".join(VOCABULARY[index] for index in row) for row in picks]


async def load_project(conn: asyncpg.Connection[Any], project: str, chunks: int, centers: np.ndarray[Any, Any]) -> None:
    """One project's rows: repositories with an active generation, files, and a filled chunks partition.

    The partition is filled before it is attached, so PostgreSQL builds its indexes (HNSW
    included) in bulk, as pgvector recommends for large loads, instead of row by row.
    """
    # crc32, not hash(): str hashes change between runs, and every run must load the same corpus.
    generator = np.random.default_rng(zlib.crc32(project.encode()))
    files = chunks // CHUNKS_PER_FILE
    part = f"chunks_bench_{secrets.token_hex(4)}"
    await conn.execute("INSERT INTO projects (id, chunk_partition) VALUES ($1, $2)", project, part)
    await conn.execute(
        """
        INSERT INTO repositories (project_id, name, source_kind, source)
        SELECT $1::text, 'repo-' || r, 'path', '/bench/' || $1::text || '/repo-' || r FROM generate_series(0, $2 - 1) r
        """,
        project,
        REPOSITORIES,
    )
    await conn.execute(
        "INSERT INTO index_generations (repository_id, project_id, embedding_model) SELECT id, project_id, 'bench'"
        " FROM repositories WHERE project_id = $1",
        project,
    )
    await conn.execute(
        "UPDATE repositories r SET active_generation_id = g.id FROM index_generations g"
        " WHERE g.repository_id = r.id AND r.project_id = $1",
        project,
    )
    # File n lives in repository n % 10, language n % 4, folder src/mod<n % 50>.
    await conn.execute(
        """
        INSERT INTO file_contents (project_id, content_sha256, content)
        SELECT $1::text, sha256(convert_to('file ' || f, 'UTF8')), 'file ' || f FROM generate_series(0, $2 - 1) f
        """,
        project,
        files,
    )
    await conn.execute(
        """
        INSERT INTO file_versions (project_id, repository_id, path, language, content_sha256, size_bytes, line_count)
        SELECT $1::text, r.id,
               'src/mod' || (f % 50) || '/file' || f || '.' || (ARRAY['py','go','ts','java'])[f % 4 + 1],
               (ARRAY['python','go','typescript','java'])[f % 4 + 1], sha256(convert_to('file ' || f, 'UTF8')), 100, 10
          FROM generate_series(0, $2 - 1) f
          JOIN repositories r ON r.project_id = $1::text AND r.name = 'repo-' || (f % $3)
        """,
        project,
        files,
        REPOSITORIES,
    )
    await conn.execute(
        "INSERT INTO generation_files SELECT r.active_generation_id, v.id FROM file_versions v"
        " JOIN repositories r ON r.id = v.repository_id WHERE v.project_id = $1",
        project,
    )
    versions = await conn.fetch(
        "SELECT id, repository_id, path, language FROM file_versions WHERE project_id = $1 ORDER BY id", project
    )
    await conn.execute(
        "CREATE UNLOGGED TABLE chunk_load (file_version_id BIGINT, repository_id UUID, path TEXT, language TEXT,"
        " symbol_name TEXT, start_line INT, end_line INT, content TEXT, embedding vector(384))"
    )
    block = 50_000
    for start in range(0, chunks, block):
        count = min(block, chunks - start)
        vectors = clustered(centers, count, generator)
        texts = words(generator, WORDS_PER_CHUNK, count)
        records = []
        for offset in range(count):
            n = start + offset
            version = versions[n // CHUNKS_PER_FILE]
            line = (n % CHUNKS_PER_FILE) * 20 + 1
            records.append(
                (version["id"], version["repository_id"], version["path"], version["language"], f"handler_{n}",
                 line, line + 19, texts[offset], vectors[offset])
            )  # fmt: skip
        await conn.copy_records_to_table("chunk_load", records=records)
    await conn.execute(f"CREATE TABLE {part} (LIKE chunks INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)")
    # What ensure_project sets on each partition it creates (statistics target, TOAST target): a
    # partition takes neither from its parent, and this one is built apart so its indexes build in bulk.
    for statement in re.findall(r"EXECUTE format\('(ALTER TABLE %I [^']*)', part\)", await conn.fetchval(
        "SELECT pg_get_functiondef('ensure_project'::regproc)"
    )):  # fmt: skip
        await conn.execute(statement.replace("%I", part))
    await conn.execute(
        f"""
        INSERT INTO {part} (project_id, repository_id, file_version_id, path, language, symbol_name, start_line,
                            end_line, content, content_sha256, embedding, search_tsv)
        SELECT $1, repository_id, file_version_id, path, language, symbol_name, start_line, end_line, content,
               sha256(convert_to(content, 'UTF8')), embedding,
               setweight(to_tsvector('english', path || ' ' || symbol_name), 'A') || to_tsvector('english', content)
          FROM chunk_load
        """,
        project,
    )
    await conn.execute(
        "UPDATE index_generations g SET chunk_count = t.chunks"
        " FROM (SELECT repository_id, count(*) AS chunks FROM chunk_load GROUP BY repository_id) t"
        " WHERE g.repository_id = t.repository_id"
    )
    await conn.execute("DROP TABLE chunk_load")
    await conn.execute("SET maintenance_work_mem = '6GB'")
    await conn.execute("SET max_parallel_maintenance_workers = 1")
    await conn.execute(f"ALTER TABLE chunks ATTACH PARTITION {part} FOR VALUES IN ('{project}')")
    await conn.execute(f"VACUUM ANALYZE {part}")
    await conn.execute("ANALYZE repositories, index_generations, file_versions, generation_files, file_contents")


# Two random unit vectors in 384 dimensions have a cosine of 0 +- 1/sqrt(384) = 0.051: a neighbour
# below five of those is no nearer than chance (a sparse filter's exact top 10 can be all such).
NOISE_FLOOR = 5 / EMBEDDING_DIMENSIONS**0.5


def percentiles(values: list[float]) -> list[str]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return [f"{statistics.median(values) * 1000:.1f}", f"{cuts[94] * 1000:.1f}", f"{cuts[98] * 1000:.1f}"]


async def concurrently(clients: int, total: int, one: Callable[[int], Awaitable[None]]) -> list[float]:
    """`total` calls spread over `clients` concurrent callers; each call's latency in seconds."""
    latencies: list[float] = []

    async def caller(first: int) -> None:
        for n in range(first, total, clients):
            started = time.perf_counter()
            await one(n)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(caller(first) for first in range(clients)))
    return latencies


def make_queries(corpus: Corpus, count: int, embedder: GivenVectors) -> list[str]:
    generator = np.random.default_rng(11)
    vectors = clustered(corpus.centers, count, generator)
    texts = [f"{text} #{n}" for n, text in enumerate(words(generator, 3, count))]
    embedder.vectors.update(zip(texts, vectors, strict=True))
    return texts


async def sql_latency(dsn: str, corpus: Corpus, queries: list[str], embedder: GivenVectors) -> list[list[str]]:
    rows: list[list[str]] = []
    pool = await create_pool(dsn, min_size=1, max_size=32, settings=SESSION_SETTINGS)  # as the gateway's
    try:
        # The same calls without leaving common terms out of the full-text query, side by side.
        runs = [(clients, name, options, DEFAULT_TUNING) for clients in (1, 8, 32) for name, options in FILTERS.items()
                if clients == 1 or name == "none"]  # fmt: skip
        every_term = replace(DEFAULT_TUNING, common_term_share=1.0, max_text_matches=0)
        runs.insert(1, (1, "none, every query term kept", {}, every_term))
        for clients, name, options, tuning in runs:
            # The comparison row is slow by design (seconds a query at 1M): fewer queries suffice.
            count = len(queries) if tuning is DEFAULT_TUNING else min(len(queries), 30)

            async def one(n: int, options: dict[str, str] = options, tuning: SearchTuning = tuning) -> None:
                # Given the pool, as the gateway does: the two retrievers run on two connections.
                await search_code(pool, embedder, corpus.projects[n % len(corpus.projects)], queries[n],
                                  tuning=tuning, **options)  # type: ignore[arg-type]  # fmt: skip

            if not rows:
                # Right after loading, most of the indexes sit outside shared_buffers (4 GB against
                # 5 GB of 20 x 50k chunks): this pass reads them in (from the OS cache here, from disk
                # after a reboot).
                first = await concurrently(clients, count, one)
                rows.append([f"SQL, first pass after loading, 1 client, no filter ({count} queries)",
                             *percentiles(first)])  # fmt: skip
            # A whole pass first: 20 warm-up queries touched one project each and left the rest cold,
            # which read as a 45 ms p95 at 20 x 50k chunks (12 ms once every partition was cached).
            await concurrently(clients, count, one)
            latencies = await concurrently(clients, count, one)
            rows.append([f"SQL, {clients} client(s), filter: {name} ({count} queries)", *percentiles(latencies)])
    finally:
        await pool.close()
    return rows


async def recall(
    dsn: str, corpus: Corpus, queries: list[str], embedder: GivenVectors, efs: tuple[int, ...] = (40, 100, 200, 400)
) -> list[list[str]]:
    """recall@10 of the vector side as search_code runs it against an exact scan, per filter and ef_search.

    As search_code: an iterative HNSW scan in relaxed order for its 50 candidates, re-sorted by
    distance; its first 10 are compared with the exact 10 nearest that pass the same filters, and
    with those of them that share the query's topic (cosine at least NOISE_FLOOR).
    """
    conn = await connect(dsn)
    rows = []
    sample = queries[:50]
    candidates = DEFAULT_TUNING.candidates
    # Ordering by an expression no index provides forces the exact scan (enable_indexscan=off
    # does not: the planner may still pick HNSW, which made a first version of this wrong).
    exact_sql = VECTOR_SQL.replace("ORDER BY c.embedding <=> $5", "ORDER BY (c.embedding <=> $5) + 0")
    try:
        for name in ("none", "repository", "language"):
            filters = []
            # search_code scans a small repository exactly (EXACT_VECTOR_SQL) and walks a large one's
            # own graph (planned with the filter's value): a row for whichever applies.
            exact_path = own_graph = name == "repository"
            for n in range(len(sample)):
                project = corpus.projects[n % len(corpus.projects)]
                ids = None
                if name == "repository":
                    match = await resolve_repositories(conn, project, FILTERS[name]["repository"])
                    ids = match.ids
                    own_graph = own_graph and match.graphed
                    exact_path = (
                        exact_path and not match.graphed and match.chunks <= DEFAULT_TUNING.exact_search_max_chunks
                    )
                filters.append((project, ids, FILTERS[name].get("language"), None))
            exact = [
                {row["id"] for row in await conn.fetch(exact_sql, *where, embedder.vectors[text], 10)}
                for text, where in zip(sample, filters, strict=True)
            ]
            topical: list[set[int]] = []
            for text, truth in zip(sample, exact, strict=True):
                rows_near = await conn.fetch(
                    "SELECT id FROM chunks WHERE id = ANY($1) AND 1 - (embedding <=> $2) >= $3",
                    list(truth), embedder.vectors[text], NOISE_FLOOR,
                )  # fmt: skip
                topical.append({row["id"] for row in rows_near})
            # (label, query, ef_search, plan): the graph at each ef_search, then the exact scan (which
            # ignores it). A generic plan cannot use a repository's own graph: the project's graph, as
            # before repositories had their own, side by side.
            variants = [(str(ef), VECTOR_SQL, ef, "force_custom_plan" if own_graph else "auto") for ef in efs]
            if own_graph:
                variants += [(f"{ef}, project's graph", VECTOR_SQL, ef, "force_generic_plan") for ef in efs[:2]]
            if exact_path:
                variants.append(("exact scan", EXACT_VECTOR_SQL, efs[0], "auto"))
            for label, sql, ef, plan in variants:
                hits = topical_hits = 0
                timings = []
                async with conn.transaction():
                    await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                    await conn.execute(f"SET LOCAL hnsw.ef_search = {ef}")
                    await conn.execute(f"SET LOCAL plan_cache_mode = {plan}")
                    for text, where, truth, near in zip(sample, filters, exact, topical, strict=True):
                        started = time.perf_counter()
                        found = await conn.fetch(sql, *where, embedder.vectors[text], candidates)
                        timings.append(time.perf_counter() - started)
                        top = {row["id"] for row in found[:10]}
                        hits += len(top & truth)
                        topical_hits += len(top & near)
                topical_count = sum(len(near) for near in topical)
                rows.append([
                    name, label, f"{hits / (10 * len(sample)):.3f}",
                    f"{topical_hits / topical_count:.3f} of {topical_count}" if topical_count else "none",
                    f"{statistics.median(timings) * 1000:.1f}",
                ])  # fmt: skip
    finally:
        await conn.close()
    return rows


async def tool_latency(dsn: str, corpus: Corpus, queries: list[str], workspace: Path) -> list[list[str]]:
    token = secrets.token_urlsafe(24)
    tokens = workspace / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [grant_entry("bench", token, ["*"], corpus.projects[0])]}))
    port = find_free_port()
    env = {**os.environ, "DATABASE_URL": dsn, "TOKENS_FILE": str(tokens)}
    gateway = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "codebase_mcp.cli", "gateway", "--host", "127.0.0.1", "--port", str(port),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    rows = []
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("gateway did not become ready")
            await asyncio.sleep(0.3)
        url = f"http://127.0.0.1:{port}/mcp"
        for clients in (1, 8, 32):
            for name, options in FILTERS.items():
                if clients > 1 and name != "none":
                    continue
                async with AsyncExitStack() as stack:
                    sessions = [await stack.enter_async_context(Client(url, auth=token)) for _ in range(clients)]

                    async def one(
                        n: int, options: dict[str, str] = options, sessions: list[Client[Any]] = sessions
                    ) -> None:
                        arguments = {
                            "query": queries[n],
                            "project_id": corpus.projects[n % len(corpus.projects)],
                            **options,
                        }
                        await sessions[n % len(sessions)].call_tool("search_code", arguments)

                    await concurrently(clients, len(queries), one)  # a whole pass, as for the SQL rows
                    latencies = await concurrently(clients, len(queries), one)
                    label = f"tool call, {clients} client(s), filter: {name} ({len(queries)} queries)"
                    rows.append([label, *percentiles(latencies)])
    finally:
        gateway.terminate()
        await gateway.wait()
    return rows


async def repository_filter_latency(
    dsn: str, corpus: Corpus, queries: list[str], embedder: GivenVectors
) -> list[float]:
    """search_code with the repository filter, one client, after an untimed pass (as sql_latency)."""
    pool = await create_pool(dsn, min_size=1, max_size=4, settings=SESSION_SETTINGS)
    try:

        async def one(n: int) -> None:
            project = corpus.projects[n % len(corpus.projects)]
            await search_code(pool, embedder, project, queries[n], repository=FILTERS["repository"]["repository"])

        await concurrently(1, len(queries), one)
        return await concurrently(1, len(queries), one)
    finally:
        await pool.close()


async def build_repository_graphs(dsn: str, projects: list[str]) -> tuple[int, float]:
    """What the indexer does for a repository past REPOSITORY_GRAPH_MIN_CHUNKS: its own graph.

    Returns how many were built and the seconds it took (then a checkpoint, as after loading).
    """
    conn = await connect(dsn)
    started = time.perf_counter()
    try:
        large = await conn.fetch(
            "SELECT r.project_id, r.id, g.chunk_count FROM repositories r"
            " JOIN index_generations g ON g.id = r.active_generation_id"
            " WHERE r.project_id = ANY($1::text[]) AND g.chunk_count > $2 ORDER BY r.project_id, r.name",
            projects, repository_graphs.DEFAULT_MIN_CHUNKS,
        )  # fmt: skip
        for row in large:
            await repository_graphs.ensure_graph(conn, row["project_id"], row["id"], row["chunk_count"])
        built = time.perf_counter() - started
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return len(large), built


async def measure(dsn: str, size: int, layout: str, queries_count: int, workspace: Path, with_tool: bool) -> str:
    generator = np.random.default_rng(size)
    projects = ["bench"] if layout == "one project" else [f"bench-{n:02d}" for n in range(20)]
    # Every project has about CHUNKS_PER_TOPIC chunks of each topic, whatever the layout. Before
    # 3aa20a6 (2026-11-25) the topics were the whole corpus's (size / 200), so a project of the 20-project
    # layout held 10 chunks a topic: a query's 10th neighbour lay at chance similarity, which no
    # code base's does, and recall against exact measured noise (docs/benchmarks.md).
    topics = max(10, size // len(projects) // CHUNKS_PER_TOPIC)
    centers = generator.standard_normal((topics, EMBEDDING_DIMENSIONS)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    corpus = Corpus(centers, projects)
    conn = await connect(dsn)
    started = time.perf_counter()
    try:
        for project in projects:
            await load_project(conn, project, size // len(projects), centers)
        # Flush the load's dirty pages now: otherwise the checkpoint that follows a 5 GB load spreads
        # its writes over the first minutes of measuring (the 20 x 50k rows measured first had a p95
        # of 21.7 ms, those measured after it 16-17 ms), and a deployment's steady state has none.
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    loaded = time.perf_counter() - started
    embedder = GivenVectors()
    queries = make_queries(corpus, queries_count, embedder)
    # The repository filter before and after large repositories get their own graphs, side by side.
    before = await repository_filter_latency(dsn, corpus, queries, embedder)
    graphs, built = await build_repository_graphs(dsn, projects)
    rows = await sql_latency(dsn, corpus, queries, embedder)
    rows.insert(3, [f"SQL, 1 client(s), filter: repository, before its graph was built ({len(queries)} queries)",
                    *percentiles(before)])  # fmt: skip
    if with_tool:
        rows += await tool_latency(dsn, corpus, queries, workspace)
    body = f"Loaded and indexed in {loaded:.0f} s; {graphs} repository graph(s) built in {built:.0f} s.\n\n"
    body += table(["measure", "p50 ms", "p95 ms", "p99 ms"], rows)
    body += (
        "\n\nHNSW recall@10 against exact search (50 queries; the vector side's 50 candidates, re-sorted;"
        " ef_search 'exact scan': search_code's exact scan of a small repository; a repository filter on a"
        " repository with its own graph walks that graph, and \"project's graph\" the project's, as before):\n\n"
    )
    body += table(
        ["filter", "ef_search", "recall@10", "recall@10 above noise", "median ms"],
        await recall(dsn, corpus, queries, embedder),
    )
    return body


# HNSW build parameters (m, ef_construction) compared by index_variants; the schema's are (16, 128).
INDEX_VARIANTS = [(16, 64), (16, 128), (24, 128), (32, 200)]


async def index_variants(chunks: int, queries_count: int) -> str:
    """Recall, latency and build time of HNSW build parameters, on one project of `chunks` chunks.

    The corpus has the topics of a 1M-chunk corpus, as each project of the 20-project 1M layout
    does: few chunks share a query's topic, so its neighbours are the hardest to find.
    """
    generator = np.random.default_rng(1_000_000)
    centers = generator.standard_normal((5_000, EMBEDDING_DIMENSIONS)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    corpus = Corpus(centers, ["bench-00"])
    embedder = GivenVectors()
    queries = make_queries(corpus, queries_count, embedder)
    rows = []
    with throwaway_database(settings={"shared_buffers": "4GB"}) as dsn:
        conn = await connect(dsn)
        try:
            await load_project(conn, corpus.projects[0], chunks, centers)
            for m, ef_construction in INDEX_VARIANTS:
                # On the partitioned table, as the migrations build it: one index per partition.
                await conn.execute("DROP INDEX idx_chunks_embedding_hnsw")
                started = time.perf_counter()
                await conn.execute(
                    "CREATE INDEX idx_chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops)"
                    f" WITH (m = {m}, ef_construction = {ef_construction})"
                )
                built = time.perf_counter() - started
                for measured in await recall(dsn, corpus, queries, embedder, efs=(100, 200)):
                    rows.append([f"{m}, {ef_construction}", f"{built:.0f}", *measured])
        finally:
            await conn.close()
    headers = ["m, ef_construction", "build s", "filter", "ef_search", "recall@10", "recall@10 above noise"]
    return table([*headers, "median ms"], rows)


async def main(sizes: list[int], layouts: list[str], queries_count: int) -> None:
    # One report section per corpus, written as soon as it is measured: the 1M runs take long.
    for size in sizes:
        for layout in layouts:
            with (
                tempfile.TemporaryDirectory(prefix="codebase-mcp-bench-search-") as scratch,
                throwaway_database(settings={"shared_buffers": "4GB"}) as dsn,
            ):
                section = await measure(dsn, size, layout, queries_count, Path(scratch), with_tool=True)
            append_report(f"Search latency: {size:,} chunks, {layout}", f"Defaults: {DEFAULT_TUNING}.\n\n{section}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated corpus sizes in chunks")
    parser.add_argument("--layouts", default="one project,20 projects", help="comma-separated layouts")
    parser.add_argument("--queries", type=int, default=200, help="queries per measured row")
    parser.add_argument(
        "--index-variants", type=int, metavar="CHUNKS", help="compare HNSW build parameters on one project this size"
    )
    arguments = parser.parse_args()
    if arguments.index_variants:
        section = asyncio.run(index_variants(arguments.index_variants, arguments.queries))
        append_report(f"HNSW build parameters: {arguments.index_variants:,} chunks, one project", section)
        sys.exit(0)
    sizes = [int(size) for size in arguments.sizes.split(",")]
    asyncio.run(main(sizes, arguments.layouts.split(","), arguments.queries))
