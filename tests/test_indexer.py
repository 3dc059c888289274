"""The indexer against the real database and the real embedding model."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from codebase_mcp.embedding import Embedder, get_embedder
from codebase_mcp.search import SearchTuning, search_code
from codebase_mcp.settings import Settings
from indexer_image.chunking import chunk_text
from indexer_image.pipeline import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, HEADER_TOKEN_RESERVE, embedding_text, run_job
from indexer_image.progress import JobCancelledError, ProgressReporter
from tests import support


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return get_embedder()


@pytest.fixture
def project() -> str:
    return f"p-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "allowed"
    root.mkdir()
    return root


def make_settings(root: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "allowed_repo_roots": (root,),
        "progress_update_interval_seconds": 0.2,
        "cancellation_check_interval_seconds": 0.3,
    }
    values.update(overrides)
    return Settings(**values)


async def job_row(db: asyncpg.Connection[Any], job_id: uuid.UUID) -> asyncpg.Record:
    row: asyncpg.Record | None = await db.fetchrow("SELECT * FROM indexing_jobs WHERE id = $1", job_id)
    assert row is not None
    return row


async def index(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, settings: Settings, **job: Any
) -> asyncpg.Record:
    job_id = await support.insert_job(db, **job)
    assert await run_job(job_id, settings, database_url, embedder) == EXIT_OK
    row = await job_row(db, job_id)
    assert row["status"] == "completed", row["error_message"]
    return row


async def top_symbols(
    db: asyncpg.Connection[Any], embedder: Embedder, project: str, query: str, **kw: Any
) -> list[str]:
    hits = await search_code(db, embedder, project, query, **kw)
    return [f"{hit.path}:{hit.symbol}" for hit in hits]


async def counted_chunks(db: asyncpg.Connection[Any], repository_id: uuid.UUID) -> int:
    """The active generation's chunk_count, checked against its chunks counted."""
    row = await db.fetchrow(
        """
        SELECT g.chunk_count, (SELECT count(*) FROM generation_files f JOIN chunks c
                                   ON c.file_version_id = f.file_version_id AND c.project_id = g.project_id
                                WHERE f.generation_id = g.id) AS counted
          FROM repositories r JOIN index_generations g ON g.id = r.active_generation_id WHERE r.id = $1
        """,
        repository_id,
    )
    assert row is not None
    assert row["chunk_count"] == row["counted"]
    count: int = row["chunk_count"]
    return count


