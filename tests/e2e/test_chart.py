"""The product on a real cluster: the chart installed in a namespace that enforces the restricted
Pod Security Standard, an MCP client through the gateway's Service, indexer Jobs run by the
operator's pod, and what kubectl shows users. The tests share one release and run in file order;
the last one uninstalls it."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from tests import support
from tests.e2e import cluster
from tests.e2e.deploy import RELEASE, Release, git_server_host, make_readable

pytestmark = pytest.mark.e2e
INDEXERS = "app.kubernetes.io/component=indexer"
OPERATOR = "app.kubernetes.io/component=operator"
TERMINAL = {"completed", "failed", "cancelled"}


class Gateway:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        async with Client(self.url + "/mcp", auth=self.token) as client:
            result = await client.call_tool(tool, arguments)
        assert result.structured_content is not None
        return dict(result.structured_content)

    async def call_error(self, tool: str, **arguments: Any) -> str:
        """The error a refused call reports to the agent."""
        async with Client(self.url + "/mcp", auth=self.token) as client:
            result = await client.call_tool(tool, arguments, raise_on_error=False)
        assert result.is_error, result
        return " ".join(getattr(block, "text", "") for block in result.content)

    async def follow(self, job_id: str, seconds: float = 300) -> list[dict[str, Any]]:
        """Every status the job showed until it ended."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            status = await self.call("get_indexing_status", job_id=job_id)
            seen.append(status)
            if status["status"] in TERMINAL:
                return seen
            await asyncio.sleep(0.5)
        raise AssertionError(f"job {job_id} did not end in {seconds} s: {seen[-1] if seen else None}")


@pytest.fixture
async def gateway(release: Release) -> AsyncIterator[Gateway]:
    with cluster.port_forward(release.namespace, f"svc/{RELEASE}-codebase-mcp-gateway", 8000) as url:
        yield Gateway(url, release.token())


def repository(root: Path, name: str, *, files: int = 0) -> str:
    """A repository under the volume's directory; its path as the pods see it."""
    path = root / name
    if files:
        support.make_large_repository(path, files=files, functions=12, salt=secrets.token_hex(4))
    else:
        support.make_sample_repository(path)
    make_readable(path)
    return f"/repositories/{name}"


def test_installed_pods_pass_the_restricted_standard_and_helm_test(release: Release) -> None:
    namespace = cluster.kubectl_json("get", "namespace", release.namespace)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    phases: dict[str, set[str]] = {}
    for pod in cluster.pods(release.namespace, "app.kubernetes.io/instance=" + RELEASE):
        phases.setdefault(pod["metadata"]["labels"]["app.kubernetes.io/component"], set()).add(pod["status"]["phase"])
    # Every pod we make runs under the restricted standard. The migrations may have failed while
    # the bundled PostgreSQL was starting (their Job retries until it answers), and then succeeded.
    assert {name: phases.get(name) for name in ("gateway", "operator", "postgresql")} == {
        "gateway": {"Running"},
        "operator": {"Running"},
        "postgresql": {"Running"},
    }, phases
    assert "Succeeded" in phases["migrations"], phases
    output = cluster.helm("test", RELEASE, "-n", release.namespace, "--logs")
    assert "gateway ready; tools:" in output
    assert "search_code" in output


def test_the_operator_has_only_its_namespaced_rights(release: Release) -> None:
    account = f"system:serviceaccount:{release.namespace}:{RELEASE}-codebase-mcp-operator"

    def can(*args: str) -> bool:
        answer = cluster.kubectl("auth", "can-i", *args, "--as", account, check=False).strip()
        return answer == "yes"

    ns = ("-n", release.namespace)
    assert can("create", "jobs.batch", *ns)
    assert can("watch", "jobs.batch", *ns)
    assert can("delete", "jobs.batch", *ns)
    assert can("list", "pods", *ns)
    assert can("create", "events", *ns)
    assert not can("get", "secrets", *ns), "the operator never reads Secrets: pods get them by reference"
    assert not can("create", "pods", *ns)
    assert not can("patch", "jobs.batch", *ns)
    assert not can("create", "jobs.batch", "-n", "default"), "nothing outside its namespace"
    assert not can("list", "jobs.batch", "--all-namespaces")
    assert not can("list", "namespaces")


