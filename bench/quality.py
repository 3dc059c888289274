"""Retrieval quality on a labelled query set (bench/queries.json): recall@1/5/10 and MRR@10.

Indexes two code bases installed from PyPI (click and requests, their installed source) with the
real pipeline and model, then ranks each query's results with several variants, searching inside
the query's repository as an agent would:
- vector only, full text only, and hybrid fusions with different weights (codebase_mcp.search);
- a keyword-grep baseline that emulates an agent without semantic search: the query's words
  (stop words dropped) are grepped case-insensitively, and each chunk is ranked by how many
  distinct words it contains, then by how many matches.
A result is relevant when its file and symbol are a target of the query (a class target also
matches chunks of its methods).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.common import append_report, table, throwaway_database
from bench.indexing import index_once, installed_package
from codebase_mcp.db.connect import connect
from codebase_mcp.embedding import Embedder
from codebase_mcp.search import DEFAULT_TUNING, SearchTuning, search_code
from codebase_mcp.settings import Settings

QUERIES = Path(__file__).with_name("queries.json")
PROJECT = "quality"
DEPTH = 10
STOP_WORDS = frozenset(
    re.split(
        r"\s+",
        "a an and are as at be by can do does for from given how in into is it its of on or so that the their them"
        " then there they this to use used using what when where which while who why with without",
    )
)
Ranked = list[tuple[str, str | None]]  # (path, symbol), best first


@dataclass(frozen=True)
class Query:
    repo: str
    text: str
    targets: tuple[tuple[str, str], ...]

    def relevant(self, path: str, symbol: str | None) -> bool:
        return any(
            path == target_path and symbol is not None and (symbol == target or symbol.startswith(target + "."))
            for target_path, target in self.targets
        )

    def first_relevant_rank(self, ranked: Ranked) -> int | None:
        for rank, (path, symbol) in enumerate(ranked[:DEPTH], start=1):
            if self.relevant(path, symbol):
                return rank
        return None


def load_queries() -> list[Query]:
    document = json.loads(QUERIES.read_text())
    return [
        Query(item["repo"], item["query"], tuple((path, symbol) for path, symbol in item["targets"]))
        for item in document["queries"]
    ]


async def chunks_by_repository(dsn: str) -> dict[str, list[dict[str, Any]]]:
    conn = await connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT r.name AS repo, c.path, c.symbol_name AS symbol, c.content FROM chunks c"
            " JOIN repositories r ON r.id = c.repository_id"
            " JOIN generation_files g ON g.generation_id = r.active_generation_id"
            " AND g.file_version_id = c.file_version_id"
            " WHERE c.project_id = $1 ORDER BY c.path, c.start_line",
            PROJECT,
        )
    finally:
        await conn.close()
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row["repo"], []).append(dict(row))
    return found


def check_targets(queries: list[Query], chunks: dict[str, list[dict[str, Any]]]) -> None:
    """Every target must exist in the index: a typo or a changed package fails loudly, not as a miss."""
    missing = []
    for query in queries:
        for target in query.targets:
            alone = Query(query.repo, query.text, (target,))
            if not any(alone.relevant(chunk["path"], chunk["symbol"]) for chunk in chunks[query.repo]):
                missing.append(f"{query.repo}: {target[0]} {target[1]} ({query.text!r})")
    if missing:
        raise SystemExit("targets not in the index:\n" + "\n".join(missing))


def grep_baseline(chunks: list[dict[str, Any]], text: str) -> Ranked:
    words = [word for word in re.findall(r"[a-z0-9_]{3,}", text.lower()) if word not in STOP_WORDS]
    scored = []
    for index, chunk in enumerate(chunks):
        content = chunk["content"].lower()
        counts = [content.count(word) for word in words]
        distinct = sum(1 for count in counts if count)
        if distinct:
            scored.append((-distinct, -sum(counts), index))
    return [(chunks[index]["path"], chunks[index]["symbol"]) for _, _, index in sorted(scored)[:DEPTH]]


def score(queries: list[Query], ranks: list[int | None]) -> list[str]:
    def recall(k: int) -> float:
        return sum(1 for rank in ranks if rank is not None and rank <= k) / len(queries)

    mrr = sum(1 / rank for rank in ranks if rank is not None) / len(queries)
    return [f"{recall(1):.2f}", f"{recall(5):.2f}", f"{recall(10):.2f}", f"{mrr:.3f}"]


async def evaluate(dsn: str, embedder: Embedder, queries: list[Query], variants: dict[str, SearchTuning]) -> str:
    chunks = await chunks_by_repository(dsn)
    check_targets(queries, chunks)
    conn = await connect(dsn)
    try:
        rankers: dict[str, Callable[[Query], Awaitable[Ranked]]] = {}
        for name, tuning in variants.items():

            async def ranked(query: Query, tuning: SearchTuning = tuning) -> Ranked:
                hits = await search_code(conn, embedder, PROJECT, query.text, limit=DEPTH, repository=query.repo,
                                         tuning=tuning)  # fmt: skip
                return [(hit.path, hit.symbol) for hit in hits]

            rankers[name] = ranked

        async def grep(query: Query) -> Ranked:
            return grep_baseline(chunks[query.repo], query.text)

        rankers["keyword grep baseline"] = grep
        rows = []
        misses: dict[str, list[str]] = {}
        for name, ranker in rankers.items():
            ranks = [query.first_relevant_rank(await ranker(query)) for query in queries]
            rows.append([name, *score(queries, ranks)])
            for repo in sorted({query.repo for query in queries}):
                subset = [(query, rank) for query, rank in zip(queries, ranks, strict=True) if query.repo == repo]
                rows.append([f"  {repo} only", *score([q for q, _ in subset], [r for _, r in subset])])
            misses[name] = [query.text for query, rank in zip(queries, ranks, strict=True) if rank is None or rank > 5]
    finally:
        await conn.close()
    for name, missed in misses.items():
        print(f"\n{name}: {len(missed)} queries without a relevant result in the top 5")
        for text in missed:
            print(f"  - {text}")
    return table(["variant", "recall@1", "recall@5", "recall@10", "MRR@10"], rows)


VARIANTS = {
    "vector only": SearchTuning(text_weight=0),
    "full text only": SearchTuning(vector_weight=0),
    "full text only, every query term kept": SearchTuning(vector_weight=0, common_term_share=1.0, max_text_matches=0),
    "hybrid, equal weights, RRF k=60": SearchTuning(vector_weight=1, rrf_k=60),
    "hybrid, vector weight 2, k=60": SearchTuning(vector_weight=2, rrf_k=60),
    "hybrid, vector weight 3, k=10": SearchTuning(vector_weight=3, rrf_k=10),
    "hybrid, text weight 2, k=10": SearchTuning(vector_weight=1, text_weight=2, rrf_k=10),
    "hybrid, default but every query term kept": replace(DEFAULT_TUNING, common_term_share=1.0, max_text_matches=0),
    f"hybrid, default ({DEFAULT_TUNING.vector_weight:g}:{DEFAULT_TUNING.text_weight:g}, k={DEFAULT_TUNING.rrf_k})": (
        DEFAULT_TUNING
    ),
}


async def main() -> None:
    queries = load_queries()
    embedder = Embedder()
    with tempfile.TemporaryDirectory(prefix="codebase-mcp-bench-quality-") as scratch, throwaway_database() as dsn:
        roots = Path(scratch)
        settings = Settings(allowed_repo_roots=(roots,))
        for package in sorted({query.repo for query in queries}):
            await index_once(dsn, settings, embedder, installed_package(package, roots / package), PROJECT)
        body = await evaluate(dsn, embedder, queries, VARIANTS)
    labelled = json.loads(QUERIES.read_text())["packages"]
    header = (
        f"{len(queries)} hand-labelled queries (bench/queries.json) over "
        + ", ".join(f"{name} {version(name)} (labelled on {labelled[name]})" for name in labelled)
        + f"; searched within the query's repository; default tuning: {DEFAULT_TUNING}.\n\n"
    )
    append_report("Retrieval quality", header + body)


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    asyncio.run(main())
