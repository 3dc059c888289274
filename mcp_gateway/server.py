"""The MCP gateway: every tool an agent can call, in one file.

The gateway only reads and writes PostgreSQL: starting a job inserts a pending row (the trigger's
NOTIFY wakes an executor), cancelling updates the row (the executor stops the worker). Every tool
resolves the project through the caller's token (mcp_gateway/auth.py), and every query filters on
that project, so a token never sees another project's jobs, repositories or code: a job id of
another project gets the same answer as an unknown one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import asyncpg
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.utilities.tasks import TaskConfig
from fastmcp_tasks import TasksExtension
from pydantic import BaseModel, Field

from codebase_mcp.db.connect import create_pool
from codebase_mcp.dispatch import Dispatcher, Launcher
from codebase_mcp.embedding import Embedder, get_embedder
from codebase_mcp.jobs import IndexingJobProgress
from codebase_mcp.paths import RepoPathError, validate_repo_path
from codebase_mcp.search import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    SESSION_SETTINGS,
    SearchError,
    resolve_repositories,
    search_code,
)
from codebase_mcp.settings import Settings
from indexer_image.sources import SourceError, validate_git_url, validate_ref
from mcp_gateway.auth import ProjectTokenVerifier, load_grants, resolve_project
from mcp_gateway.observability import Metrics, ToolMetricsMiddleware, routes

INSTRUCTIONS = """Semantic code search over indexed repositories.
Index once with start_indexing_background (returns a job_id at once; indexing takes minutes),
follow it with get_indexing_status or wait_for_indexing, then use search_code to find code by meaning and read_file
to open more lines around a result. Jobs and their status are kept for JOB_STATUS_RETENTION_DAYS.
"""
READ_FILE_MAX_LINES = 400
# All snippets of one search response share this many characters (about 6k tokens), so even 50
# results stay well inside what clients accept; read_file opens more of any result.
SEARCH_SNIPPET_BUDGET = 24_000
# A bounded wait stays well under the 60 s that clients such as Claude Code and Codex allow a call.
MAX_WAIT_SECONDS = 30
# Called as an MCP task the wait is decoupled from the HTTP request, so it may last as long as a job.
MAX_TASK_WAIT_SECONDS = 3600
TASK_POLL_INTERVAL = timedelta(seconds=2)
WAIT_POLL_SECONDS = 1.0


class JobStarted(BaseModel):
    job_id: uuid.UUID
    status: str
    project_id: str
    message: str


class JobStatus(IndexingJobProgress):
    project_id: str
    repository: str = Field(description="repo_name of the job")
    k8s_namespace: str | None = Field(default=None, description="where the operator runs it (null: no cluster)")
    k8s_job_name: str | None = Field(default=None, description="its Kubernetes Job, for `kubectl describe job`")


class JobList(BaseModel):
    project_id: str
    jobs: list[JobStatus]


class Repository(BaseModel):
    id: uuid.UUID
    name: str
    source: str
    ref: str | None
    commit_sha: str | None
    indexed_at: datetime | None = Field(description="when the searchable generation was built; null: never")
    files: int
    chunks: int


class RepositoryList(BaseModel):
    project_id: str
    repositories: list[Repository]


class SearchResult(BaseModel):
    repository: str
    path: str = Field(description="relative to the repository root")
    start_line: int
    end_line: int
    symbol: str | None
    language: str | None
    score: float
    snippet: str


class SearchResults(BaseModel):
    project_id: str
    query: str
    results: list[SearchResult]
    hint: str | None = None


class FileLines(BaseModel):
    repository: str
    path: str
    start_line: int
    end_line: int
    total_lines: int
    content: str


_JOB_COLUMNS = """id AS job_id, project_id, repo_name AS repository, status, progress_percentage,
    COALESCE(progress_message, '') AS progress_message, files_scanned, files_indexed, chunks_created,
    error_message, error_type, created_at, started_at, completed_at, cancelled_at, k8s_namespace, k8s_job_name"""


def fit_snippets(snippets: list[str], budget: int) -> list[str]:
    """Cut snippets so that together they stay within `budget` characters (plus a marker each)."""
    share = budget // max(1, len(snippets))
    return [snippet if len(snippet) <= share else snippet[:share] + "\n…" for snippet in snippets]


def _job(row: asyncpg.Record) -> JobStatus:
    return JobStatus(**dict(row))


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ToolError(f"{value!r} is not a job id; list_indexing_jobs shows the project's jobs") from None


def build_server(
    settings: Settings, dsn: str, embedder: Embedder | None = None, launcher: Launcher | None = None
) -> FastMCP[Any]:
    """The gateway's MCP server; `mcp.http_app(path="/mcp")` serves it over streamable HTTP.

    With a launcher, the gateway also runs the dispatch loop (the local executor of `dev`); in a
    cluster it runs without one and the operator dispatches.
    """
    if settings.tokens_file is None:
        raise ValueError("TOKENS_FILE is not set: the gateway serves authenticated requests only")
    verifier = ProjectTokenVerifier(load_grants(settings.tokens_file))
    state: dict[str, Any] = {}
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(server: FastMCP[Any]) -> AsyncIterator[None]:
        # Sessions start with what search needs, so a search sets nothing per query.
        state["pool"] = await create_pool(dsn, min_size=1, max_size=10, settings=SESSION_SETTINGS)
        stop = asyncio.Event()
        dispatching = None
        if launcher is not None:
            dispatching = asyncio.create_task(Dispatcher(dsn, launcher, settings).run(stop))
        try:
            yield
        finally:
            stop.set()
            if dispatching is not None:
                await dispatching  # stops the workers it started; their jobs settle as failed/cancelled
            await state.pop("pool").close()

    def pool() -> asyncpg.Pool[Any]:
        value: asyncpg.Pool[Any] = state["pool"]
        return value

    def model() -> Embedder:
        if embedder is not None:
            return embedder
        return get_embedder(settings.embedding_model)

    mcp: FastMCP[Any] = FastMCP(
        "codebase-mcp", instructions=INSTRUCTIONS, auth=verifier, lifespan=lifespan, mask_error_details=True
    )
    mcp.add_middleware(ToolMetricsMiddleware(metrics))
    # Task-augmented calls (io.modelcontextprotocol/tasks) for clients that declare the extension;
    # the task records live in TASKS_URL (in-process memory unless several replicas share Redis).
    mcp.add_extension(TasksExtension(url=settings.tasks_url))
    live_workers = (lambda: len(launcher.live())) if launcher is not None else (lambda: 0)
    for path, handler in routes(metrics, pool, live_workers).items():
        mcp.custom_route(path, methods=["GET"])(handler)

    @mcp.tool(annotations={"readOnlyHint": False, "destructiveHint": False, "idempotentHint": True})
    async def start_indexing_background(
        repo_path: Annotated[str | None, Field(description="absolute path of a local repository")] = None,
        repo_url: Annotated[str | None, Field(description="git URL (https, ssh or file)")] = None,
        ref: Annotated[str | None, Field(description="branch, tag or commit of repo_url")] = None,
        project_id: str | None = None,
        force_reindex: Annotated[bool, Field(description="re-embed every file, even unchanged ones")] = False,
    ) -> JobStarted:
        """Start indexing a repository in the background; returns a job_id at once.
        Give repo_path or repo_url. Follow it with get_indexing_status or wait_for_indexing."""
        project = resolve_project(project_id)
        if bool(repo_path) == bool(repo_url):
            raise ToolError("give exactly one of repo_path (a local directory) or repo_url (a git URL)")
        try:
            if repo_path:
                source = str(validate_repo_path(repo_path, settings.allowed_repo_roots))
                name = Path(source).name
                ref = None
            else:
                assert repo_url is not None
                source = validate_git_url(repo_url, settings)
                ref = validate_ref(ref)
                name = source.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git") or source
        except (RepoPathError, SourceError) as error:
            raise ToolError(str(error)) from None
        async with pool().acquire() as conn, conn.transaction():
            # One active job per source: serialise on the source so two calls cannot both insert.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{project}\n{source}\n{ref or ''}")
            existing = await conn.fetchrow(
                "SELECT id, status FROM indexing_jobs WHERE project_id = $1 AND status IN ('pending', 'running')"
                " AND COALESCE(repo_path, repo_url) = $2 AND ref IS NOT DISTINCT FROM $3 ORDER BY created_at LIMIT 1",
                project,
                source,
                ref,
            )
            if existing is not None:
                return JobStarted(
                    job_id=existing["id"],
                    status=existing["status"],
                    project_id=project,
                    message="this repository already has an active indexing job; returning it instead of a new one",
                )
            job_id = await conn.fetchval(
                "INSERT INTO indexing_jobs (repo_path, repo_url, ref, repo_name, project_id, force_reindex, status,"
                " progress_message) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 'Queued') RETURNING id",
                source if repo_path else None,
                source if repo_url else None,
                ref,
                name,
                project,
                force_reindex,
            )
        return JobStarted(
            job_id=job_id,
            status="pending",
            project_id=project,
            message="indexing queued; follow it with get_indexing_status or wait_for_indexing",
        )

    async def job_status(job_id: str, project_id: str | None) -> JobStatus:
        project = resolve_project(project_id)
        row = await pool().fetchrow(
            f"SELECT {_JOB_COLUMNS} FROM indexing_jobs WHERE id = $1 AND project_id = $2", _uuid(job_id), project
        )
        if row is None:
            raise ToolError(f"no job {job_id} in project {project!r}; it may have expired after the retention period")
        return _job(row)

    @mcp.tool(annotations={"readOnlyHint": True})
    async def get_indexing_status(job_id: str, project_id: str | None = None) -> JobStatus:
        """Status and progress of an indexing job (percentage, phase message, counters, errors)."""
        return await job_status(job_id, project_id)

    # Task mode "optional": a client that declares the MCP tasks extension gets a task handle at once
    # and the wait may last as long as a job; every other client gets a plain call bounded well under
    # the 60 s that clients such as Claude Code and Codex allow. Cancelling such a task only stops the
    # wait: the tool is read-only, and only cancel_indexing_background cancels a job.
    @mcp.tool(
        annotations={"readOnlyHint": True},
        task=TaskConfig(mode="optional", poll_interval=TASK_POLL_INTERVAL),
    )
    async def wait_for_indexing(
        job_id: str,
        project_id: str | None = None,
        timeout_seconds: Annotated[
            float,
            Field(
                gt=0,
                le=MAX_TASK_WAIT_SECONDS,
                description=f"at most {MAX_WAIT_SECONDS} in a plain call; up to {MAX_TASK_WAIT_SECONDS} as an MCP task",
            ),
        ] = MAX_WAIT_SECONDS,
        ctx: Context | None = None,
    ) -> JobStatus:
        """Wait for an indexing job to end and return its status; returns early when it ends.
        If it is still running after timeout_seconds, call again."""
        as_task = ctx is not None and ctx.is_background_task
        if timeout_seconds > MAX_WAIT_SECONDS and not as_task:
            raise ToolError(
                f"timeout_seconds may be at most {MAX_WAIT_SECONDS} in a plain call; call again to keep"
                " waiting, or call this tool as an MCP task"
            )
        status = await job_status(job_id, project_id)
        deadline = time.monotonic() + timeout_seconds
        while not status.status.is_terminal and time.monotonic() < deadline:
            if ctx is not None:  # a progress notification, or a task's status message
                await ctx.report_progress(status.progress_percentage, 100, status.progress_message)
            await asyncio.sleep(min(WAIT_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            status = await job_status(job_id, project_id)
        return status

    @mcp.tool(annotations={"readOnlyHint": False, "destructiveHint": True, "idempotentHint": False})
    async def cancel_indexing_background(job_id: str, project_id: str | None = None) -> JobStatus:
        """Cancel a pending or running indexing job; its partial work is discarded."""
        project = resolve_project(project_id)
        job = _uuid(job_id)
        row = await pool().fetchrow(
            f"UPDATE indexing_jobs SET status = 'cancelled', cancelled_at = now(),"
            f" progress_message = 'Cancellation requested' WHERE id = $1 AND project_id = $2"
            f" AND status IN ('pending', 'running') RETURNING {_JOB_COLUMNS}",
            job,
            project,
        )
        if row is not None:
            return _job(row)
        status = await pool().fetchval(
            "SELECT status FROM indexing_jobs WHERE id = $1 AND project_id = $2", job, project
        )
        if status is None:
            raise ToolError(f"no job {job_id} in project {project!r}")
        raise ToolError(f"job {job_id} is already {status}; only pending or running jobs can be cancelled")

    @mcp.tool(annotations={"readOnlyHint": True})
    async def list_indexing_jobs(
        project_id: str | None = None,
        status: Literal["pending", "running", "completed", "failed", "cancelled"] | None = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
    ) -> JobList:
        """The project's indexing jobs, newest first."""
        project = resolve_project(project_id)
        rows = await pool().fetch(
            f"SELECT {_JOB_COLUMNS} FROM indexing_jobs WHERE project_id = $1 AND ($2::text IS NULL OR status = $2)"
            " ORDER BY created_at DESC LIMIT $3",
            project,
            status,
            limit,
        )
        return JobList(project_id=project, jobs=[_job(row) for row in rows])

    @mcp.tool(annotations={"readOnlyHint": True})
    async def list_repositories(project_id: str | None = None) -> RepositoryList:
        """The project's repositories and what is indexed of each."""
        project = resolve_project(project_id)
        rows = await pool().fetch(
            """
            SELECT r.id, r.name, r.source, r.ref, r.last_commit_sha AS commit_sha, g.activated_at AS indexed_at,
                   (SELECT count(*) FROM generation_files f WHERE f.generation_id = r.active_generation_id) AS files,
                   coalesce(g.chunk_count, 0) AS chunks
              FROM repositories r LEFT JOIN index_generations g ON g.id = r.active_generation_id
             WHERE r.project_id = $1 ORDER BY r.name
            """,
            project,
        )
        return RepositoryList(project_id=project, repositories=[Repository(**dict(row)) for row in rows])

    # Named search_code for agents; the Python name differs so the library function stays reachable.
    @mcp.tool(name="search_code", annotations={"readOnlyHint": True})
    async def search_code_tool(
        query: Annotated[str, Field(description="what the code does, in words or identifiers")],
        project_id: str | None = None,
        repository: Annotated[str | None, Field(description="repository name, source or id")] = None,
        language: str | None = None,
        path_glob: Annotated[str | None, Field(description="e.g. 'src/**/*.py' or '*.ts'")] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    ) -> SearchResults:
        """Find code by meaning (semantic + keyword) in the project's indexed repositories."""
        project = resolve_project(project_id)
        try:
            # Given the pool, the vector and full-text sides run at once on two connections.
            hits = await search_code(
                pool(), model(), project, query, limit=limit, repository=repository, language=language,
                path_glob=path_glob,
            )  # fmt: skip
        except SearchError as error:
            raise ToolError(str(error)) from None
        snippets = fit_snippets([hit.snippet for hit in hits], SEARCH_SNIPPET_BUDGET)
        # SearchResult takes SearchHit's fields it declares (ids and ranks stay internal).
        results = [
            SearchResult.model_validate({**asdict(hit), "snippet": snippet})
            for hit, snippet in zip(hits, snippets, strict=True)
        ]
        hint = None if results else "nothing matched: check list_repositories, or widen the filters"
        return SearchResults(project_id=project, query=query, results=results, hint=hint)

    @mcp.tool(annotations={"readOnlyHint": True})
    async def read_file(
        repository: Annotated[str, Field(description="repository name, source or id")],
        path: Annotated[str, Field(description="path relative to the repository root, as search_code gives it")],
        start_line: Annotated[int, Field(ge=1)] = 1,
        end_line: Annotated[int | None, Field(ge=1)] = None,
        project_id: str | None = None,
    ) -> FileLines:
        """Read lines of an indexed file (up to 400 at a time) to see more context around a result."""
        project = resolve_project(project_id)
        async with pool().acquire() as conn:
            try:
                repository_ids = (await resolve_repositories(conn, project, repository)).ids
            except SearchError as error:
                raise ToolError(str(error)) from None
            row = await conn.fetchrow(
                """
                SELECT r.name, fc.content FROM repositories r
                  JOIN generation_files g ON g.generation_id = r.active_generation_id
                  JOIN file_versions fv ON fv.id = g.file_version_id
                  JOIN file_contents fc ON fc.project_id = fv.project_id AND fc.content_sha256 = fv.content_sha256
                 WHERE r.project_id = $1 AND r.id = ANY($2::uuid[]) AND fv.path = $3
                 LIMIT 1
                """,
                project,
                repository_ids,
                path,
            )
        if row is None:
            raise ToolError(f"no indexed file {path!r} in repository {repository!r} of project {project!r}")
        lines = row["content"].split("\n")
        last = min(len(lines), end_line or start_line + READ_FILE_MAX_LINES - 1, start_line + READ_FILE_MAX_LINES - 1)
        if start_line > len(lines):
            raise ToolError(f"{path} has {len(lines)} lines; start_line {start_line} is past the end")
        return FileLines(
            repository=row["name"],
            path=path,
            start_line=start_line,
            end_line=last,
            total_lines=len(lines),
            content="\n".join(lines[start_line - 1 : last]),
        )

    return mcp
