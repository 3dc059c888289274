"""Hybrid code search inside one project: vector similarity + full text, fused by rank.

Two candidate lists come from the project's active generations (filters applied inside SQL):
- vector: HNSW cosine search with pgvector's iterative scan, so filters never starve it of rows
  (a repository filter walks that repository's own graph where it has one, and ranks a small
  repository's chunks exactly);
- text: PostgreSQL full-text search over code-aware tokens (identifiers split on case and `_`).
They are fused by weighted reciprocal rank fusion (score = sum of weight / (k + rank); SearchTuning),
which needs no score calibration between the two and rewards chunks both lists agree on.

Every query filters on project_id first: the chunks partition of that project is the only one
read, and repositories of other projects cannot match the repository filter.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg

from codebase_mcp import repository_graphs
from codebase_mcp.code_tokens import search_document
from codebase_mcp.embedding import Embedder
from codebase_mcp.errors import UserError
from codebase_mcp.jobs import validate_project_id

DEFAULT_LIMIT = 10
MAX_LIMIT = 50
MAX_QUERY_CHARS = 2000
SNIPPET_MAX_LINES = 20
SNIPPET_MAX_CHARS = 1200


@dataclass(frozen=True)
class SearchTuning:
    """The ranking's knobs. bench/quality.py scores variants of them on a labelled query set;
    the defaults are its best (docs/benchmarks.md)."""

    # The model's ranking is the better one alone; full text mostly rescues what it misses, so it
    # counts half, and a small k keeps the fused head sharp (docs/benchmarks.md, retrieval quality).
    vector_weight: float = 2.0  # 0: no vector retrieval at all (and no query embedding)
    text_weight: float = 1.0  # 0: no full-text retrieval
    rrf_k: int = 10
    candidates: int = 50  # each retriever proposes this many (at least the limit)
    # HNSW search breadth (at least `candidates`): with the index built at ef_construction 128
    # (migration 0005) it meets the recall target at 1M chunks, and a larger value would make the
    # planner prefer a slow exact scan on small projects, so it stays one number (docs/benchmarks.md).
    ef_search: int = 100
    # A query term found in more than this share of the project's chunks is left out of the full-text
    # query, and the rarest terms are kept while their matches add up to at most `max_text_matches`
    # (1.0 / 0: keep every term); see _text_query.
    common_term_share: float = 0.1
    max_text_matches: int = 2000
    # A repository filter on a repository without a graph of its own (repository_graphs: the
    # indexer builds one past REPOSITORY_GRAPH_MIN_CHUNKS) that leaves at most this many chunks is
    # answered by an exact scan of them instead of the project's HNSW graph, which finds the chunks
    # of a small share of the project only by walking past many times as many, slowly and with poor
    # recall; the exact scan is faster up to about this size (docs/benchmarks.md, fifth round).
    # 0: a graph always.
    exact_search_max_chunks: int = 10_000


DEFAULT_TUNING = SearchTuning()


_LEXEME = re.compile(r"[a-z0-9_]+")


class SearchError(UserError, ValueError):
    """Bad search input (message says what to change) or an unknown repository."""


@dataclass(frozen=True)
class SearchHit:
    repository_id: uuid.UUID
    repository: str
    path: str
    start_line: int
    end_line: int
    symbol: str | None
    language: str | None
    snippet: str
    score: float
    vector_rank: int | None
    text_rank: int | None


def glob_to_regex(pattern: str) -> str:
    """A path glob as a PostgreSQL regex: `*` within a folder, `**` across folders, `?` one char.

    A pattern without `/` matches the file name in any folder (like .gitignore), so `*.py` finds
    every Python file.
    """
    if not pattern or len(pattern) > 500:
        raise SearchError("path_glob must be 1-500 characters, e.g. 'src/**/*.py' or '*.ts'")
    body = pattern.lstrip("/")
    out = []
    i = 0
    while i < len(body):
        char = body[i]
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if body.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append({"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char)))
        i += 1
    prefix = "^" if "/" in body.rstrip("/") or pattern.startswith("/") else "^(?:.*/)?"
    return prefix + "".join(out) + "$"


def _snippet(content: str) -> str:
    lines = content.split("\n")
    text = "\n".join(lines[:SNIPPET_MAX_LINES])
    if len(text) > SNIPPET_MAX_CHARS:
        text = text[:SNIPPET_MAX_CHARS]
    if text != content:
        text += "\n…"
    return text


# The caller's filters, on the chunk's own columns (repository ids come from resolve_repositories,
# inside the project).
_FILTERED = """
    c.project_id = $1
    AND ($2::uuid[] IS NULL OR c.repository_id = ANY($2::uuid[]))
    AND ($3::text IS NULL OR c.language = $3)
    AND ($4::text IS NULL OR c.path ~ $4)