async def test_full_lifecycle_and_search(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path, project: str
) -> None:
    repo = support.make_sample_repository(workspace / "sample")
    job_id = await support.insert_job(db, project_id=project, repo_path=str(repo))
    assert await run_job(job_id, make_settings(workspace), database_url, embedder) == EXIT_OK

    row = await job_row(db, job_id)
    assert row["status"] == "completed"
    assert row["progress_percentage"] == 100
    assert row["started_at"] is not None
    assert row["completed_at"] >= row["started_at"]
    assert row["files_scanned"] == 11
    assert row["files_indexed"] == 10  # the PNG is binary
    assert row["chunks_created"] > 10
    assert row["repository_id"] is not None
    assert row["attempt_count"] == 1
    assert row["claimed_by"]
    metadata = json.loads(row["metadata"])
    assert metadata["files_skipped"] == {
        "binary": 1,
        "gitignored": 2,
        "excluded directory": 1,
        "too large": 1,
        "symlink outside repository": 1,
    }
    assert metadata["chunks_embedded"] + metadata["chunks_from_cache"] >= 1
    # Planner statistics are fresh at once, so the first searches use the HNSW index.
    analyzed = await db.fetchval(
        "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = (SELECT chunk_partition FROM projects"
        " WHERE id = $1)",
        project,
    )
    assert analyzed is not None
    assert analyzed >= row["completed_at"]

    paths = {
        record["path"]
        for record in await db.fetch(
            "SELECT fv.path FROM repositories r JOIN generation_files g ON g.generation_id = r.active_generation_id"
            " JOIN file_versions fv ON fv.id = g.file_version_id WHERE r.id = $1",
            row["repository_id"],
        )
    }
    assert "billing/invoice.py" in paths
    assert "legacy/latin1.py" in paths
    assert not {"debug.log", "secrets/token.txt", "node_modules/lib/index.js", "escape.py", "data/huge.txt"} & paths

    found = await top_symbols(db, embedder, project, "add the sales tax to the sum of an invoice's line items")
    assert found[0] == "billing/invoice.py:compute_invoice_total"
    found = await top_symbols(db, embedder, project, "charge a customer's credit card")
    assert found[0] == "billing/invoice.py:PaymentGateway"  # a class that fits the budget is one chunk
    found = await top_symbols(db, embedder, project, "token bucket that refuses requests when empty", language="go")
    assert found[0] == "server/health.go:Allow"
    found = await top_symbols(db, embedder, project, "exponential backoff before retrying a task", path_glob="java/**")
    assert found[0] == "java/jobs/RetryQueue.java:RetryQueue"
    assert all(hit.startswith("java/") for hit in found)
    assert not await search_code(db, embedder, project, "stolen secret", path_glob="escape.py")
    # A repository this small is searched exactly (SearchTuning.exact_search_max_chunks).
    found = await top_symbols(db, embedder, project, "charge a customer's credit card", repository=str(repo))
    assert found[0] == "billing/invoice.py:PaymentGateway"
    # Vectors and tsvectors stay in the row (migration 0006), though most rows pass the 2 KB at
    # which PostgreSQL's default would have moved them out.
    layout = await db.fetchrow(
        "SELECT count(*) FILTER (WHERE pg_column_toast_chunk_id(embedding) IS NOT NULL"
        "                        OR pg_column_toast_chunk_id(search_tsv) IS NOT NULL) AS out_of_line,"
        "       count(*) FILTER (WHERE pg_column_size(embedding) + pg_column_size(search_tsv) > 2032) AS large"
        "  FROM chunks WHERE project_id = $1",
        project,
    )
    assert layout is not None
    assert layout["out_of_line"] == 0
    assert layout["large"] > 0
    # Query text is data, never tsquery syntax.
    operators = await search_code(db, embedder, project, "a & !b | c:* <-> (d) compute_invoice_total")
    assert any(hit.symbol == "compute_invoice_total" and hit.text_rank for hit in operators)


async def test_full_text_leaves_out_terms_most_chunks_share(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path, project: str
) -> None:
    for n in range(12):
        support.write(workspace / "common", f"m{n}.py", f"def widget_{n}(widget):\n    return widget * {n}\n")
    support.write(workspace / "common", "rare.py", "def frobnicate(widget):\n    return widget\n")
    await index(db, database_url, embedder, make_settings(workspace), project_id=project,
                repo_path=str(workspace / "common"))  # fmt: skip
    text_only = SearchTuning(vector_weight=0)
    pruned = await search_code(db, embedder, project, "widget frobnicate", tuning=text_only)
    assert [hit.symbol for hit in pruned] == ["frobnicate"], "'widget' is in every chunk: it ranks nothing"
    by_budget = dataclasses.replace(text_only, common_term_share=1.0, max_text_matches=6)
    budgeted = await search_code(db, embedder, project, "widget frobnicate", tuning=by_budget)
    assert [hit.symbol for hit in budgeted] == ["frobnicate"], "'widget' alone would rank 13 chunks, over 6"
    every_term = dataclasses.replace(text_only, common_term_share=1.0, max_text_matches=0)
    everything = await search_code(db, embedder, project, "widget frobnicate", tuning=every_term)
    assert len(everything) == 10, "kept, the common term matches every chunk"
    alone = await search_code(db, embedder, project, "widget", tuning=text_only)
    assert len(alone) == 10, "when every term is common, the rarest still searches"


async def test_term_statistics_follow_each_new_index(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path, project: str
) -> None:
    """Search keeps a project's term statistics between queries; a job's ANALYZE must renew them."""
    repo = workspace / "growing"
    support.write(repo, "rare.py", "def frobnicate(gizmo):\n    return gizmo\n")
    for n in range(12):
        support.write(repo, f"other{n}.py", f"def unrelated_{n}():\n    return {n}\n")
    settings = make_settings(workspace)
    await index(db, database_url, embedder, settings, project_id=project, repo_path=str(repo))
    text_only = SearchTuning(vector_weight=0)
    before = await search_code(db, embedder, project, "gizmo frobnicate", tuning=text_only)
    assert [hit.symbol for hit in before] == ["frobnicate"], "both terms are rare, in one chunk"
    for n in range(12):
        support.write(repo, f"m{n}.py", f"def gizmo_{n}(gizmo):\n    return gizmo * {n}\n")
    await index(db, database_url, embedder, settings, project_id=project, repo_path=str(repo))
    after = await search_code(db, embedder, project, "gizmo frobnicate", tuning=text_only)
    assert [hit.symbol for hit in after] == ["frobnicate"], "'gizmo' is now in most chunks: left out"


