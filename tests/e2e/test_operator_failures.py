"""The operator against what goes wrong on a real cluster, each failure reported in the job's row
with Kubernetes' own reason. Here the operator runs outside the cluster, as `codebase-mcp operator`
with a kubeconfig holding only its ServiceAccount's token (the chart's Role, nothing more), so a
test can give it settings of its own and kill it with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fastmcp import Client

from codebase_mcp.db.embedded import find_free_port
from tests import support
from tests.e2e import cluster
from tests.e2e.deploy import (
    DATABASE_HOST,
    FULLNAME,
    IMAGE,
    RELEASE,
    Database,
    Release,
    chart_values,
    create_database,
    create_namespace,
    create_repositories_claim,
    delete_namespace,
    make_readable,
)

pytestmark = pytest.mark.e2e
STARTUP_TIMEOUT = 20


@pytest.fixture(scope="module")
async def bare_release(postgres: Database, repositories_root: Path) -> AsyncIterator[Release]:
    """The chart without its operator: the ServiceAccount, Role, Secrets and the migrated database."""
    namespace = f"e2e-ops-{uuid.uuid4().hex[:6]}"
    create_namespace(namespace)
    claim = create_repositories_claim(namespace, repositories_root)
    database = await create_database(postgres)
    # An external PostgreSQL (this machine's), which the operator run here reaches too.
    values = chart_values(postgres.url(database, host=DATABASE_HOST), claim=claim, operator={"enabled": False})
    installed = Release(namespace, postgres.url(database), values)
    try:
        installed.install()
        yield installed
    finally:
        cluster.run(cluster.HELM, "uninstall", RELEASE, "-n", namespace, "--wait", check=False)
        delete_namespace(namespace)


@pytest.fixture(scope="module")
def operator_kubeconfig(bare_release: Release, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig with the operator ServiceAccount's token: the chart's Role is all it has."""
    admin = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json"))
    server = admin["clusters"][0]["cluster"]  # the server's address and CA, not the admin's identity
    token = cluster.kubectl(
        "create", "token", f"{FULLNAME}-operator", "--duration", "2h", namespace=bare_release.namespace
    ).strip()
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "e2e", "cluster": server}],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "e2e",
                        "context": {"cluster": "e2e", "user": "operator", "namespace": bare_release.namespace},
                    }
                ],
                "current-context": "e2e",
            }
        )
    )
    return path