async def test_index_and_search_through_the_gateway_service(
    release: Release, gateway: Gateway, repositories_root: Path
) -> None:
    path = repository(repositories_root, "shop")
    job = await gateway.call("start_indexing_background", repo_path=path)
    job_id = job["job_id"]
    name = f"codebase-index-{job_id}"
    # The Job and its pod, found the way docs/kubernetes.md tells users to find them.
    found = cluster.eventually(lambda: cluster.jobs(release.namespace, f"codebase-mcp/job-id={job_id}"), 60, name)
    assert [j["metadata"]["name"] for j in found] == [name]
    assert cluster.eventually(lambda: cluster.pods(release.namespace, f"codebase-mcp/job-id={job_id}"), 60, "pod")

    seen = await gateway.follow(job_id)
    final = seen[-1]
    assert final["status"] == "completed", final
    assert (final["k8s_namespace"], final["k8s_job_name"]) == (release.namespace, name)
    percentages = [status["progress_percentage"] for status in seen]
    assert percentages == sorted(percentages), "progress never goes backwards"
    assert final["progress_percentage"] == 100
    assert final["chunks_created"] > 0

    logs = cluster.kubectl("logs", f"job/{name}", namespace=release.namespace)
    for phase in ("Scanning files", "Embedding chunks", "Writing"):  # each phase opens with a line
        assert phase in logs, f"no {phase!r} progress line in `kubectl logs job/{name}`:\n{logs[-2000:]}"
    described = cluster.kubectl("describe", "job", name, namespace=release.namespace)
    assert "Claimed" in described, "the operator's decision is on the Job's Events"

    hits = await gateway.call("search_code", query="add sales tax to the invoice line items")
    top = hits["results"][0]
    assert (top["path"], top["symbol"]) == ("billing/invoice.py", "compute_invoice_total")


async def test_index_git_repositories_by_url(release: Release, gateway: Gateway, repositories_root: Path) -> None:
    """repo_url jobs: the indexer pod clones over https from a git server inside the cluster (its
    CA from the chart's indexer.gitCASecret, its name from cluster DNS, a shallow fetch over git's
    smart HTTP), and by file:// from the volume (owned by another user than the pod's: git's
    safe.directory); each records the commit it indexed."""
    path = repositories_root / "history"
    path.mkdir()
    _, head = support.make_git_repository(path)
    make_readable(path)
    served = f"https://{git_server_host(release.namespace)}/cgi-bin/git.py/history"
    for url in (served, "file:///repositories/history"):
        job = await gateway.call("start_indexing_background", repo_url=url)
        final = (await gateway.follow(job["job_id"]))[-1]
        assert final["status"] == "completed", final
        repositories = await gateway.call("list_repositories")
        [cloned] = [r for r in repositories["repositories"] if r["source"] == url]
        assert cloned["commit_sha"] == head, url
    hits = await gateway.call("search_code", query="sequence of fibonacci numbers")
    assert any(hit["symbol"] == "fibonacci_sequence" for hit in hits["results"])
    refused = await gateway.call_error("start_indexing_background", repo_url="https://github.com/x/y")
    assert "not in ALLOWED_GIT_HOSTS" in refused


async def test_cancel_mid_embedding_deletes_the_job_and_no_pod_replaces_it(
    release: Release, gateway: Gateway, repositories_root: Path
) -> None:
    path = repository(repositories_root, "big", files=60)
    watch = cluster.PodWatch(release.namespace, INDEXERS)
    try:
        job = await gateway.call("start_indexing_background", repo_path=path)
        job_id = job["job_id"]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            status = await gateway.call("get_indexing_status", job_id=job_id)
            message = status["progress_message"] or ""
            if message.startswith("Embedding chunks") and not message.startswith("Embedding chunks 0/"):
                break
            assert status["status"] not in TERMINAL, status
            await asyncio.sleep(0.3)
        else:
            raise AssertionError("the job never got to embedding")
        cancelled = await gateway.call("cancel_indexing_background", job_id=job_id)
        assert cancelled["status"] == "cancelled"
        selector = f"codebase-mcp/job-id={job_id}"
        cluster.eventually(lambda: not cluster.jobs(release.namespace, selector) or None, 60, "Job deleted")
        cluster.eventually(lambda: not cluster.pods(release.namespace, selector) or None, 60, "pod gone")
        await asyncio.sleep(5)  # the Job controller makes a replacement within this, if it makes one
        watch.poll()
        assert not cluster.pods(release.namespace, selector)
        job_pods = [name for name in watch.seen if name.startswith(f"codebase-index-{job_id}")]
        assert len(job_pods) == 1, f"exactly one pod ever ran the job (no replacement): {job_pods}"
    finally:
        watch.close()
    final = await gateway.call("get_indexing_status", job_id=job_id)
    assert final["status"] == "cancelled"
    hits = await gateway.call("search_code", query="Handle request kind 3 of module 7")
    assert all(hit["repository"] != "big" for hit in hits["results"]), "nothing of a cancelled job is searchable"