"""

# A chunk is searchable while its file version is in its repository's active generation: chunks of
# an index still being written, or replaced and not yet collected, are not. One index probe per row
# (an IN over the project's active file versions cost twice as much at 1M chunks).
_ACTIVE = """
    EXISTS (
        SELECT FROM repositories r JOIN generation_files g
            ON g.generation_id = r.active_generation_id AND g.file_version_id = c.file_version_id
         WHERE r.id = c.repository_id AND r.project_id = $1)
"""

# Iterative scans in relaxed order (search_code's) hand rows back only roughly by distance once a
# filter makes them walk past the first batch: at 1M chunks over 20 projects a repository filter's
# top 10, taken in the order returned, held 49% of the exact top 10, and 78% once sorted. So the
# candidates are re-sorted by distance, as pgvector's docs advise, before their order becomes ranks.
VECTOR_SQL = f"""
WITH nearest AS MATERIALIZED (
    SELECT c.id, c.embedding <=> $5 AS distance FROM chunks c
     WHERE {_FILTERED} AND {_ACTIVE}
     ORDER BY c.embedding <=> $5 LIMIT $6)
SELECT id FROM nearest ORDER BY distance, id
"""

_TEXT_SQL = f"""
SELECT c.id FROM chunks c, CAST($5 AS tsquery) q
 WHERE {_FILTERED} AND {_ACTIVE} AND c.search_tsv @@ q
 ORDER BY ts_rank_cd(c.search_tsv, q) DESC, c.id LIMIT $6
"""

# A small repository's chunks, exactly: its active generation's files lead to their chunks (through
# chunks' file_version_id index), so every row read is live and no liveness check is needed.
# Ordering by an expression no index provides keeps the planner off the HNSW index, whose plan
# here would be the filtered walk this query exists to avoid.
EXACT_VECTOR_SQL = f"""
WITH nearest AS MATERIALIZED (
    SELECT c.id, (c.embedding <=> $5) + 0 AS distance
      FROM repositories r
      JOIN generation_files g ON g.generation_id = r.active_generation_id
      JOIN chunks c ON c.file_version_id = g.file_version_id
     WHERE r.project_id = $1 AND r.id = ANY($2::uuid[]) AND {_FILTERED}
     ORDER BY distance LIMIT $6)
SELECT id FROM nearest ORDER BY distance, id
"""

# Full text ranks every matching chunk, and at 1M chunks the active check cost more per row than
# ranking it (docs/benchmarks.md, third round). Since few chunks fail it, the best
# $6 matches are ranked without it, and only they are checked; search_code runs _TEXT_SQL instead
# when too few of them pass.
_TEXT_RANKED_SQL = f"""
WITH ranked AS MATERIALIZED (
    SELECT c.id, c.repository_id, c.file_version_id, ts_rank_cd(c.search_tsv, q) AS rank
      FROM chunks c, CAST($5 AS tsquery) q
     WHERE {_FILTERED} AND c.search_tsv @@ q
     ORDER BY rank DESC, c.id LIMIT $6)
SELECT c.id, {_ACTIVE} AS active FROM ranked c ORDER BY c.rank DESC, c.id
"""

# A parallel worker takes milliseconds to start, more than a search's whole scan of a few thousand
# rows; concurrent searches use the cores instead.
_NO_PARALLEL_WORKERS = {"max_parallel_workers_per_gather": "0"}


def _graph_walk(tuning: SearchTuning, candidates: int) -> dict[str, str]:
    # Iterative scans keep walking the HNSW graph until enough rows pass the filters.
    return {"hnsw.iterative_scan": "relaxed_order", "hnsw.ef_search": str(max(tuning.ef_search, candidates))}


# What a search with the default tuning needs on every connection it reads from. The gateway's
# pool starts its sessions with them (codebase_mcp.db.connect), so such a search sends no BEGIN,
# SET LOCAL and COMMIT around its queries, 6 round trips fewer (docs/benchmarks.md, seventh round).
# Given another connection, search sets them itself.
SESSION_SETTINGS = {**_NO_PARALLEL_WORKERS, **_graph_walk(DEFAULT_TUNING, DEFAULT_TUNING.candidates)}

# The project's partition: its size, and when ANALYZE last sampled it (which dates its statistics).
_PROJECT_PARTITION_SQL = """
SELECT c.oid, c.reltuples AS chunks,
       greatest(pg_stat_get_last_analyze_time(c.oid), pg_stat_get_last_autoanalyze_time(c.oid)) AS analyzed_at
  FROM projects p JOIN pg_class c ON c.relname = p.chunk_partition
 WHERE p.id = $1
