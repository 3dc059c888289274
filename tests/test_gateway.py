"""The MCP gateway over real HTTP: auth, the job tools end to end, isolation between projects."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from fastmcp import Client
from fastmcp.exceptions import ToolError
from fastmcp_tasks import call_tool_task

from codebase_mcp.db.embedded import find_free_port
from codebase_mcp.dispatch import Dispatcher
from codebase_mcp.embedding import Embedder, get_embedder
from codebase_mcp.settings import Settings
from mcp_gateway.auth import grant_entry
from mcp_gateway.local_executor import SubprocessLauncher
from mcp_gateway.server import build_server
from mcp_gateway.tools import SEARCH_SNIPPET_BUDGET, fit_snippets
from tests import support

pytestmark = pytest.mark.slow


@dataclass
class Gateway:
    url: str
    tokens: dict[str, str]
    workspace: Path


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return get_embedder()


@pytest.fixture
async def gateway(migrated_database_url: str, tmp_path: Path, embedder: Embedder) -> AsyncIterator[Gateway]:
    dsn = migrated_database_url
    workspace = tmp_path / "allowed"
    workspace.mkdir()
    tokens = {name: secrets.token_urlsafe(24) for name in ("alice", "bob", "admin")}
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(
        json.dumps(
            {
                "tokens": [
                    grant_entry("alice", tokens["alice"], ["team-a"], "team-a"),
                    grant_entry("bob", tokens["bob"], ["team-b"], "team-b"),
                    grant_entry("admin", tokens["admin"], ["*"], None),
                ]
            }
        )
    )
    settings = Settings(allowed_repo_roots=(workspace,), tokens_file=tokens_file)
    app = build_server(settings, dsn, embedder).http_app(path="/mcp")
    port = find_free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    launcher = SubprocessLauncher(
        tmp_path / "logs",
        env={"DATABASE_URL": dsn, "ALLOWED_REPO_ROOTS": str(workspace), "CANCELLATION_CHECK_INTERVAL_SECONDS": "0.5"},
    )
    dispatcher = Dispatcher(dsn, launcher, Settings(), sweep_seconds=1)
    stop = asyncio.Event()
    dispatching = asyncio.create_task(dispatcher.run(stop))
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.05)
    try:
        yield Gateway(f"http://127.0.0.1:{port}/mcp", tokens, workspace)
    finally:
        stop.set()
        await dispatching
        server.should_exit = True
        await serving


async def call(gateway: Gateway, who: str, tool: str, **arguments: Any) -> dict[str, Any]:
    async with Client(gateway.url, auth=gateway.tokens[who]) as client:
        result = await client.call_tool(tool, arguments)
    assert result.structured_content is not None
    return dict(result.structured_content)


async def wait_done(gateway: Gateway, who: str, job_id: str, seconds: float = 120) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        status = await call(gateway, who, "get_indexing_status", job_id=job_id)
        return status if status["status"] in {"completed", "failed", "cancelled"} else None

    return await support.eventually(finished, seconds, f"job {job_id} to finish", interval=0.5)


async def test_requests_without_a_valid_token_get_401(gateway: Gateway) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx2.AsyncClient() as http:
        missing = await http.post(gateway.url, json=body, headers=headers)
        wrong = await http.post(gateway.url, json=body, headers={**headers, "Authorization": "Bearer not-a-token"})
    assert missing.status_code == 401
    assert wrong.status_code == 401


async def test_the_server_names_itself_and_its_own_version(gateway: Gateway) -> None:
    async with Client(gateway.url, auth=gateway.tokens["alice"]) as client:
        info = client.server_info
    assert info is not None
    assert (info.name, info.version) == ("codebase-mcp", version("codebase-mcp"))


async def test_index_poll_search_and_read(gateway: Gateway) -> None:
    repo = support.make_sample_repository(gateway.workspace / "shop")
    started = time.monotonic()
    job = await call(gateway, "alice", "start_indexing_background", repo_path=str(repo))
    assert time.monotonic() - started < 1.0, "start must return at once"
    assert job["status"] == "pending"
    assert job["project_id"] == "team-a"

    again = await call(gateway, "alice", "start_indexing_background", repo_path=str(repo) + "/")
    assert again["job_id"] == job["job_id"]
    assert "already has an active indexing job" in again["message"]

    status = await wait_done(gateway, "alice", job["job_id"])
    assert status["status"] == "completed", status["error_message"]
    assert status["progress_percentage"] == 100
    assert status["files_indexed"] > 0
    assert status["chunks_created"] > 0

    found = await call(gateway, "alice", "search_code", query="add sales tax to the invoice line items")
    top = found["results"][0]
    assert (top["path"], top["symbol"]) == ("billing/invoice.py", "compute_invoice_total")
    lines = await call(
        gateway, "alice", "read_file", repository="shop", path=top["path"], start_line=top["start_line"],
        end_line=top["end_line"],
    )  # fmt: skip
    assert "def compute_invoice_total" in lines["content"]

    repositories = await call(gateway, "alice", "list_repositories")
    assert [r["name"] for r in repositories["repositories"]] == ["shop"]
    assert repositories["repositories"][0]["files"] == status["files_indexed"]
    jobs = await call(gateway, "alice", "list_indexing_jobs", status="completed")
    assert [j["job_id"] for j in jobs["jobs"]] == [job["job_id"]]

    # Isolation: bob's token sees none of it, through any tool.
    async with Client(gateway.url, auth=gateway.tokens["bob"]) as bob:
        for tool, arguments in [
            ("get_indexing_status", {"job_id": job["job_id"]}),
            ("cancel_indexing_background", {"job_id": job["job_id"]}),
            ("read_file", {"repository": "shop", "path": "billing/invoice.py"}),
            ("get_indexing_status", {"job_id": job["job_id"], "project_id": "team-a"}),
            ("search_code", {"query": "invoice", "project_id": "team-a"}),
            ("list_repositories", {"project_id": "team-a"}),
            ("list_indexing_jobs", {"project_id": "team-a"}),
            ("start_indexing_background", {"repo_path": str(repo), "project_id": "team-a"}),
        ]:
            with pytest.raises(ToolError) as denied:
                await bob.call_tool(tool, arguments)
            assert "compute_invoice_total" not in str(denied.value)
        theirs = await bob.call_tool("search_code", {"query": "add sales tax to the invoice line items"})
        assert theirs.structured_content is not None
        assert theirs.structured_content["results"] == []
        listed = await bob.call_tool("list_indexing_jobs", {})
        assert listed.structured_content is not None
        assert listed.structured_content["jobs"] == []

    with pytest.raises(ToolError, match="already completed"):
        await call(gateway, "alice", "cancel_indexing_background", job_id=job["job_id"])


async def test_wait_for_indexing_returns_when_the_job_ends_with_progress(gateway: Gateway) -> None:
    repo = support.make_large_repository(gateway.workspace / "wait", files=8, functions=6, salt=secrets.token_hex(4))
    job = await call(gateway, "alice", "start_indexing_background", repo_path=str(repo))
    notes: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append((progress, total, message))

    # The handshake generation knows no tasks: a plain call, bounded, with progress notifications.
    async with Client(gateway.url, auth=gateway.tokens["alice"], mode="legacy") as client:
        started = time.monotonic()
        result = await client.call_tool("wait_for_indexing", {"job_id": job["job_id"]}, progress_handler=on_progress)
        waited = time.monotonic() - started
        with pytest.raises(ToolError, match="at most 30 in a plain call"):
            await client.call_tool("wait_for_indexing", {"job_id": job["job_id"], "timeout_seconds": 120})
    assert result.structured_content is not None
    assert result.structured_content["status"] == "completed"
    assert waited < 30, "returns as soon as the job ends"
    assert notes, "progress notifications while waiting"
    assert all(total == 100 for _, total, _ in notes)
    assert [p for p, _, _ in notes] == sorted(p for p, _, _ in notes)


async def test_wait_for_indexing_as_an_mcp_task(gateway: Gateway) -> None:
    repo = support.make_large_repository(gateway.workspace / "task", files=10, functions=8, salt=secrets.token_hex(4))
    job = await call(gateway, "alice", "start_indexing_background", repo_path=str(repo))
    async with Client(gateway.url, auth=gateway.tokens["alice"]) as client:
        started = time.monotonic()
        task = await call_tool_task(client, "wait_for_indexing", {"job_id": job["job_id"], "timeout_seconds": 600})
        assert time.monotonic() - started < 2, "a task-augmented call returns a handle at once"
        first = await task.status()
        assert first.status == "working"
        result = await task.result()
    assert result.structured_content is not None
    assert result.structured_content["status"] == "completed"
    assert result.structured_content["job_id"] == job["job_id"]

    # The task runs with its caller's token: another project's job stays invisible.
    async with Client(gateway.url, auth=gateway.tokens["bob"]) as bob:
        denied = await call_tool_task(bob, "wait_for_indexing", {"job_id": job["job_id"], "timeout_seconds": 60})
        with pytest.raises(ToolError, match="no job"):
            await denied.result()


async def test_cancelling_a_wait_task_leaves_the_job_running(gateway: Gateway) -> None:
    repo = support.make_large_repository(gateway.workspace / "keep", files=30, functions=10, salt=secrets.token_hex(4))
    job = await call(gateway, "alice", "start_indexing_background", repo_path=str(repo))
    async with Client(gateway.url, auth=gateway.tokens["alice"]) as client:
        task = await call_tool_task(client, "wait_for_indexing", {"job_id": job["job_id"], "timeout_seconds": 600})
        await task.cancel()
        final = await task.wait(timeout=30)
    assert final.status == "cancelled"
    status = await wait_done(gateway, "alice", job["job_id"])
    assert status["status"] == "completed", "only cancel_indexing_background cancels a job"


async def test_cancel_a_running_job(gateway: Gateway) -> None:
    repo = support.make_large_repository(gateway.workspace / "big", files=40, functions=12, salt=secrets.token_hex(4))
    job = await call(gateway, "alice", "start_indexing_background", repo_path=str(repo))
    deadline = time.monotonic() + 60
    while (await call(gateway, "alice", "get_indexing_status", job_id=job["job_id"]))["status"] != "running":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    cancelled = await call(gateway, "alice", "cancel_indexing_background", job_id=job["job_id"])
    assert cancelled["status"] == "cancelled"
    final = await wait_done(gateway, "alice", job["job_id"], 60)
    assert final["status"] == "cancelled"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"repo_path": "/etc"}, "outside the allowed roots"),
        ({"repo_path": "{root}/../../etc"}, "outside the allowed roots"),
        ({"repo_path": "relative/path"}, "must be absolute"),
        ({"repo_path": "{root}/missing"}, "does not exist"),
        ({"repo_url": "--upload-pack=touch%20/tmp/x"}, "must not start with '-'"),
        ({"repo_url": "ext::sh%20-c%20id"}, "remote-helper"),
        ({"repo_url": "https://u:pw@example.org/r.git"}, "must not contain credentials"),
        ({"repo_url": "https://example.org/r.git", "ref": "--orphan"}, "not a valid git"),
        ({}, "exactly one of repo_path"),
        ({"repo_path": "{root}", "project_id": "team-b"}, "may not use project"),
        ({"repo_path": "{root}", "project_id": "bad id!"}, "project_id must be"),
    ],
)
async def test_bad_requests_get_clear_errors(gateway: Gateway, arguments: dict[str, str], message: str) -> None:
    filled = {key: value.format(root=gateway.workspace) for key, value in arguments.items()}
    with pytest.raises(ToolError, match=message.replace("(", r"\(")):
        await call(gateway, "alice", "start_indexing_background", **filled)


def test_search_responses_stay_within_their_budget() -> None:
    large = ["x" * 1200] * 50
    fitted = fit_snippets(large, SEARCH_SNIPPET_BUDGET)
    assert sum(len(snippet) for snippet in fitted) <= SEARCH_SNIPPET_BUDGET + 2 * len(fitted)
    assert all(snippet.endswith("…") for snippet in fitted)
    assert fit_snippets(["short", "also short"], SEARCH_SNIPPET_BUDGET) == ["short", "also short"]


async def test_unknown_and_malformed_job_ids(gateway: Gateway) -> None:
    with pytest.raises(ToolError, match="no job"):
        await call(gateway, "alice", "get_indexing_status", job_id="00000000-0000-0000-0000-000000000000")
    with pytest.raises(ToolError, match="is not a job id"):
        await call(gateway, "alice", "get_indexing_status", job_id="../../etc/passwd")
    with pytest.raises(ToolError, match="has no default project"):
        await call(gateway, "admin", "list_indexing_jobs")


async def test_official_sdk_client(gateway: Gateway) -> None:
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {gateway.tokens['bob']}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(gateway.url, http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert {
            "start_indexing_background",
            "get_indexing_status",
            "wait_for_indexing",
            "cancel_indexing_background",
            "list_indexing_jobs",
            "list_repositories",
            "search_code",
            "read_file",
        } <= set(tools)
        assert tools["search_code"].annotations is not None
        assert tools["search_code"].annotations.read_only_hint is True
        assert tools["search_code"].output_schema is not None
        result = await session.call_tool("list_repositories", {})
        assert result.structured_content == {"project_id": "team-b", "repositories": []}