async def test_chunks_outside_the_active_generation_never_match(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path, project: str
) -> None:
    """Full text ranks before it checks that a chunk is live; the check must still hold whatever ranks first."""
    repo = workspace / "half-written"
    for n in range(12):
        support.write(repo, f"m{n:02d}.py", f"def gizmo_{n}(gizmo):\n    return gizmo + {'gizmo ' * (n % 3)!r}\n")
    await index(db, database_url, embedder, make_settings(workspace), project_id=project, repo_path=str(repo))
    text_only = SearchTuning(vector_weight=0, common_term_share=1.0, max_text_matches=0)
    ranking = [hit.path for hit in await search_code(db, embedder, project, "gizmo", limit=12, tuning=text_only)]
    assert len(ranking) == 12
    # As if a re-index had written these files' chunks and not switched generations yet.
    hidden = ranking[:8]
    await db.execute(
        "DELETE FROM generation_files g USING file_versions v WHERE v.id = g.file_version_id"
        " AND v.project_id = $1 AND v.path = ANY($2::text[])",
        project,
        hidden,
    )
    # Two candidates: the four best ranked are all hidden, so the search must look past them.
    narrow = dataclasses.replace(text_only, candidates=2)
    found = [hit.path for hit in await search_code(db, embedder, project, "gizmo", limit=2, tuning=narrow)]
    assert found == ranking[8:10]
    # With room to spare, the hidden ones are skipped among the ranked.
    found = [hit.path for hit in await search_code(db, embedder, project, "gizmo", limit=12, tuning=text_only)]
    assert found == ranking[8:]
    hybrid = await search_code(db, embedder, project, "gizmo", limit=12)
    assert {hit.path for hit in hybrid} == set(ranking[8:])


async def test_a_job_that_is_not_pending_is_refused(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path, project: str
) -> None:
    support.write(workspace / "tiny", "a.py", "def one():\n    return 1\n")
    row = await index(db, database_url, embedder, make_settings(workspace), project_id=project,
                      repo_path=str(workspace / "tiny"))  # fmt: skip
    before = dict(row)
    assert await run_job(row["id"], make_settings(workspace), database_url, embedder) == EXIT_REFUSED
    assert dict(await job_row(db, row["id"])) == before
    assert await run_job(uuid.uuid4(), make_settings(workspace), database_url, embedder) == EXIT_REFUSED
    await db.execute("UPDATE indexing_jobs SET status = 'cancelled' WHERE id = $1", row["id"])
    assert await run_job(row["id"], make_settings(workspace), database_url, embedder) == EXIT_REFUSED


