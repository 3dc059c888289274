"""The container image, run for real (`make test-image` builds it, then runs these).

Each container runs on the host network against the session's embedded PostgreSQL, as non-root,
with a read-only root filesystem and only /tmp writable, the way the chart will run it.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx2
import pytest
from fastmcp import Client

from codebase_mcp.db import migrations
from codebase_mcp.db.embedded import find_free_port
from mcp_gateway.auth import grant_entry
from tests import support

pytestmark = pytest.mark.image
IMAGE = os.environ.get("CODEBASE_MCP_IMAGE", "codebase-mcp:dev")
DOCKER = os.environ.get("CODEBASE_MCP_DOCKER", "docker")
UID = "10001"
# How every container here runs: what a restrictive pod securityContext allows.
LOCKED_DOWN = ["--network", "host", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"]


def docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module", autouse=True)
def image_exists() -> None:
    inspected = docker("image", "inspect", IMAGE, "--format", "{{.Config.User}}")
    if inspected.returncode != 0:
        pytest.fail(f"image {IMAGE} is not built ({inspected.stderr.strip()}): run `make test-image`")
    assert inspected.stdout.strip() == f"{UID}:{UID}", "the image declares its non-root user"


@pytest.fixture
def containers() -> Iterator[list[str]]:
    """Names of the containers a test starts; all removed afterwards, whatever happened."""
    names: list[str] = []
    yield names
    for name in names:
        docker("rm", "--force", name)


def indexer(name: str, job_id: uuid.UUID, dsn: str, repo: Path, *, detach: bool) -> subprocess.CompletedProcess[str]:
    return docker(
        "run", *(["--detach"] if detach else []), "--name", name, *LOCKED_DOWN,
        "--volume", f"{repo}:/repos/{repo.name}:ro",
        "--env", f"DATABASE_URL={dsn}", "--env", "ALLOWED_REPO_ROOTS=/repos",
        "--env", "PROGRESS_UPDATE_INTERVAL_SECONDS=0.5", "--env", "CANCELLATION_CHECK_INTERVAL_SECONDS=0.5",
        IMAGE, "indexer", "--job-id", str(job_id),
    )  # fmt: skip


async def test_processes_run_as_the_fixed_non_root_user(containers: list[str]) -> None:
    ran = docker("run", "--rm", *LOCKED_DOWN, "--entrypoint", "id", IMAGE)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(f"uid={UID}(codebase) gid={UID}(codebase)")
    # Nothing in the image is writable by that user but /tmp (here a tmpfs).
    probe = "import pathlib, codebase_mcp; pathlib.Path(codebase_mcp.__file__).with_name('x').write_text('x')"
    denied = docker("run", "--rm", *LOCKED_DOWN, "--entrypoint", "python3", IMAGE, "-c", probe)
    assert denied.returncode != 0
    assert "Read-only file system" in denied.stderr


async def test_indexer_then_gateway_containers(
    migrated_database_url: str, tmp_path: Path, containers: list[str]
) -> None:
    dsn = migrated_database_url
    repo = support.make_sample_repository(tmp_path / "shop")
    async with support.connection(dsn) as conn:
        job_id = await support.insert_job(conn, project_id="team-a", repo_path="/repos/shop")

    name = f"codebase-indexer-{secrets.token_hex(4)}"
    containers.append(name)
    ran = await asyncio.to_thread(indexer, name, job_id, dsn, repo, detach=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    async with support.connection(dsn) as conn:
        row = await conn.fetchrow(
            "SELECT status, files_indexed, chunks_created FROM indexing_jobs WHERE id = $1", job_id
        )
    assert row is not None
    assert row["status"] == "completed"
    assert row["files_indexed"] > 0
    assert row["chunks_created"] > 0
    logs = [json.loads(line) for line in ran.stderr.splitlines() if line.startswith("{")]
    assert logs, "the indexer logs JSON lines"
    assert all(entry.get("job_id") == str(job_id) for entry in logs if "job" in entry.get("message", ""))

    token = secrets.token_urlsafe(24)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [grant_entry("ci", token, ["team-a"], "team-a")]}))
    tokens.chmod(0o644)  # readable by the container's user; the file holds digests only
    port = find_free_port()
    gateway = f"codebase-gateway-{secrets.token_hex(4)}"
    containers.append(gateway)
    started = docker(
        "run", "--detach", "--name", gateway, *LOCKED_DOWN,
        "--volume", f"{tokens}:/etc/codebase-mcp/tokens.json:ro",
        "--env", f"DATABASE_URL={dsn}", "--env", "TOKENS_FILE=/etc/codebase-mcp/tokens.json",
        IMAGE, "gateway", "--host", "127.0.0.1", "--port", str(port),
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    ready = None
    while time.monotonic() < deadline:
        try:
            ready = httpx2.get(f"{base}/readyz", timeout=2)
            if ready.status_code == 200:
                break
        except httpx2.HTTPError:
            pass
        assert docker("inspect", gateway, "--format", "{{.State.Running}}").stdout.strip() == "true", docker(
            "logs", gateway
        ).stderr
        await asyncio.sleep(0.5)
    assert ready is not None
    assert ready.status_code == 200, ready.text

    async with httpx2.AsyncClient() as http:
        refused = await http.post(f"{base}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert refused.status_code == 401
    async with Client(f"{base}/mcp", auth=token) as client:
        found = await client.call_tool("search_code", {"query": "add sales tax to the invoice line items", "limit": 3})
    assert found.structured_content is not None
    top = found.structured_content["results"][0]
    assert (top["repository"], top["path"], top["symbol"]) == ("shop", "billing/invoice.py", "compute_invoice_total")


async def test_the_indexer_container_indexes_a_git_repository(
    migrated_database_url: str, tmp_path: Path, containers: list[str]
) -> None:
    """git is in the image: a repo_url job clones (here a file:// URL under the allowed roots), and
    a repo_path job records its commit, though the repository belongs to another user (root here,
    as on a volume mounted into a pod) and git refuses such repositories unless told otherwise."""
    dsn = migrated_database_url
    repo = tmp_path / "history"
    repo.mkdir()
    _, head = support.make_git_repository(repo)
    async with support.connection(dsn) as conn:
        for source in ({"repo_url": "file:///repos/history"}, {"repo_path": "/repos/history"}):
            job_id = await support.insert_job(conn, project_id="team-a", **source)  # type: ignore[arg-type]
            name = f"codebase-indexer-{secrets.token_hex(4)}"
            containers.append(name)
            ran = await asyncio.to_thread(indexer, name, job_id, dsn, repo, detach=False)
            row = await conn.fetchrow(
                "SELECT status, error_message, commit_sha FROM indexing_jobs WHERE id = $1", job_id
            )
            assert ran.returncode == 0, ran.stdout + ran.stderr
            assert row is not None
            assert row["status"] == "completed", row["error_message"]
            assert row["commit_sha"] == head, source


async def test_sigterm_to_an_indexer_container_never_leaves_a_running_row(
    migrated_database_url: str, tmp_path: Path, containers: list[str]
) -> None:
    dsn = migrated_database_url
    repo = support.make_large_repository(tmp_path / "big", files=40, functions=12, salt=secrets.token_hex(4))
    async with support.connection(dsn) as conn:
        job_id = await support.insert_job(conn, project_id="team-a", repo_path="/repos/big")
        name = f"codebase-indexer-{secrets.token_hex(4)}"
        containers.append(name)
        started = await asyncio.to_thread(indexer, name, job_id, dsn, repo, detach=True)
        assert started.returncode == 0, started.stderr
        embedding = support.embedding_started(conn, job_id)
        deadline = time.monotonic() + 120
        while not await embedding():
            assert time.monotonic() < deadline, docker("logs", name).stderr
            await asyncio.sleep(0.2)
        # `docker stop` sends SIGTERM, as the kubelet does when a pod is deleted.
        stopped = await asyncio.to_thread(docker, "stop", "--time", "30", name)
        assert stopped.returncode == 0, stopped.stderr
        exit_code = docker("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip()
        row = await conn.fetchrow("SELECT status, error_message, error_type FROM indexing_jobs WHERE id = $1", job_id)
        repositories = await conn.fetchval("SELECT count(*) FROM repositories WHERE project_id = 'team-a'")
    assert row is not None
    assert row["status"] == "failed", row
    assert (row["error_type"], "SIGTERM" in row["error_message"]) == ("Terminated", True), row
    assert exit_code == "1", "the indexer stopped on SIGTERM and said so, not killed after the grace period"
    assert repositories == 0, "an interrupted first index leaves no partial repository behind"


async def test_db_serve_is_a_postgresql_with_pgvector_for_a_container(containers: list[str]) -> None:
    """`codebase-mcp db serve` (the chart's bundled PostgreSQL): initialises its volume, takes the
    password it is given, serves TCP clients, takes the schema, and stops cleanly on SIGTERM."""
    port = find_free_port()
    password = secrets.token_urlsafe(16)
    name = f"codebase-postgresql-{secrets.token_hex(4)}"
    containers.append(name)
    started = docker(
        "run", "--detach", "--name", name, *LOCKED_DOWN, "--tmpfs", f"/var/lib/postgresql/data:uid={UID},gid={UID}",
        "--env", "PGDATA=/var/lib/postgresql/data/pgdata", "--env", f"POSTGRES_PASSWORD={password}",
        IMAGE, "db", "serve", "--port", str(port),
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    dsn = f"postgresql://postgres:{password}@127.0.0.1:{port}/codebase_mcp"
    deadline = time.monotonic() + 60
    while True:
        try:
            await asyncio.to_thread(migrations.upgrade, dsn)
            break
        except Exception:
            assert time.monotonic() < deadline, docker("logs", name).stderr[-3000:]
            await asyncio.sleep(1)
    async with support.connection(dsn) as conn:
        assert await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert await conn.fetchval("SELECT count(*) FROM indexing_jobs") == 0
    wrong = dsn.replace(password, "not-the-password")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(wrong)
    stopped = docker("stop", "--time", "30", name)
    assert stopped.returncode == 0
    assert docker("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip() == "0"
    unset = docker("run", "--rm", *LOCKED_DOWN, IMAGE, "db", "serve")
    assert unset.returncode == 1
    assert "set PGDATA" in unset.stderr


async def test_the_operator_command_runs_in_the_image() -> None:
    """The image's operator gets as far as looking for its cluster (none exists here: docs/kubernetes.md)."""
    configured = [
        "--env", "DATABASE_URL=postgresql://operator:hunter2@127.0.0.1:1/codebase",
        "--env", f"INDEXER_IMAGE={IMAGE}", "--env", "INDEXER_DATABASE_SECRET=codebase-db",
    ]  # fmt: skip
    ran = docker("run", "--rm", *LOCKED_DOWN, *configured, IMAGE, "operator")
    assert ran.returncode == 1, ran.stderr
    assert "no Kubernetes cluster to talk to" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert "hunter2" not in ran.stderr + ran.stdout
    unset = docker("run", "--rm", *LOCKED_DOWN, IMAGE, "operator")
    assert unset.returncode == 1
    assert "set DATABASE_URL, INDEXER_IMAGE, INDEXER_DATABASE_SECRET" in unset.stderr
