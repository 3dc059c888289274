"""Dispatch latency of the local executor, measured through the real gateway over HTTP.

For each job: `start_indexing_background` -> the indexer subprocess spawned (the executor's work:
NOTIFY, claim, launch) -> the job row `running` (the worker's interpreter started and claimed it);
then `cancel_indexing_background` -> the subprocess gone. Jobs run one after another so that no
measurement waits behind another job.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
from fastmcp import Client

from bench.common import append_report, table, throwaway_database
from codebase_mcp.db.embedded import find_free_port
from codebase_mcp.dispatch import Worker
from codebase_mcp.settings import Settings
from mcp_gateway.auth import grant_entry
from mcp_gateway.local_executor import LocalExecutor, SubprocessLauncher
from mcp_gateway.server import build_server


class TimedLauncher(SubprocessLauncher):
    """The local executor's launcher, noting when each worker was spawned and when it was gone."""

    def __init__(self, log_dir: Path, **options: Any) -> None:
        super().__init__(log_dir, **options)
        self.spawned: dict[uuid.UUID, float] = {}
        self.gone: dict[uuid.UUID, float] = {}

    async def launch(self, job_id: uuid.UUID) -> Worker:
        worker = await super().launch(job_id)
        self.spawned[job_id] = time.monotonic()
        return worker

    async def stop(self, job_id: uuid.UUID) -> None:
        await super().stop(job_id)
        self.gone[job_id] = time.monotonic()


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """p50, p95 and max, in milliseconds."""
    ordered = sorted(values)
    p95 = statistics.quantiles(ordered, n=20, method="inclusive")[18] if len(ordered) > 1 else ordered[0]
    return statistics.median(ordered) * 1000, p95 * 1000, ordered[-1] * 1000


async def noted(times: dict[uuid.UUID, float], job_id: uuid.UUID, what: str) -> float:
    """When `times` noted the job (polled every 2 ms, so polling adds at most that)."""
    deadline = time.monotonic() + 60
    while job_id not in times:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)
    return times[job_id]


async def measure(dsn: str, workspace: Path, jobs: int) -> dict[str, list[float]]:
    repo = workspace / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "app.py").write_text("def handler(request):\n    return request\n")
    token = secrets.token_urlsafe(24)
    tokens = workspace / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [grant_entry("bench", token, ["bench"], "bench")]}))
    settings = Settings(allowed_repo_roots=(workspace,), tokens_file=tokens, codebase_mcp_home=workspace / "home")
    executor = LocalExecutor(settings, dsn, launcher=TimedLauncher)
    launcher = executor.launcher
    assert isinstance(launcher, TimedLauncher)
    port = find_free_port()
    app = build_server(settings, dsn, executor=executor).http_app(path="/mcp")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.05)

    running: dict[uuid.UUID, float] = {}

    def on_notify(_conn: Any, _pid: int, _channel: str, payload: object) -> None:
        job, _, status = str(payload).partition(":")
        if status == "running":
            running.setdefault(uuid.UUID(job), time.monotonic())

    listener = await asyncpg.connect(dsn)
    await listener.add_listener("indexing_jobs", on_notify)
    figures: dict[str, list[float]] = {"spawn": [], "running": [], "cancel": []}
    try:
        async with Client(f"http://127.0.0.1:{port}/mcp", auth=token) as client:
            for _ in range(jobs):
                asked = time.monotonic()
                started = await client.call_tool("start_indexing_background", {"repo_path": str(repo)})
                assert started.structured_content is not None
                job_id = uuid.UUID(started.structured_content["job_id"])
                claimed = await noted(running, job_id, "the worker to claim its job")
                figures["spawn"].append(launcher.spawned[job_id] - asked)
                figures["running"].append(claimed - asked)
                asked = time.monotonic()
                await client.call_tool("cancel_indexing_background", {"job_id": str(job_id)})
                figures["cancel"].append(await noted(launcher.gone, job_id, "the worker to stop") - asked)
    finally:
        await listener.close()
        server.should_exit = True
        await serving
    return figures


async def main(quick: bool) -> None:
    jobs = 10 if quick else 50
    with tempfile.TemporaryDirectory(prefix="codebase-mcp-bench-dispatch-") as scratch, throwaway_database() as dsn:
        figures = await measure(dsn, Path(scratch), jobs)
    rows = []
    for key, what in [
        ("spawn", "start_indexing_background -> indexer process spawned"),
        ("running", "start_indexing_background -> row `running` (worker started, claimed it)"),
        ("cancel", "cancel_indexing_background -> indexer process gone"),
    ]:
        p50, p95, worst = percentiles(figures[key])
        rows.append([what, f"{p50:.0f}", f"{p95:.0f}", f"{worst:.0f}"])
    body = f"{jobs} jobs, one at a time, local executor, gateway over HTTP:\n\n"
    body += table(["interval", "p50 ms", "p95 ms", "max ms"], rows)
    append_report("Dispatch latency" + (" (quick)" if quick else ""), body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 jobs instead of 50")
    asyncio.run(main(parser.parse_args().quick))