async def test_incremental_reindex_embeds_only_what_changed(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path, project: str
) -> None:
    repo = support.make_sample_repository(workspace / "inc")
    settings = make_settings(workspace)
    first = await index(db, database_url, embedder, settings, project_id=project, repo_path=str(repo))

    assert await counted_chunks(db, first["repository_id"]) == json.loads(first["metadata"])["chunks_total"]
    unchanged = await index(db, database_url, embedder, settings, project_id=project, repo_path=str(repo))
    meta = json.loads(unchanged["metadata"])
    assert (meta["files_changed"], meta["chunks_embedded"], meta["chunks_from_cache"]) == (0, 0, 0)
    assert meta["chunks_total"] == json.loads(first["metadata"])["chunks_total"]
    assert await counted_chunks(db, first["repository_id"]) == meta["chunks_total"], "carried files count too"

    old = (repo / "billing/invoice.py").read_text()
    new = old.replace('raise ValueError("amount must be positive")', 'raise ValueError("refusing a zero charge")')
    assert new != old
    (repo / "billing/invoice.py").write_text(new)
    (repo / "docs/README.md").unlink()
    changed = await index(db, database_url, embedder, settings, project_id=project, repo_path=str(repo))
    meta = json.loads(changed["metadata"])
    budget = embedder.max_tokens - 2 - HEADER_TOKEN_RESERVE

    def texts(source: str) -> set[str]:
        return {embedding_text(c.symbol, c.text) for c in chunk_text(source, "python", embedder.count_tokens, budget)}

    assert meta["files_changed"] == 1
    assert meta["chunks_embedded"] == len(texts(new) - texts(old)) == 1
    assert meta["chunks_from_cache"] == len(texts(new) & texts(old))
    hits = await search_code(db, embedder, project, "how to deploy the sample service to production")
    assert "docs/README.md" not in {hit.path for hit in hits}
    versions = await db.fetchval(
        "SELECT count(*) FROM file_versions WHERE repository_id = $1", changed["repository_id"]
    )
    assert versions == changed["files_indexed"], "old versions must be collected after the switch"
    generations = await db.fetchval(
        "SELECT count(*) FROM index_generations WHERE repository_id = $1", changed["repository_id"]
    )
    assert generations == 1
    assert await counted_chunks(db, changed["repository_id"]) == meta["chunks_total"]

    forced = await index(db, database_url, embedder, settings, project_id=project, repo_path=str(repo),
                         force_reindex=True)  # fmt: skip
    meta = json.loads(forced["metadata"])
    assert meta["chunks_embedded"] == meta["chunks_total"]
    assert meta["files_changed"] == forced["files_indexed"]


async def test_a_large_repository_gets_its_own_search_graph(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path, project: str
) -> None:
    # Past REPOSITORY_GRAPH_MIN_CHUNKS the first index builds the repository's graph before writing
    # its chunks (they are in it when the job completes); later jobs keep it, and a repository
    # under the threshold gets none.
    from codebase_mcp import repository_graphs
    from indexer_image import store

    repo = support.make_sample_repository(workspace / "sample")
    settings = make_settings(workspace, repository_graph_min_chunks=5)
    first = await index(db, database_url, embedder, settings, project_id=project, repo_path=str(repo))
    repository_id = first["repository_id"]
    chunks = await counted_chunks(db, repository_id)
    assert chunks > 5
    assert await repository_graphs.has_graph(db, repository_id)
    assert "graph" in json.loads(first["metadata"])["seconds"]
    key = store.RepositoryKey(project, "path", str(repo.resolve()), None, "sample")
    assert repository_id == store.repository_id_for(key), "named before its row existed, the same on every try"
    assert store.repository_id_for(dataclasses.replace(key, ref="")) != repository_id
    graph = repository_graphs.graph_name(repository_id)
    definition = await db.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = $1", graph)
    assert "USING hnsw" in definition
    assert f"repository_id = '{repository_id}'::uuid" in definition
    project_graph = await db.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'idx_chunks_embedding_hnsw'")
    assert project_graph == ["m=16", "ef_construction=128"]
    assert "WITH (m='16', ef_construction='128')" in definition, "built as the project's graph"

    again = await index(db, database_url, embedder, settings, project_id=project, repo_path=str(repo))
    assert again["repository_id"] == repository_id
    assert "graph" not in json.loads(again["metadata"])["seconds"], "kept, not rebuilt"
    assert await repository_graphs.has_graph(db, repository_id)
    hits = await search_code(db, embedder, project, "charge an invoice", repository="sample")
    assert hits
    assert {hit.repository_id for hit in hits} == {repository_id}

    small = support.make_sample_repository(workspace / "small")
    row = await index(db, database_url, embedder, make_settings(workspace), project_id=project, repo_path=str(small))
    assert not await repository_graphs.has_graph(db, row["repository_id"]), "under 5,000 chunks: no graph"


async def test_two_repositories_share_embeddings(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path, project: str
) -> None:
    salt = uuid.uuid4().hex[:8]
    for name in ("fork-a", "fork-b"):
        support.make_large_repository(workspace / name, files=2, functions=3, salt=salt)
    settings = make_settings(workspace)
    first = await index(db, database_url, embedder, settings, project_id=project, repo_path=str(workspace / "fork-a"))
    second = await index(db, database_url, embedder, settings, project_id=project, repo_path=str(workspace / "fork-b"))
    assert json.loads(first["metadata"])["chunks_embedded"] == 6
    meta = json.loads(second["metadata"])
    assert (meta["chunks_embedded"], meta["chunks_from_cache"]) == (0, 6)


