"""The operator's latency on a real cluster (`make bench-cluster`): the chart installed as users
install it, an MCP client through the gateway's Service, and watches on the API server.

- dispatch, per job, one job at a time: `start_indexing_background` returns -> the Job exists ->
  its pod is Running -> the row is `running` (the indexer in the pod claimed it);
- cancel: `cancel_indexing_background` -> the pod is gone (deleted, not merely terminating);
- operator restart: its pod deleted while jobs run -> a new operator pod posts `Adopted` on each
  running Job.

Times on this side come from watch events as they arrive (kubernetes client, one thread per
watch), the row's from PostgreSQL's clock on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
from fastmcp import Client
from kubernetes import client, config, watch

from bench.common import append_report, table
from tests import support
from tests.e2e import cluster
from tests.e2e.deploy import (
    DATABASE_HOST,
    FULLNAME,
    IMAGE,
    Release,
    chart_values,
    create_database,
    create_namespace,
    create_repositories_claim,
    delete_namespace,
    make_readable,
    repositories_directory,
    serve_postgres,
)

INDEXERS = "app.kubernetes.io/component=indexer"


class Watched:
    """First-seen times of indexer Jobs and pods by job id, from the API server's watch streams."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.job_created: dict[str, float] = {}
        self.pod_running: dict[str, float] = {}
        self.pod_gone: dict[str, float] = {}
        self.adopted: dict[str, float] = {}
        self._stop = threading.Event()
        api = client.ApiClient()
        self._threads = [
            threading.Thread(target=self._jobs, args=(client.BatchV1Api(api),), daemon=True),
            threading.Thread(target=self._pods, args=(client.CoreV1Api(api),), daemon=True),
            threading.Thread(target=self._events, args=(client.CoreV1Api(api),), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _stream(self, function: Any, **options: Any) -> Any:
        while not self._stop.is_set():
            yield from watch.Watch().stream(  # type: ignore[no-untyped-call]
                function, self.namespace, timeout_seconds=30, **options
            )

    def _jobs(self, api: client.BatchV1Api) -> None:
        for event in self._stream(api.list_namespaced_job, label_selector=INDEXERS):
            job_id = event["object"].metadata.labels.get("codebase-mcp/job-id")
            self.job_created.setdefault(job_id, time.time())

    def _pods(self, api: client.CoreV1Api) -> None:
        try:
            self._follow_pods(api)
        except Exception as error:  # a dead watch thread must say why, not hang the bench
            print(f"pod watch stopped: {error!r}", flush=True)
            raise

    def _follow_pods(self, api: client.CoreV1Api) -> None:
        for event in self._stream(api.list_namespaced_pod, label_selector=INDEXERS):
            pod = event["object"]
            job_id = pod.metadata.labels.get("codebase-mcp/job-id")
            if event["type"] == "DELETED":
                self.pod_gone.setdefault(job_id, time.time())
            elif pod.status.phase in ("Running", "Succeeded", "Failed"):  # a short pod may skip Running
                self.pod_running.setdefault(job_id, time.time())

    def _events(self, api: client.CoreV1Api) -> None:
        for event in self._stream(api.list_namespaced_event):
            item = event["object"]
            if item.reason == "Adopted" and item.involved_object.name.startswith("codebase-index-"):
                self.adopted.setdefault(item.involved_object.name.removeprefix("codebase-index-"), time.time())

    def wait(self, seen: dict[str, float], job_id: str, seconds: float = 300) -> float:
        deadline = time.monotonic() + seconds
        while job_id not in seen:
            if time.monotonic() > deadline:
                pods = cluster.kubectl("get", "pods", "-o", "wide", namespace=self.namespace, check=False)
                raise TimeoutError(f"job {job_id}: not seen in {seconds} s; pods:\n{pods}")
            time.sleep(0.02)
        return seen[job_id]

    def close(self) -> None:
        self._stop.set()


def summary(values: list[float]) -> list[str]:
    ordered = sorted(values)
    p95 = statistics.quantiles(ordered, n=20, method="inclusive")[18] if len(ordered) > 1 else ordered[0]
    return [f"{statistics.median(ordered):.2f}", f"{p95:.2f}", f"{ordered[-1]:.2f}", str(len(ordered))]


async def call(url: str, token: str, tool: str, **arguments: Any) -> dict[str, Any]:
    async with Client(url + "/mcp", auth=token) as mcp:
        result = await mcp.call_tool(tool, arguments)
    assert result.structured_content is not None
    return dict(result.structured_content)


async def started_at(conn: asyncpg.Connection[Any], job_id: str, seconds: float = 300) -> float:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await conn.fetchval("SELECT extract(epoch FROM started_at) FROM indexing_jobs WHERE id = $1", job_id)
        if value is not None:
            return float(value)
        await asyncio.sleep(0.05)
    raise TimeoutError(f"job {job_id} never ran")


async def finished(conn: asyncpg.Connection[Any], job_ids: list[str], seconds: float = 900) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        open_jobs = await conn.fetchval(
            "SELECT count(*) FROM indexing_jobs WHERE id = ANY($1::uuid[]) AND status IN ('pending', 'running')",
            job_ids,
        )
        if open_jobs == 0:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError("jobs did not finish")


async def measure(release: Release, root: Path, jobs: int, cancels: int) -> str:
    watched = Watched(release.namespace)
    rows: list[list[str]] = []
    try:
        with cluster.port_forward(release.namespace, f"svc/{FULLNAME}-gateway", 8000) as url:
            token = release.token()
            async with support.connection(str(release.database_url)) as conn:
                created, running, claimed = [], [], []
                for n in range(jobs):
                    path = root / f"dispatch-{n}"
                    # Text no earlier job had: every job loads the model and embeds, as a new one would.
                    support.make_large_repository(path, files=2, functions=4, salt=secrets.token_hex(4))
                    make_readable(path)
                    began = time.time()
                    job = await call(url, token, "start_indexing_background", repo_path=f"/repositories/dispatch-{n}")
                    job_id = job["job_id"]
                    created.append(watched.wait(watched.job_created, job_id) - began)
                    running.append(watched.wait(watched.pod_running, job_id) - began)
                    claimed.append(await started_at(conn, job_id) - began)
                    await finished(conn, [job_id])
                rows += [
                    ["start -> Job created", *summary(created)],
                    ["start -> pod Running", *summary(running)],
                    ["start -> row running", *summary(claimed)],
                ]
                gone = []
                for n in range(cancels):
                    path = root / f"cancel-{n}"
                    support.make_large_repository(path, files=40, functions=12, salt=secrets.token_hex(4))
                    make_readable(path)
                    job = await call(url, token, "start_indexing_background", repo_path=f"/repositories/cancel-{n}")
                    job_id = job["job_id"]
                    await started_at(conn, job_id)
                    began = time.time()
                    await call(url, token, "cancel_indexing_background", job_id=job_id)
                    gone.append(watched.wait(watched.pod_gone, job_id) - began)
                rows.append(["cancel -> pod gone", *summary(gone)])
                adopted = []
                ids = []
                for n in range(2):
                    path = root / f"adopt-{n}"
                    support.make_large_repository(path, files=60, functions=12, salt=secrets.token_hex(4))
                    make_readable(path)
                    job = await call(url, token, "start_indexing_background", repo_path=f"/repositories/adopt-{n}")
                    ids.append(job["job_id"])
                for job_id in ids:
                    await started_at(conn, job_id)
                [operator] = cluster.pods(release.namespace, "app.kubernetes.io/component=operator")
                began = time.time()
                cluster.kubectl(
                    "delete", "pod", operator["metadata"]["name"], "--wait=false", namespace=release.namespace
                )
                adopted = [watched.wait(watched.adopted, job_id) - began for job_id in ids]
                rows.append(["operator pod deleted -> running Jobs adopted", *summary(adopted)])
                await finished(conn, ids)
    finally:
        watched.close()
    return table(["step", "p50 s", "p95 s", "max s", "n"], rows)


def bring_up() -> str:
    """The local cluster taken down and brought up again from cached binaries, and the image
    loaded into it: what a warm machine pays before `make e2e` runs a test."""
    rows = []
    for label, command in [
        ("make cluster-down", ["bash", "scripts/cluster/down.sh"]),
        ("make cluster-up (binaries cached)", ["bash", "scripts/cluster/up.sh"]),
        (f"load {IMAGE} into the node", ["bash", "scripts/cluster/load-image.sh", IMAGE]),
    ]:
        began = time.monotonic()
        subprocess.run(command, check=True, capture_output=True)
        rows.append([label, f"{time.monotonic() - began:.1f}"])
    manifest = Path(cluster.run("bash", "scripts/cluster/build.sh").strip().splitlines()[-1]) / "MANIFEST"
    built = next(line for line in manifest.read_text().splitlines() if line.startswith("built "))
    rows.append(["build.sh kubernetes, as cached here (its MANIFEST)", built])
    return table(["step", "seconds"], rows)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10, help="jobs dispatched one after another")
    parser.add_argument("--cancels", type=int, default=5, help="jobs cancelled mid-run")
    parser.add_argument(
        "--bring-up", action="store_true", help="also time the local cluster's down, up and image load (restarts it)"
    )
    args = parser.parse_args()
    setup = bring_up() if args.bring_up else ""
    config.load_kube_config()  # type: ignore[no-untyped-call]
    namespace = f"bench-{secrets.token_hex(3)}"
    with (
        tempfile.TemporaryDirectory() as home,
        serve_postgres(Path(home)) as postgres,
        repositories_directory() as root,
    ):
        create_namespace(namespace)
        try:
            claim = create_repositories_claim(namespace, root)
            database = await create_database(postgres)
            url = postgres.url(database, host=DATABASE_HOST)
            release = Release(namespace, postgres.url(database), chart_values(url, claim=claim))
            release.install()
            body = await measure(release, root, args.jobs, args.cancels)
        finally:
            delete_namespace(namespace)
    version = cluster.kubectl("version", "-o", "json")
    server = version.split('"serverVersion"')[1].split('"gitVersion": "')[1].split('"')[0]
    append_report(
        "Kubernetes: operator dispatch, cancel and adoption (bench.cluster)",
        f"Kubernetes {server}, the chart's defaults (operator in the cluster, MAX_CONCURRENT_INDEXING_JOBS 2), "
        f"{args.jobs} jobs dispatched one at a time, {args.cancels} cancelled mid-run, 2 adopted.\n\n{body}"
        + (f"\n\nThe local cluster itself:\n\n{setup}" if setup else ""),
    )


if __name__ == "__main__":
    asyncio.run(main())