"""

# From the statistics ANALYZE keeps for the partition's tsvector column: the most common lexemes
# with the share of chunks holding each, then (after the last lexeme's share) the least share.
_LEXEME_SHARES_SQL = """
SELECT s.most_common_elems::text::text[] AS lexemes, s.most_common_elem_freqs AS shares
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'search_tsv'
 WHERE c.oid = $1
"""

_DETAILS_SQL = """
SELECT c.id, c.repository_id, r.name AS repository, c.path, c.start_line, c.end_line, c.symbol_name,
       c.language, c.content
  FROM chunks c JOIN repositories r ON r.id = c.repository_id AND r.project_id = $1
 WHERE c.project_id = $1 AND c.id = ANY($2::bigint[])
"""


@dataclass(frozen=True)
class RepositoryMatch:
    """The repositories a name, source or id names in a project, their searchable chunks, and
    whether each has its own HNSW graph (repository_graphs)."""

    ids: list[uuid.UUID]
    chunks: int
    graphed: bool


async def resolve_repositories(conn: Any, project_id: str, repository: str) -> RepositoryMatch:
    """Repositories in this project matching a name, a source (path or URL) or an id."""
    rows = await conn.fetch(
        """
        SELECT r.id, coalesce(g.chunk_count, 0) AS chunks,
               coalesce((SELECT i.indisvalid FROM pg_index i
                          WHERE i.indexrelid = to_regclass($3 || replace(r.id::text, '-', ''))), false) AS graphed
          FROM repositories r LEFT JOIN index_generations g ON g.id = r.active_generation_id
         WHERE r.project_id = $1 AND (r.name = $2 OR r.source = $2 OR r.id::text = $2)
        """,
        project_id,
        repository,
        repository_graphs.GRAPH_PREFIX,
    )
    if not rows:
        raise SearchError(
            f"no repository {repository!r} in project {project_id!r}; list_repositories shows the indexed ones"
        )
    return RepositoryMatch(
        [row["id"] for row in rows], sum(row["chunks"] for row in rows), all(row["graphed"] for row in rows)
    )


# asyncpg's classes are generic only to type checkers, hence the quotes.
Connection: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"
Database: TypeAlias = "asyncpg.Pool[Any] | Connection"


async def search_code(
    db: Database,
    embedder: Embedder,
    project_id: str,
    query: str,
    *,
    limit: int = DEFAULT_LIMIT,
    repository: str | None = None,
    language: str | None = None,
    path_glob: str | None = None,
    tuning: SearchTuning = DEFAULT_TUNING,
) -> list[SearchHit]:
    """The project's best `limit` chunks for `query`, filtered, best first.

    Given a pool, the two retrievers run at once on two connections, and the full-text side
    overlaps the query's embedding: one search costs the slower of the two, not their sum.
    Given one connection, they run one after the other.
    """
    try:
        validate_project_id(project_id)
    except ValueError as error:
        raise SearchError(str(error)) from None
    query = query.strip()
    if not query:
        raise SearchError("query must not be empty: describe the code you are looking for")
    if len(query) > MAX_QUERY_CHARS:
        raise SearchError(f"query is longer than {MAX_QUERY_CHARS} characters; shorten it")
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"limit must be between 1 and {MAX_LIMIT}")
    regex = glob_to_regex(path_glob) if path_glob else None
    language = language.strip().lower() if language else None
    candidates = max(tuning.candidates, limit)

    # With a pool, each step takes a connection and gives it back before the next: a search never
    # holds one while it waits for another, so concurrent searches cannot starve the pool.
    async with _connection(db) as conn:
        repositories = await resolve_repositories(conn, project_id, repository) if repository else None
    filters = (project_id, repositories.ids if repositories else None, language, regex)
    vector = _vector_side(db, embedder, query, filters, repositories, tuning, candidates)
    text = _text_side(db, project_id, query, filters, tuning, candidates)
    if isinstance(db, asyncpg.Pool):
        vector_ids, text_ids = await asyncio.gather(vector, text)
    else:
        text_ids = await text
        vector_ids = await vector
    fused = _fuse(tuning.rrf_k, (vector_ids, tuning.vector_weight), (text_ids, tuning.text_weight))[:limit]
    async with _connection(db) as conn:
        rows = await conn.fetch(_DETAILS_SQL, project_id, [chunk_id for chunk_id, _ in fused])
    by_id = {row["id"]: row for row in rows}
    vector_rank = {chunk_id: rank for rank, chunk_id in enumerate(vector_ids, start=1)}
    text_rank = {chunk_id: rank for rank, chunk_id in enumerate(text_ids, start=1)}
    hits = []
    for chunk_id, score in fused:
        row = by_id.get(chunk_id)
        if row is None:  # replaced by a re-index between the statements
            continue
        hits.append(
            SearchHit(
                repository_id=row["repository_id"],
                repository=row["repository"],
                path=row["path"],
                start_line=row["start_line"],
                end_line=row["end_line"],
                symbol=row["symbol_name"],
                language=row["language"],
                snippet=_snippet(row["content"]),
                score=round(score, 6),
                vector_rank=vector_rank.get(chunk_id),
                text_rank=text_rank.get(chunk_id),
            )
        )
    return hits


Filters: TypeAlias = tuple[str, list[uuid.UUID] | None, str | None, str | None]


async def _vector_side(
    db: Database,
    embedder: Embedder,
    query: str,
    filters: Filters,
    repositories: RepositoryMatch | None,
    tuning: SearchTuning,
    candidates: int,
) -> list[int]:
    """The nearest chunks to the query's embedding, best first."""
    if not tuning.vector_weight:
        return []
    vector = (await asyncio.to_thread(embedder.encode, [query]))[0]
    # One repository with its own graph walks that graph; a small one without is ranked exactly.
    own_graph = repositories is not None and len(repositories.ids) == 1 and repositories.graphed
    exact = repositories is not None and not own_graph and repositories.chunks <= tuning.exact_search_max_chunks
    settings = dict(_NO_PARALLEL_WORKERS)
    if not exact:
        settings.update(_graph_walk(tuning, candidates))
    if own_graph:
        # The planner proves a partial index usable only from the filter's value: a generic
        # plan of this prepared statement would walk the project's graph instead.
        settings["plan_cache_mode"] = "force_custom_plan"
    async with _connection_with(db, settings) as conn:
        rows = await conn.fetch(EXACT_VECTOR_SQL if exact else VECTOR_SQL, *filters, vector, candidates)
    return [row["id"] for row in rows]


