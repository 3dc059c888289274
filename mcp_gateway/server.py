"""The MCP gateway's wiring: authentication, middleware, tasks, routes and the tools.

The tools themselves are in mcp_gateway/tools.py. The gateway only reads and writes PostgreSQL:
starting a job inserts a pending row (the trigger's NOTIFY wakes an executor), cancelling updates
the row (the executor stops the worker). Given a local executor (`dev`) it runs that for as long
as it serves; in a cluster the operator dispatches.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext
from importlib.metadata import version
from typing import Any

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from fastmcp_tasks import TasksExtension

from codebase_mcp.db.connect import create_pool
from codebase_mcp.embedding import Embedder
from codebase_mcp.errors import UserError
from codebase_mcp.search import SESSION_SETTINGS
from codebase_mcp.settings import Settings
from mcp_gateway.auth import ProjectTokenVerifier, load_grants
from mcp_gateway.local_executor import LocalExecutor
from mcp_gateway.observability import Metrics, ToolMetricsMiddleware, routes
from mcp_gateway.tools import TOOLS, GatewayTools

INSTRUCTIONS = """Semantic code search over indexed repositories.
Index once with start_indexing_background (returns a job_id at once; indexing takes minutes),
follow it with get_indexing_status or wait_for_indexing, then use search_code to find code by meaning and read_file
to open more lines around a result. Jobs and their status are kept for JOB_STATUS_RETENTION_DAYS.
"""


def answering_user_errors(tool: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """The one place where errors written for people become MCP tool errors (anything else is
    masked by FastMCP: its details stay in the gateway's log)."""

    @functools.wraps(tool)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await tool(*args, **kwargs)
        except UserError as error:
            raise ToolError(str(error)) from None

    return call


def build_server(
    settings: Settings, dsn: str, embedder: Embedder | None = None, executor: LocalExecutor | None = None
) -> FastMCP[Any]:
    """The gateway's MCP server; `mcp.http_app(path="/mcp")` serves it over streamable HTTP."""
    if settings.tokens_file is None:
        raise UserError("TOKENS_FILE is not set: the gateway serves authenticated requests only")
    verifier = ProjectTokenVerifier(load_grants(settings.tokens_file))
    tools = GatewayTools(settings, embedder)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(server: FastMCP[Any]) -> AsyncIterator[None]:
        # Sessions start with what search needs, so a search sets nothing per query.
        tools.pool = await create_pool(dsn, min_size=1, max_size=10, settings=SESSION_SETTINGS)
        try:
            async with executor.running() if executor is not None else nullcontext():
                yield
        finally:
            await tools.pool.close()
            tools.pool = None

    # serverInfo names this product and its version (clients show and log them), not the library's.
    mcp: FastMCP[Any] = FastMCP(
        "codebase-mcp",
        version=version("codebase-mcp"),
        instructions=INSTRUCTIONS,
        auth=verifier,
        lifespan=lifespan,
        mask_error_details=True,
    )
    mcp.add_middleware(ToolMetricsMiddleware(metrics))
    # Task-augmented calls (io.modelcontextprotocol/tasks) for clients that declare the extension;
    # the task records live in TASKS_URL (in-process memory unless several replicas share Redis).
    mcp.add_extension(TasksExtension(url=settings.tasks_url))
    live_workers = (lambda: len(executor.launcher.live())) if executor is not None else (lambda: 0)
    for path, handler in routes(metrics, lambda: tools.pool, live_workers).items():
        mcp.custom_route(path, methods=["GET"])(handler)
    for name, options in TOOLS:
        mcp.tool(answering_user_errors(getattr(tools, name)), **options)
    return mcp
