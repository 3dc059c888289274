"""`codebase-mcp index | search | jobs`: people's commands, speaking MCP to the gateway as an agent does.

The gateway URL and token come from --url/--token, else CODEBASE_MCP_URL/CODEBASE_MCP_TOKEN, else
the local `codebase-mcp dev` server and the token it keeps under CODEBASE_MCP_HOME.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastmcp import Client
from fastmcp.exceptions import ToolError

from codebase_mcp.errors import UserError
from codebase_mcp.settings import Settings

DEFAULT_URL = "http://127.0.0.1:8000/mcp"
POLL_SECONDS = 1.0
BAR_WIDTH = 30


class ClientError(UserError):
    """A failure to report as one line (exit 1)."""


@dataclass(frozen=True)
class Target:
    url: str
    token: str


def target(url: str | None, token: str | None, settings: Settings) -> Target:
    url = url or os.environ.get("CODEBASE_MCP_URL") or DEFAULT_URL
    token = token or os.environ.get("CODEBASE_MCP_TOKEN")
    if not token:
        token_file = settings.codebase_mcp_home / "token"
        try:
            token = token_file.read_text().strip()
        except OSError:
            raise ClientError(
                f"no token: pass --token, set CODEBASE_MCP_TOKEN, or run `codebase-mcp dev` (it writes {token_file})"
            ) from None
    return Target(url, token)


async def call(where: Target, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    try:
        async with Client(where.url, auth=where.token) as client:
            result = await client.call_tool(tool, {k: v for k, v in arguments.items() if v is not None})
    except ToolError as error:
        raise ClientError(str(error)) from None
    except Exception as error:  # connection refused, 401, TLS: one line, no traceback
        if await _probe_status(where) in {401, 403}:
            raise ClientError(f"the gateway at {where.url} refused the token") from None
        text = str(error) or error.__class__.__name__
        raise ClientError(f"cannot reach the gateway at {where.url} ({text}); is `codebase-mcp dev` running?") from None
    return dict(result.structured_content or {})


async def _probe_status(where: Target) -> int | None:
    """The HTTP status the endpoint gives this token (the MCP client's errors do not carry it)."""
    import httpx2

    ping = {"jsonrpc": "2.0", "id": 0, "method": "ping"}
    headers = {"Authorization": f"Bearer {where.token}", "Accept": "application/json, text/event-stream"}
    try:
        async with httpx2.AsyncClient(timeout=10) as http:
            return (await http.post(where.url, json=ping, headers=headers)).status_code
    except httpx2.HTTPError:
        return None


def looks_like_url(source: str) -> bool:
    return "://" in source or (":" in source and "@" in source.split(":", 1)[0] and not Path(source).exists())


def _bar(status: dict[str, Any]) -> str:
    percentage = status["progress_percentage"]
    filled = BAR_WIDTH * percentage // 100
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    return f"\r[{bar}] {percentage:3d}% {status['progress_message'][:60]:<60}"


def source_arguments(source: str, ref: str | None) -> dict[str, Any]:
    if looks_like_url(source):
        return {"repo_url": source, "ref": ref}
    # A person may type a relative path; the gateway wants it absolute.
    return {"repo_path": os.path.abspath(os.path.expanduser(source))}


async def index(where: Target, source: dict[str, Any], project: str | None, force: bool, wait: bool) -> int:
    arguments: dict[str, Any] = {"project_id": project, "force_reindex": force, **source}
    job = await call(where, "start_indexing_background", arguments)
    print(f"job {job['job_id']} ({job['project_id']}): {job['message']}")
    if not wait:
        return 0
    try:
        while True:
            status = await call(where, "get_indexing_status", {"job_id": job["job_id"], "project_id": project})
            print(_bar(status), end="", file=sys.stderr, flush=True)
            if status["status"] not in {"pending", "running"}:
                print(file=sys.stderr)
                break
            await asyncio.sleep(POLL_SECONDS)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(file=sys.stderr)
        answer = await asyncio.to_thread(input, "Cancel the indexing job? [y/N] ") if sys.stdin.isatty() else ""
        if answer.strip().lower() in {"y", "yes"}:
            await call(where, "cancel_indexing_background", {"job_id": job["job_id"], "project_id": project})
            print("cancelled")
        else:
            print(f"the job goes on; `codebase-mcp jobs cancel {job['job_id']}` stops it")
        return 130
    if status["status"] == "completed":
        print(f"completed: {status['files_indexed']:,} files, {status['chunks_created']:,} chunks written")
        return 0
    print(f"{status['status']}: {status.get('error_message') or status['progress_message']}")
    return 1


async def search(where: Target, query: str, options: dict[str, Any], as_json: bool) -> int:
    found = await call(where, "search_code", {"query": query, **options})
    results = found["results"]
    if as_json:
        fields = ("repository", "path", "start_line", "end_line", "symbol", "language", "score")
        print(json.dumps([{key: hit[key] for key in fields} for hit in results], indent=2))
        return 0
    if not results:
        print(found.get("hint") or "no results")
        return 0
    for rank, hit in enumerate(results, start=1):
        symbol = f"  {hit['symbol']}" if hit["symbol"] else ""
        print(f"{rank:2d}. {hit['repository']}:{hit['path']}:{hit['start_line']}-{hit['end_line']}{symbol}")
        for line in hit["snippet"].split("\n")[:4]:
            print(f"      {line}")
    return 0


async def jobs(where: Target, action: str, job_id: str | None, options: dict[str, Any], as_json: bool) -> int:
    if action == "list":
        listed = await call(where, "list_indexing_jobs", options)
        if as_json:
            print(json.dumps(listed["jobs"], indent=2, default=str))
        for job in [] if as_json else listed["jobs"]:
            progress = f"{job['status']:<9} {job['progress_percentage']:3d}%"
            print(f"{job['job_id']}  {progress}  {job['repository']}  {job['progress_message']}")
        return 0
    tool = "get_indexing_status" if action == "status" else "cancel_indexing_background"
    status = await call(where, tool, {"job_id": job_id, "project_id": options.get("project_id")})
    if as_json:
        print(json.dumps(status, indent=2, default=str))
    else:
        for key in ("job_id", "repository", "status", "progress_percentage", "progress_message", "files_scanned",
                    "files_indexed", "chunks_created", "error_message", "created_at", "completed_at",
                    "k8s_namespace", "k8s_job_name"):  # fmt: skip
            if status.get(key) is not None:
                print(f"{key:>20}: {status[key]}")
    return 0


def run(coroutine: Any) -> int:
    try:
        code: int = asyncio.run(coroutine)
    except KeyboardInterrupt:
        return 130
    return code