async def _text_side(
    db: Database, project_id: str, query: str, filters: Filters, tuning: SearchTuning, candidates: int
) -> list[int]:
    """The best full-text matches of the query's code tokens, best first."""
    if not tuning.text_weight:
        return []
    async with _connection_with(db, _NO_PARALLEL_WORKERS) as conn:
        text_query = await _text_query(conn, project_id, query, tuning)
        if not text_query:
            return []
        # Exact when `candidates` of the best 2 * candidates pass, or when those were all the matches.
        ranked = await conn.fetch(_TEXT_RANKED_SQL, *filters, text_query, 2 * candidates)
        active = [row["id"] for row in ranked if row["active"]]
        if len(active) >= candidates or len(ranked) < 2 * candidates:
            return active[:candidates]
        rows = await conn.fetch(_TEXT_SQL, *filters, text_query, candidates)
    return [row["id"] for row in rows]


@asynccontextmanager
async def _connection(db: Database) -> AsyncIterator[Connection]:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


@asynccontextmanager
async def _connection_with(db: Database, settings: dict[str, str]) -> AsyncIterator[Connection]:
    """A connection with these settings: its session's own (connect's `settings`), or else those
    it lacks set for one read-only transaction (all in one statement)."""
    async with _connection(db) as conn:
        started: Mapping[str, str] = getattr(conn, "started_with", {})
        missing = {name: value for name, value in settings.items() if started.get(name) != value}
        if not missing:
            yield conn
            return
        async with conn.transaction(readonly=True):
            await conn.execute("; ".join(f"SET LOCAL {name} = {value}" for name, value in missing.items()))
            yield conn