async def test_git_sources_record_the_commit(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path, project: str
) -> None:
    repo = workspace / "gitrepo"
    first_sha, second_sha = support.make_git_repository(repo)
    settings = make_settings(workspace)
    clones_before = set(Path(tempfile.gettempdir()).glob("codebase-mcp-clone-*"))

    old = await index(db, database_url, embedder, settings, project_id=project, repo_url=f"file://{repo}",
                      ref=first_sha)  # fmt: skip
    assert old["commit_sha"] == first_sha
    assert old["files_indexed"] == 1
    head = await index(db, database_url, embedder, settings, project_id=project, repo_url=f"file://{repo}",
                       ref="main")  # fmt: skip
    assert head["commit_sha"] == second_sha
    assert head["files_indexed"] == 2
    assert head["repository_id"] != old["repository_id"], "each ref is its own repository"
    hits = await search_code(db, embedder, project, "fibonacci sequence", repository=f"file://{repo}")
    assert hits
    assert {hit.path for hit in hits} <= {"app.py", "lib/math_utils.py"}
    assert set(Path(tempfile.gettempdir()).glob("codebase-mcp-clone-*")) == clones_before, "scratch clones removed"

    local = await index(db, database_url, embedder, settings, project_id=project, repo_path=str(repo))
    assert local["commit_sha"] == second_sha


@pytest.mark.parametrize(
    ("job", "error_type", "message"),
    [
        ({"repo_path": "/definitely/not/here"}, "SourceError", "outside the allowed roots"),
        ({"repo_path": "{root}/missing"}, "SourceError", "does not exist"),
        ({"repo_url": "--upload-pack=x"}, "SourceError", "must not start with '-'"),
        ({"repo_url": "https://user:hunter2@example.org/r.git"}, "SourceError", "must not contain credentials"),
        ({"repo_url": "file://{root}/no-such-repo"}, "SourceError", "does not exist"),
        ({"repo_url": "file://{root}/plain", "ref": "no-such-branch"}, "SourceError", "git fetch failed"),
    ],
)
async def test_bad_sources_fail_cleanly(
    db: asyncpg.Connection[Any],
    database_url: str,
    embedder: Embedder,
    workspace: Path,
    project: str,
    job: dict[str, str],
    error_type: str,
    message: str,
) -> None:
    support.make_git_repository(workspace / "plain")
    filled = {key: value.format(root=workspace) for key, value in job.items()}
    job_id = await support.insert_job(
        db,
        project_id=project,
        repo_path=filled.get("repo_path"),
        repo_url=filled.get("repo_url"),
        ref=filled.get("ref"),
    )
    assert await run_job(job_id, make_settings(workspace), database_url, embedder) == EXIT_FAILED
    row = await job_row(db, job_id)
    assert row["status"] == "failed"
    assert row["error_type"] == error_type
    assert message in row["error_message"]
    assert "hunter2" not in (row["error_message"] + (row["error_traceback"] or ""))
    assert row["completed_at"] is not None
    assert await db.fetchval("SELECT count(*) FROM repositories WHERE project_id = $1", project) == 0


async def test_git_token_never_reaches_the_row(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path, project: str
) -> None:
    job_id = await support.insert_job(db, project_id=project, repo_url="https://127.0.0.1:1/org/repo.git")
    settings = make_settings(workspace, git_token="tok-5ecret-value")
    assert await run_job(job_id, settings, database_url, embedder) == EXIT_FAILED
    row = await job_row(db, job_id)
    assert row["error_type"] == "SourceError"
    assert "git fetch failed" in row["error_message"]
    assert "5ecret" not in " ".join(str(value) for value in dict(row).values())


async def test_bad_project_id_fails_with_a_clear_message(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path
) -> None:
    support.write(workspace / "r", "a.py", "x = 1\n")
    job_id = await support.insert_job(db, project_id="no spaces allowed", repo_path=str(workspace / "r"))
    assert await run_job(job_id, make_settings(workspace), database_url, embedder) == EXIT_FAILED
    assert "project_id must be" in (await job_row(db, job_id))["error_message"]


