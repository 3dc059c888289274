"""The gateway's tools called directly (mcp_gateway/tools.py), without HTTP or an MCP session:
the caller's token is put where the gateway's authentication middleware puts it."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextvars import Token
from pathlib import Path

import asyncpg
import pytest
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser

from codebase_mcp.errors import AccessDeniedError, ConflictError, NotFoundError
from codebase_mcp.settings import Settings
from codebase_mcp.sources import SourceError
from mcp_gateway.auth import ProjectTokenVerifier, grant_entry, load_grants
from mcp_gateway.tools import TOOLS, GatewayTools


@pytest.fixture
async def tools(migrated_database_url: str, tmp_path: Path) -> AsyncIterator[GatewayTools]:
    (tmp_path / "repo").mkdir()
    gateway = GatewayTools(Settings(allowed_repo_roots=(tmp_path,)))
    gateway.pool = await asyncpg.create_pool(migrated_database_url, min_size=1, max_size=2)
    try:
        yield gateway
    finally:
        await gateway.pool.close()


async def as_token(projects: list[str], default: str | None, tmp_path: Path) -> Token[AuthenticatedUser | None]:
    """Authenticate a new token of these projects the way the gateway does, and act as it."""
    token = uuid.uuid4().hex
    tokens = tmp_path / f"tokens-{token}.json"
    tokens.write_text(json.dumps({"tokens": [grant_entry(token[:8], token, projects, default)]}))
    access = await ProjectTokenVerifier(load_grants(tokens)).verify_token(token)
    assert access is not None
    return auth_context_var.set(AuthenticatedUser(access))


def test_every_tool_is_a_method_listed_once() -> None:
    names = [name for name, _ in TOOLS]
    assert len(names) == len(set(names)) == 8
    assert all(callable(getattr(GatewayTools, name)) for name in names)


async def test_a_job_through_the_tools(tools: GatewayTools, tmp_path: Path) -> None:
    reset = await as_token(["alpha"], "alpha", tmp_path)
    try:
        started = await tools.start_indexing_background(repo_path=str(tmp_path / "repo"))
        assert (started.status, started.project_id) == ("pending", "alpha")
        again = await tools.start_indexing_background(repo_path=str(tmp_path / "repo" / "."))
        assert again.job_id == started.job_id, "one active job per source"
        status = await tools.get_indexing_status(str(started.job_id))
        assert (status.repository, status.status) == ("repo", "pending")
        listed = await tools.list_indexing_jobs(status="pending")
        assert [job.job_id for job in listed.jobs] == [started.job_id]
        cancelled = await tools.cancel_indexing_background(str(started.job_id))
        assert cancelled.status == "cancelled"
        with pytest.raises(ConflictError, match="already cancelled"):
            await tools.cancel_indexing_background(str(started.job_id))
        with pytest.raises(SourceError, match="outside the allowed roots"):
            await tools.start_indexing_background(repo_path="/etc")
        with pytest.raises(AccessDeniedError, match="may not use project 'beta'"):
            await tools.list_indexing_jobs(project_id="beta")
    finally:
        auth_context_var.reset(reset)
    # Another project's token gets the answer an unknown job gets.
    reset = await as_token(["beta"], "beta", tmp_path)
    try:
        with pytest.raises(NotFoundError, match="no job"):
            await tools.get_indexing_status(str(started.job_id))
        with pytest.raises(NotFoundError, match="no job"):
            await tools.cancel_indexing_background(str(started.job_id))
        assert (await tools.list_indexing_jobs()).jobs == []
    finally:
        auth_context_var.reset(reset)