@dataclass(frozen=True)
class _ProjectStatistics:
    """What search plans with: the project's chunk count and its lexemes' shares of chunks."""

    chunks: float
    shares: dict[str, float]
    unlisted_share: float  # estimate for a lexeme rarer than ANALYZE's list


class _StatisticsCache:
    """Each process keeps the lexeme lists of the partitions it searches, keyed by when they were
    last analysed, so an entry is never stale: reading a list costs as much as the search itself
    (docs/benchmarks.md) and it changes only when ANALYZE runs."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._entries: dict[tuple[int, object], _ProjectStatistics] = {}

    async def of_project(self, conn: Connection, project_id: str) -> _ProjectStatistics:
        partition = await conn.fetchrow(_PROJECT_PARTITION_SQL, project_id)
        if partition is None:  # no chunks ever written
            return _ProjectStatistics(chunks=0.0, shares={}, unlisted_share=0.0)
        chunks = max(0.0, partition["chunks"])  # -1 before the first ANALYZE
        key = (partition["oid"], partition["analyzed_at"])
        cached = self._entries.get(key)
        if cached is None:
            cached = await self._read(conn, partition["oid"], chunks)
            if len(self._entries) >= self.partitions:
                del self._entries[next(iter(self._entries))]  # the oldest entry
            self._entries[key] = cached
        return _ProjectStatistics(chunks, cached.shares, cached.unlisted_share)

    @staticmethod
    async def _read(conn: Connection, partition: int, chunks: float) -> _ProjectStatistics:
        row = await conn.fetchrow(_LEXEME_SHARES_SQL, partition)
        lexemes = list(row["lexemes"] or []) if row else []
        shares = list(row["shares"] or []) if row else []
        # A lexeme missing from the list is rarer than its least common entry: half that, as
        # PostgreSQL's own estimate for @@ assumes (0 before the first ANALYZE).
        least = shares[len(lexemes)] if len(shares) > len(lexemes) else 0.0
        return _ProjectStatistics(chunks, dict(zip(lexemes, shares, strict=False)), least / 2)


_statistics = _StatisticsCache(partitions=256)


async def _text_query(conn: Connection, project_id: str, query: str, tuning: SearchTuning) -> str | None:
    """The full-text query: the query's code tokens as lexemes, OR-ed, without the common ones.

    Ranking costs one ts_rank_cd per matching chunk (a few microseconds each), so a term found in
    most chunks ("get", "value", "response" in an HTTP library) makes the query read most of the
    project while adding nothing to the ranking (docs/benchmarks.md, second round). So a term
    found in more than `common_term_share` of the chunks is left out (a search engine's stop
    words, measured per project from ANALYZE's statistics), and
    the rarest terms are kept while their estimated matches add up to at most `max_text_matches`,
    which bounds the cost at any size. The rarest term always stays.
    """
    tokens = search_document(query)
    if not tokens:
        return None
    found = await conn.fetchval("SELECT tsvector_to_array(to_tsvector('english', $1))", tokens)
    # Lexemes of code tokens are [a-z0-9_] (the check keeps quotes and operators out regardless).
    lexemes = [lexeme for lexeme in found or [] if _LEXEME.fullmatch(lexeme)]
    if not lexemes:
        return None
    statistics = await _statistics.of_project(conn, project_id)
    chunks = statistics.chunks
    shares = {lexeme: statistics.shares.get(lexeme, statistics.unlisted_share) for lexeme in lexemes}
    kept: list[str] = []
    matches = 0.0
    for lexeme, share in sorted(shares.items(), key=lambda item: (item[1], item[0])):
        over_budget = tuning.max_text_matches > 0 and matches + share * chunks > tuning.max_text_matches
        if kept and (share > tuning.common_term_share or over_budget):
            break
        kept.append(lexeme)
        matches += share * chunks
    return " | ".join(f"'{lexeme}'" for lexeme in sorted(kept))


def _fuse(k: int, *rankings: tuple[list[int], float]) -> list[tuple[int, float]]:
    """Weighted reciprocal rank fusion: each list adds weight / (k + rank) to its chunks."""
    scores: dict[int, float] = {}
    for ranking, weight in rankings:
        for rank, chunk_id in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))
