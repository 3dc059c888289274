"""Health, readiness and Prometheus metrics for the gateway.

- /healthz: the process answers (no dependencies checked).
- /readyz: the database answers and its schema is at the migrations' head; 503 with the reason
  otherwise, so a Kubernetes readiness probe keeps traffic away from a gateway that cannot serve.
- /metrics: Prometheus text: tool calls and errors by tool, search latency histogram, jobs by
  status, executor queue depth (pending jobs nobody claimed) and live local workers.
These routes carry counts only, no project data, and are not behind the bearer token (probes and
scrapers do not hold one).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import asyncpg
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from codebase_mcp import job_rows
from codebase_mcp.db import migrations


class Metrics:
    """One registry per gateway (tests run several in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tool_calls = Counter(
            "codebase_mcp_tool_calls", "MCP tool calls", ["tool", "outcome"], registry=self.registry
        )
        self.search_seconds = Histogram(
            "codebase_mcp_search_seconds",
            "search_code tool latency, query embedding included",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.jobs = Gauge("codebase_mcp_jobs", "Indexing jobs by status", ["status"], registry=self.registry)
        self.queue_depth = Gauge(
            "codebase_mcp_executor_queue_depth", "Pending jobs no executor has claimed yet", registry=self.registry
        )
        self.workers = Gauge("codebase_mcp_executor_workers", "Live workers of this gateway", registry=self.registry)


class ToolMetricsMiddleware(Middleware):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]) -> Any:
        tool = context.message.name
        started = time.perf_counter()
        try:
            result = await call_next(context)
        except Exception:
            self.metrics.tool_calls.labels(tool=tool, outcome="error").inc()
            raise
        self.metrics.tool_calls.labels(tool=tool, outcome="ok").inc()
        if tool == "search_code":
            self.metrics.search_seconds.observe(time.perf_counter() - started)
        return result


def routes(
    metrics: Metrics, pool: Callable[[], asyncpg.Pool[Any]], live_workers: Callable[[], int]
) -> dict[str, Callable[[Request], Any]]:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            revision = await pool().fetchval("SELECT version_num FROM alembic_version")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, KeyError) as error:
            return JSONResponse({"status": "unavailable", "reason": f"database: {error}"}, status_code=503)
        head = migrations.head_revision()
        if revision != head:
            reason = f"schema at {revision}, migrations at {head}: run `codebase-mcp db upgrade`"
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready", "schema": revision})

    async def metrics_route(request: Request) -> Response:
        try:
            by_status, queued = await job_rows.counts(pool())
            for status, count in by_status.items():
                metrics.jobs.labels(status=status.value).set(count)
            metrics.queue_depth.set(queued)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, KeyError):
            pass  # the process metrics below are still worth serving while the database is away
        metrics.workers.set(live_workers())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics_route}
