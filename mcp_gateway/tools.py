"""Every tool an agent can call: one method of GatewayTools each, in the order agents use them.

The tools are plain async methods over the core (job rows, sources, search): they raise the core's
UserError for anything the caller should read, and mcp_gateway/server.py turns those into MCP tool
errors in one place, so a test can call a tool directly, without HTTP or a session. Every tool
resolves the project through the caller's token (mcp_gateway/auth.py) and every statement filters
on that project, so a token never sees another project's jobs, repositories or code: a job id of
another project gets the same answer as an unknown one.

This module does not use `from __future__ import annotations`: FastMCP reads the tools' signatures
through the wrapper that maps errors, and real annotation objects need no module to resolve in.
"""

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import asyncpg
from fastmcp import Context
from fastmcp.utilities.tasks import TaskConfig
from pydantic import BaseModel, Field

from codebase_mcp import job_rows, search
from codebase_mcp.embedding import Embedder, get_embedder
from codebase_mcp.errors import ConflictError, NotFoundError, UserError
from codebase_mcp.jobs import IndexingJobProgress, IndexingJobStatus
from codebase_mcp.search import DEFAULT_LIMIT, MAX_LIMIT, resolve_repositories
from codebase_mcp.settings import Settings
from codebase_mcp.sources import check_source
from mcp_gateway.auth import resolve_project

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

# (method name, FastMCP registration options) of every tool, in definition order: build_server
# registers exactly these.
TOOLS: list[tuple[str, dict[str, Any]]] = []
_Method = TypeVar("_Method", bound=Callable[..., Any])


def tool(**options: Any) -> Callable[[_Method], _Method]:
    """Mark a GatewayTools method as an MCP tool, with FastMCP's options (name, annotations, task)."""

    def mark(method: _Method) -> _Method:
        TOOLS.append((method.__name__, options))
        return method

    return mark


# -- what the tools answer ------------------------------------------------------------------------


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


def fit_snippets(snippets: list[str], budget: int) -> list[str]:
    """Cut snippets so that together they stay within `budget` characters (plus a marker each)."""
    share = budget // max(1, len(snippets))
    return [snippet if len(snippet) <= share else snippet[:share] + "\n…" for snippet in snippets]


def _job_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise UserError(f"{value!r} is not a job id; list_indexing_jobs shows the project's jobs") from None


_READ_FILE_SQL = """
SELECT r.name, fc.content FROM repositories r
  JOIN generation_files g ON g.generation_id = r.active_generation_id
  JOIN file_versions fv ON fv.id = g.file_version_id
  JOIN file_contents fc ON fc.project_id = fv.project_id AND fc.content_sha256 = fv.content_sha256
 WHERE r.project_id = $1 AND r.id = ANY($2::uuid[]) AND fv.path = $3
 LIMIT 1
"""

_REPOSITORIES_SQL = """
SELECT r.id, r.name, r.source, r.ref, r.last_commit_sha AS commit_sha, g.activated_at AS indexed_at,
       (SELECT count(*) FROM generation_files f WHERE f.generation_id = r.active_generation_id) AS files,
       coalesce(g.chunk_count, 0) AS chunks
  FROM repositories r LEFT JOIN index_generations g ON g.id = r.active_generation_id
 WHERE r.project_id = $1 ORDER BY r.name
"""