async def test_repository_over_the_size_cap_fails_before_work(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path, project: str
) -> None:
    support.make_large_repository(workspace / "big", files=3, functions=3, salt="cap")
    job_id = await support.insert_job(db, project_id=project, repo_path=str(workspace / "big"))
    settings = make_settings(workspace, max_repo_size_gb=0.000001)
    assert await run_job(job_id, settings, database_url, embedder) == EXIT_FAILED
    row = await job_row(db, job_id)
    assert row["error_type"] == "RepositoryTooLargeError"
    assert "MAX_REPO_SIZE_GB" in row["error_message"]


async def test_timeout_fails_the_job_and_leaves_no_rows(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path, project: str
) -> None:
    support.make_large_repository(workspace / "slow", files=30, functions=20, salt=uuid.uuid4().hex[:8])
    job_id = await support.insert_job(db, project_id=project, repo_path=str(workspace / "slow"))
    settings = make_settings(workspace, indexing_job_timeout_seconds=1)
    assert await run_job(job_id, settings, database_url, embedder) == EXIT_FAILED
    row = await job_row(db, job_id)
    assert row["status"] == "failed"
    assert row["error_type"] == "Timeout"
    assert "INDEXING_JOB_TIMEOUT_SECONDS" in row["error_message"]
    assert await db.fetchval("SELECT count(*) FROM repositories WHERE project_id = $1", project) == 0


async def test_progress_is_monotonic_and_throttled(db: asyncpg.Connection[Any], project: str) -> None:
    job_id = await support.insert_job(db, project_id=project, repo_path="/x")
    await db.execute("UPDATE indexing_jobs SET status = 'running' WHERE id = $1", job_id)
    now = [0.0]
    reporter = ProgressReporter(db, job_id, interval=2.0, clock=lambda: now[0])

    await reporter.report("chunking", 1, 10, "Chunking files 1/10")  # first write goes through
    first = await job_row(db, job_id)
    for step in range(2, 10):
        now[0] += 0.1
        await reporter.report("chunking", step, 10, f"Chunking files {step}/10")
    throttled = await job_row(db, job_id)
    assert reporter.writes == 1
    assert throttled["progress_message"] == first["progress_message"] == "Chunking files 1/10"

    now[0] += 2.0
    await reporter.report("chunking", 9, 10, "Chunking files 9/10")
    assert (await job_row(db, job_id))["progress_percentage"] == 46
    now[0] += 2.0
    await reporter.report("scanning", 1, 2, "going backwards?")  # a lower figure never lowers the bar
    row = await job_row(db, job_id)
    assert row["progress_percentage"] == 46
    assert row["heartbeat_at"] is not None
    assert reporter.writes == 3

    await db.execute("UPDATE indexing_jobs SET status = 'cancelled' WHERE id = $1", job_id)
    now[0] += 2.0
    with pytest.raises(JobCancelledError):
        await reporter.report("embedding", 1, 2, "Embedding chunks 1/2")


async def test_observed_progress_never_goes_backwards(
    db: asyncpg.Connection[Any], database_url: str, embedder: Embedder, workspace: Path, project: str
) -> None:
    support.make_large_repository(workspace / "watched", files=25, functions=12, salt=uuid.uuid4().hex[:8])
    job_id = await support.insert_job(db, project_id=project, repo_path=str(workspace / "watched"))
    seen: list[tuple[int, str]] = []

    async def sample() -> None:
        from codebase_mcp.db.connect import connect

        conn = await connect(database_url)
        try:
            while True:
                row = await conn.fetchrow(
                    "SELECT progress_percentage, progress_message FROM indexing_jobs WHERE id = $1", job_id
                )
                assert row is not None
                seen.append((row[0], row[1] or ""))
                await asyncio.sleep(0.02)
        finally:
            await conn.close()

    sampler = asyncio.create_task(sample())
    try:
        assert await run_job(job_id, make_settings(workspace), database_url, embedder) == EXIT_OK
    finally:
        sampler.cancel()
    final = await job_row(db, job_id)
    seen.append((final["progress_percentage"], final["progress_message"]))
    percentages = [p for p, _ in seen]
    assert percentages == sorted(percentages)
    assert percentages[-1] == 100
    messages = [m for _, m in seen]
    assert any(m.startswith("Embedding chunks") for m in messages), sorted(set(messages))