@contextmanager
def operator(release: Release, kubeconfig: Path, log: Path, **settings: str) -> Iterator[subprocess.Popen[str]]:
    environment = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "DATABASE_URL": str(release.database_url),
        "POD_NAMESPACE": release.namespace,
        "INDEXER_IMAGE": IMAGE,
        "INDEXER_DATABASE_SECRET": f"{FULLNAME}-database",
        "INDEXER_REPOSITORIES_CLAIM": "repositories",
        "INDEXER_JOB_OWNER": f"{FULLNAME}-indexer-jobs",
        "INDEXER_STARTUP_TIMEOUT_SECONDS": str(STARTUP_TIMEOUT),
        "INDEXER_CPU": "250m",
        "INDEXER_MEMORY": "2Gi",
        "CANCELLATION_CHECK_INTERVAL_SECONDS": "1",
        **settings,
    }
    with log.open("a") as output:
        process = subprocess.Popen(
            [str(support.SCRIPT_DIR / "codebase-mcp"), "operator", "--health-port", str(find_free_port())],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
async def conn(bare_release: Release) -> AsyncIterator[asyncpg.Connection[Any]]:
    assert bare_release.database_url is not None
    async with support.connection(bare_release.database_url) as connection:
        yield connection


def queue_job(repositories_root: Path, name: str, *, files: int = 2) -> str:
    path = repositories_root / name
    support.make_large_repository(path, files=files, functions=10, salt=uuid.uuid4().hex[:8])
    make_readable(path)
    return f"/repositories/{name}"


async def settled(conn: asyncpg.Connection[Any], job_id: uuid.UUID, seconds: float, log: Path) -> asyncpg.Record:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row: asyncpg.Record | None = await conn.fetchrow("SELECT * FROM indexing_jobs WHERE id = $1", job_id)
        assert row is not None
        if row["status"] in ("completed", "failed", "cancelled"):
            return row
        await asyncio.sleep(0.5)
    raise AssertionError(f"job {job_id} not settled in {seconds} s; operator log:\n{log.read_text()[-3000:]}")


def job_gone(namespace: str, job_id: uuid.UUID) -> None:
    selector = f"codebase-mcp/job-id={job_id}"
    cluster.eventually(lambda: not cluster.jobs(namespace, selector) or None, 60, "its Job deleted")
    cluster.eventually(lambda: not cluster.pods(namespace, selector) or None, 90, "its pod gone")


@pytest.mark.parametrize(
    ("case", "settings", "expected"),
    [
        # The pod waits for ever (Kubernetes never fails it): the operator's start-up timeout does.
        ("image", {"INDEXER_IMAGE": "127.0.0.1:1/codebase-mcp:missing"},
         r"StartupTimeout.*(ErrImagePull|ImagePullBackOff)"),
        ("unschedulable", {"INDEXER_CPU": "64"}, r"StartupTimeout.*Unschedulable.*Insufficient cpu"),
        # The container is killed for memory; the Job fails and the pod says why.
        ("oom", {"INDEXER_MEMORY": "96Mi"}, r"BackoffLimitExceeded.*OOMKilled, exit code 137"),
        # The Job's deadline (the timeout, twice) passes before its pod could start: Kubernetes
        # fails the Job (a running indexer would have stopped itself at the timeout).
        ("deadline", {"INDEXING_JOB_TIMEOUT_SECONDS": "3", "INDEXER_CPU": "64",
                      "INDEXER_STARTUP_TIMEOUT_SECONDS": "120"}, r"DeadlineExceeded"),
    ],
)  # fmt: skip
async def test_failures_reach_the_row_with_kubernetes_reason(
    bare_release: Release,
    operator_kubeconfig: Path,
    conn: asyncpg.Connection[Any],
    repositories_root: Path,
    tmp_path: Path,
    case: str,
    settings: dict[str, str],
    expected: str,
) -> None:
    path = queue_job(repositories_root, f"fail-{case}")
    log = tmp_path / "operator.log"
    with operator(bare_release, operator_kubeconfig, log, **settings):
        job_id = await support.insert_job(conn, project_id="default", repo_path=path)
        row = await settled(conn, job_id, STARTUP_TIMEOUT + 120, log)
        if case in ("image", "unschedulable"):
            job_gone(bare_release.namespace, job_id)  # Kubernetes would have kept it for ever
    assert row["status"] == "failed", dict(row)
    assert re.search(expected, row["error_message"] or ""), row["error_message"]
    # What an agent sees: the same reason, through the gateway's Service.
    with cluster.port_forward(bare_release.namespace, f"svc/{FULLNAME}-gateway", 8000) as url:
        async with Client(url + "/mcp", auth=bare_release.token()) as agent:
            shown = await agent.call_tool("get_indexing_status", {"job_id": str(job_id)})
    assert shown.structured_content is not None
    assert shown.structured_content["status"] == "failed"
    assert shown.structured_content["error_message"] == row["error_message"]


async def test_a_quota_that_refuses_the_pod_is_reported(
    bare_release: Release,
    operator_kubeconfig: Path,
    conn: asyncpg.Connection[Any],
    repositories_root: Path,
    tmp_path: Path,
) -> None:
    quota = "e2e-no-room"
    cluster.apply(
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": quota},
         "spec": {"hard": {"requests.cpu": "400m"}}},
        namespace=bare_release.namespace,
    )  # fmt: skip
    try:
        path = queue_job(repositories_root, "fail-quota")
        log = tmp_path / "operator.log"
        with operator(bare_release, operator_kubeconfig, log, INDEXER_CPU="1"):
            job_id = await support.insert_job(conn, project_id="default", repo_path=path)
            row = await settled(conn, job_id, STARTUP_TIMEOUT + 90, log)
        assert row["status"] == "failed"
        assert "FailedCreate" in row["error_message"], row["error_message"]
        assert "exceeded quota" in row["error_message"], row["error_message"]
        job_gone(bare_release.namespace, job_id)
        events = cluster.kubectl("get", "events", "--field-selector", f"involvedObject.name=codebase-index-{job_id}",
                                 namespace=bare_release.namespace)  # fmt: skip
        assert "StartupTimedOut" in events, "the operator's decision is on the Job's Events"
    finally:
        cluster.kubectl("delete", "resourcequota", quota, namespace=bare_release.namespace, check=False)


async def test_operator_killed_mid_job_adopts_it_and_creates_no_duplicate(
    bare_release: Release,
    operator_kubeconfig: Path,
    conn: asyncpg.Connection[Any],
    repositories_root: Path,
    tmp_path: Path,
) -> None:
    path = queue_job(repositories_root, "killed", files=30)
    log = tmp_path / "operator.log"
    with operator(bare_release, operator_kubeconfig, log) as first:
        job_id = await support.insert_job(conn, project_id="default", repo_path=path)
        selector = f"codebase-mcp/job-id={job_id}"
        [created] = cluster.eventually(lambda: cluster.jobs(bare_release.namespace, selector), 60, "the Job")
        cluster.eventually(
            lambda: any(p["status"].get("phase") == "Running" for p in cluster.pods(bare_release.namespace, selector)),
            120,
            "its pod running",
        )
        first.kill()  # SIGKILL: no clean-up of any kind
        first.wait(timeout=10)
    with operator(bare_release, operator_kubeconfig, log):
        row = await settled(conn, job_id, 600, log)
    assert row["status"] == "completed", dict(row)
    [after] = cluster.jobs(bare_release.namespace, selector)
    assert after["metadata"]["uid"] == created["metadata"]["uid"], "the same Job, not a second one"
    assert len(cluster.pods(bare_release.namespace, selector)) == 1, "one pod ran the job"
    assert "Adopted" in cluster.kubectl("describe", "job", f"codebase-index-{job_id}", namespace=bare_release.namespace)