class GatewayTools:
    """The tools over one database pool (set when the gateway starts) and one embedder."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._pool: asyncpg.Pool[Any] | None = None

    @property
    def pool(self) -> "asyncpg.Pool[Any]":
        if self._pool is None:
            raise RuntimeError("the gateway's database pool is not open (its lifespan has not started)")
        return self._pool

    @pool.setter
    def pool(self, pool: "asyncpg.Pool[Any] | None") -> None:
        self._pool = pool

    @property
    def embedder(self) -> Embedder:
        return self._embedder or get_embedder(self.settings.embedding_model)

    async def _status(self, project: str, job_id: str) -> JobStatus:
        row = await job_rows.get(self.pool, project, _job_id(job_id))
        if row is None:
            raise NotFoundError(
                f"no job {job_id} in project {project!r}; it may have expired after the retention period"
            )
        return JobStatus(**row)

    # -- indexing ---------------------------------------------------------------------------------

    @tool(annotations={"readOnlyHint": False, "destructiveHint": False, "idempotentHint": True})
    async def start_indexing_background(
        self,
        repo_path: Annotated[str | None, Field(description="absolute path of a local repository")] = None,
        repo_url: Annotated[str | None, Field(description="git URL (https, ssh or file)")] = None,
        ref: Annotated[str | None, Field(description="branch, tag or commit of repo_url")] = None,
        project_id: str | None = None,
        force_reindex: Annotated[bool, Field(description="re-embed every file, even unchanged ones")] = False,
    ) -> JobStarted:
        """Start indexing a repository in the background; returns a job_id at once.
        Give repo_path or repo_url. Follow it with get_indexing_status or wait_for_indexing."""
        project = resolve_project(project_id)
        source = check_source(self.settings, repo_path=repo_path, repo_url=repo_url, ref=ref)
        async with self.pool.acquire() as conn:
            queued = await job_rows.enqueue(conn, project, source, force_reindex=force_reindex)
        if queued.existing:
            message = "this repository already has an active indexing job; returning it instead of a new one"
        else:
            message = "indexing queued; follow it with get_indexing_status or wait_for_indexing"
        return JobStarted(job_id=queued.job_id, status=queued.status, project_id=project, message=message)

    @tool(annotations={"readOnlyHint": True})
    async def get_indexing_status(self, job_id: str, project_id: str | None = None) -> JobStatus:
        """Status and progress of an indexing job (percentage, phase message, counters, errors)."""
        return await self._status(resolve_project(project_id), job_id)

    # Task mode "optional": a client that declares the MCP tasks extension gets a task handle at once
    # and the wait may last as long as a job; every other client gets a plain call bounded well under
    # the 60 s that clients such as Claude Code and Codex allow. Cancelling such a task only stops the
    # wait: the tool is read-only, and only cancel_indexing_background cancels a job.
    @tool(annotations={"readOnlyHint": True}, task=TaskConfig(mode="optional", poll_interval=TASK_POLL_INTERVAL))
    async def wait_for_indexing(
        self,
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
            raise UserError(
                f"timeout_seconds may be at most {MAX_WAIT_SECONDS} in a plain call; call again to keep"
                " waiting, or call this tool as an MCP task"
            )
        project = resolve_project(project_id)
        status = await self._status(project, job_id)
        deadline = time.monotonic() + timeout_seconds
        while not status.status.is_terminal and time.monotonic() < deadline:
            if ctx is not None:  # a progress notification, or a task's status message
                await ctx.report_progress(status.progress_percentage, 100, status.progress_message)
            await asyncio.sleep(min(WAIT_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            status = await self._status(project, job_id)
        return status

    @tool(annotations={"readOnlyHint": False, "destructiveHint": True, "idempotentHint": False})
    async def cancel_indexing_background(self, job_id: str, project_id: str | None = None) -> JobStatus:
        """Cancel a pending or running indexing job; its partial work is discarded."""
        project = resolve_project(project_id)
        cancelled, status = await job_rows.cancel(self.pool, project, _job_id(job_id))
        if cancelled is not None:
            return JobStatus(**cancelled)
        if status is None:
            raise NotFoundError(f"no job {job_id} in project {project!r}")
        raise ConflictError(f"job {job_id} is already {status}; only pending or running jobs can be cancelled")

    @tool(annotations={"readOnlyHint": True})
    async def list_indexing_jobs(
        self,
        project_id: str | None = None,
        status: Literal["pending", "running", "completed", "failed", "cancelled"] | None = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
    ) -> JobList:
        """The project's indexing jobs, newest first."""
        project = resolve_project(project_id)
        wanted = IndexingJobStatus(status) if status else None
        rows = await job_rows.list_for_project(self.pool, project, wanted, limit)
        return JobList(project_id=project, jobs=[JobStatus(**row) for row in rows])

    # -- reading the index ------------------------------------------------------------------------

    @tool(annotations={"readOnlyHint": True})
    async def list_repositories(self, project_id: str | None = None) -> RepositoryList:
        """The project's repositories and what is indexed of each."""
        project = resolve_project(project_id)
        rows = await self.pool.fetch(_REPOSITORIES_SQL, project)
        return RepositoryList(project_id=project, repositories=[Repository(**dict(row)) for row in rows])

    @tool(annotations={"readOnlyHint": True})
    async def search_code(
        self,
        query: Annotated[str, Field(description="what the code does, in words or identifiers")],
        project_id: str | None = None,
        repository: Annotated[str | None, Field(description="repository name, source or id")] = None,
        language: str | None = None,
        path_glob: Annotated[str | None, Field(description="e.g. 'src/**/*.py' or '*.ts'")] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    ) -> SearchResults:
        """Find code by meaning (semantic + keyword) in the project's indexed repositories."""
        project = resolve_project(project_id)
        # Given the pool, the vector and full-text sides run at once on two connections.
        hits = await search.search_code(
            self.pool, self.embedder, project, query, limit=limit, repository=repository, language=language,
            path_glob=path_glob,
        )  # fmt: skip
        snippets = fit_snippets([hit.snippet for hit in hits], SEARCH_SNIPPET_BUDGET)
        # SearchResult takes SearchHit's fields it declares (ids and ranks stay internal).
        results = [
            SearchResult.model_validate({**asdict(hit), "snippet": snippet})
            for hit, snippet in zip(hits, snippets, strict=True)
        ]
        hint = None if results else "nothing matched: check list_repositories, or widen the filters"
        return SearchResults(project_id=project, query=query, results=results, hint=hint)

    @tool(annotations={"readOnlyHint": True})
    async def read_file(
        self,
        repository: Annotated[str, Field(description="repository name, source or id")],
        path: Annotated[str, Field(description="path relative to the repository root, as search_code gives it")],
        start_line: Annotated[int, Field(ge=1)] = 1,
        end_line: Annotated[int | None, Field(ge=1)] = None,
        project_id: str | None = None,
    ) -> FileLines:
        """Read lines of an indexed file (up to 400 at a time) to see more context around a result."""
        project = resolve_project(project_id)
        async with self.pool.acquire() as conn:
            repository_ids = (await resolve_repositories(conn, project, repository)).ids
            row = await conn.fetchrow(_READ_FILE_SQL, project, repository_ids, path)
        if row is None:
            raise NotFoundError(f"no indexed file {path!r} in repository {repository!r} of project {project!r}")
        lines = row["content"].split("\n")
        last = min(len(lines), end_line or start_line + READ_FILE_MAX_LINES - 1, start_line + READ_FILE_MAX_LINES - 1)
        if start_line > len(lines):
            raise UserError(f"{path} has {len(lines)} lines; start_line {start_line} is past the end")
        return FileLines(
            repository=row["name"],
            path=path,
            start_line=start_line,
            end_line=last,
            total_lines=len(lines),
            content="\n".join(lines[start_line - 1 : last]),
        )