async def test_at_most_the_concurrency_limit_of_indexer_pods_run_at_once(
    release: Release, gateway: Gateway, repositories_root: Path
) -> None:
    paths = [repository(repositories_root, f"many-{n}", files=6) for n in range(4)]
    watch = cluster.PodWatch(release.namespace, INDEXERS)
    try:
        started = [await gateway.call("start_indexing_background", repo_path=path) for path in paths]
        for job in started:
            seen = await gateway.follow(job["job_id"], seconds=600)
            assert seen[-1]["status"] == "completed", seen[-1]
            watch.poll()
    finally:
        watch.close()
    assert len([name for name in watch.seen if any(j["job_id"] in name for j in started)]) == 4
    assert watch.max_active <= 2, f"{watch.max_active} indexer pods at once with a limit of 2"


async def test_operator_pod_deleted_mid_job_its_job_is_adopted(
    release: Release, gateway: Gateway, repositories_root: Path
) -> None:
    path = repository(repositories_root, "adopted", files=30)
    job = await gateway.call("start_indexing_background", repo_path=path)
    job_id = job["job_id"]
    selector = f"codebase-mcp/job-id={job_id}"
    [created] = cluster.eventually(lambda: cluster.jobs(release.namespace, selector), 60, "the Job")
    [old] = cluster.pods(release.namespace, OPERATOR)
    cluster.kubectl("delete", "pod", old["metadata"]["name"], "--wait=true", namespace=release.namespace)
    cluster.eventually(
        lambda: [
            p for p in cluster.pods(release.namespace, OPERATOR)
            if p["metadata"]["name"] != old["metadata"]["name"] and p["status"].get("phase") == "Running"
        ],
        120,
        "a new operator pod",
    )  # fmt: skip
    seen = await gateway.follow(job_id, seconds=600)
    assert seen[-1]["status"] == "completed", seen[-1]
    [after] = cluster.jobs(release.namespace, selector)
    assert after["metadata"]["uid"] == created["metadata"]["uid"], "the same Job, not a second one"


async def test_upgrade_keeps_the_token_and_the_data(release: Release, gateway: Gateway) -> None:
    token = release.token()
    release.values["operator"]["maxConcurrentJobs"] = 3
    release.install()
    assert release.token() == token, "an upgrade keeps the generated token"
    [operator] = cluster.kubectl_json(
        "get", "deployment", f"{RELEASE}-codebase-mcp-operator", namespace=release.namespace
    )["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in operator["env"]}
    assert env["MAX_CONCURRENT_INDEXING_JOBS"] == "3"
    with cluster.port_forward(release.namespace, f"svc/{RELEASE}-codebase-mcp-gateway", 8000) as url:
        upgraded = Gateway(url, token)
        hits = await upgraded.call("search_code", query="add sales tax to the invoice line items", repository="shop")
        listed = await upgraded.call("list_repositories")
    assert hits["results"][0]["symbol"] == "compute_invoice_total"
    assert {"shop", "history"} <= {r["name"] for r in listed["repositories"]}, "every repository indexed before"


def test_uninstall_leaves_no_job_or_pod_of_ours(release: Release) -> None:
    cluster.helm("uninstall", RELEASE, "-n", release.namespace, "--wait")
    cluster.eventually(
        lambda: not cluster.pods(release.namespace, "app.kubernetes.io/name=codebase-mcp") or None, 120, "pods gone"
    )
    assert not cluster.jobs(release.namespace, "app.kubernetes.io/name=codebase-mcp")
