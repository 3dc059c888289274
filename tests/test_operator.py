"""The operator: its Job manifest, how it follows Jobs, and its dispatch loop on a real database.

No Kubernetes API server can run on these machines (../shared/ENVIRONMENT.md). The loop's tests
call `RecordingBatchApi` in-process, which keeps what it was asked and answers the way the API
server does (201, 409 AlreadyExists, 403 Forbidden, 404 NotFound), with Job state arriving as the
watch events kopf would deliver; the process test runs the real command, kopf and the kubernetes
client over HTTP against tests/kube_api_stub.py. What neither can prove, that a cluster accepts the
Job and runs the pod, needs a cluster: docs/kubernetes.md says how to run the operator on kind.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from codebase_mcp.db.embedded import find_free_port
from codebase_mcp.dispatch import Dispatcher
from codebase_mcp.settings import Settings
from codebase_operator.launcher import KubernetesLauncher, job_ending, pod_state
from codebase_operator.manifests import COMPONENT_LABELS, JOB_ID_LABEL, indexer_job, job_name
from codebase_operator.run import build_registry
from tests import support
from tests.kube_api_stub import KubeApiStub

NAMESPACE = "codebase"
SECRET_DSN = "postgresql://indexer:hunter2@db.internal:5432/codebase"


def operator_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": SECRET_DSN,
        "indexer_image": "registry.example/codebase-mcp:1.2.3",
        "indexer_database_secret": "codebase-db",
        "max_concurrent_indexing_jobs": 2,
        **overrides,
    }
    return Settings(**values)


def serialized(job: client.V1Job) -> dict[str, Any]:
    """The JSON the API server receives (the client's camelCase field names)."""
    body: dict[str, Any] = client.ApiClient().sanitize_for_serialization(job)  # type: ignore[no-untyped-call]
    return body


def test_the_job_runs_the_indexer_with_nothing_it_does_not_need() -> None:
    job_id = uuid.uuid4()
    settings = operator_settings(
        indexer_repositories_claim="repos",
        indexer_git_token_secret="git",
        indexer_git_ca_secret="git-ca",
        allowed_git_hosts="github.com",
    )
    body = serialized(indexer_job(job_id, NAMESPACE, settings))

    name = body["metadata"]["name"]
    assert name == job_name(job_id)
    assert len(name) <= 57, "a Job's pods add 6 characters to its name, and 63 is the limit"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
    assert body["metadata"]["namespace"] == NAMESPACE
    assert body["metadata"]["labels"] == {
        **COMPONENT_LABELS,
        "app.kubernetes.io/part-of": "codebase-mcp",
        JOB_ID_LABEL: str(job_id),
    }
    spec = body["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == settings.indexing_job_timeout_seconds + 600
    # A pod lost to its node is replaced (after it is gone), not counted as the indexer's failure.
    assert spec["podFailurePolicy"] == {
        "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
    }
    assert spec["podReplacementPolicy"] == "Failed"
    pod = spec["template"]["spec"]
    assert spec["template"]["metadata"]["labels"][JOB_ID_LABEL] == str(job_id)
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False, "the indexer talks to PostgreSQL, never to Kubernetes"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    assert container["image"] == settings.indexer_image
    assert container["args"] == ["indexer", "--job-id", str(job_id)]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "3Gi"}, "limits": {"memory": "3Gi"}}
    env = {item["name"]: item for item in container["env"]}
    assert env["DATABASE_URL"] == {
        "name": "DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "codebase-db", "key": "DATABASE_URL"}},
    }
    assert "hunter2" not in json.dumps(body), "the password stays in the Secret, out of the Job spec"
    assert env["ALLOWED_GIT_HOSTS"]["value"] == "github.com"
    assert env["ALLOWED_REPO_ROOTS"]["value"] == "/repositories"
    assert env["GIT_TOKEN_FILE"]["value"] == "/var/run/secrets/codebase-mcp/git/token"
    assert env["GIT_SSL_CAINFO"]["value"] == "/var/run/secrets/codebase-mcp/git-ca/ca.crt"
    assert env["INDEXING_JOB_TIMEOUT_SECONDS"]["value"] == str(settings.indexing_job_timeout_seconds)
    assert env["REPOSITORY_GRAPH_MIN_CHUNKS"]["value"] == str(settings.repository_graph_min_chunks)
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert set(mounts) == {
        "/tmp",
        "/repositories",
        "/var/run/secrets/codebase-mcp/git",
        "/var/run/secrets/codebase-mcp/git-ca",
    }
    assert mounts["/repositories"]["readOnly"] is True
    assert mounts["/var/run/secrets/codebase-mcp/git"]["readOnly"] is True
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["repositories"]["persistentVolumeClaim"] == {"claimName": "repos", "readOnly": True}
    assert volumes["git-token"]["secret"]["secretName"] == "git"
    assert volumes["git-ca"]["secret"] == {"secretName": "git-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert "nodeSelector" not in pod
    assert "annotations" not in body["metadata"]


def test_the_job_takes_the_users_scheduling_labels_and_annotations() -> None:
    job_id = uuid.uuid4()
    settings = operator_settings(
        indexer_node_selector={"accelerator": "nvidia"},
        indexer_tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        indexer_affinity={"nodeAffinity": {}},
        # The operator selects its Jobs by its own labels: a user's cannot replace them.
        indexer_job_labels={"kueue.x-k8s.io/queue-name": "indexing", "app.kubernetes.io/component": "mine"},
        indexer_job_annotations={"cost-center": "search"},
        indexer_job_ttl_seconds=600,
    )
    body = serialized(indexer_job(job_id, NAMESPACE, settings))
    pod = body["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"accelerator": "nvidia"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["affinity"] == {"nodeAffinity": {}}
    for metadata in (body["metadata"], body["spec"]["template"]["metadata"]):
        assert metadata["labels"]["kueue.x-k8s.io/queue-name"] == "indexing"
        assert metadata["labels"]["app.kubernetes.io/component"] == "indexer"
        assert metadata["annotations"] == {"cost-center": "search"}
    assert body["spec"]["ttlSecondsAfterFinished"] == 600


def test_a_plain_job_mounts_only_tmp_and_says_what_is_missing() -> None:
    body = serialized(indexer_job(uuid.uuid4(), NAMESPACE, operator_settings()))
    [container] = body["spec"]["template"]["spec"]["containers"]
    assert [mount["mountPath"] for mount in container["volumeMounts"]] == ["/tmp"]
    names = {item["name"] for item in container["env"]}
    assert not {"ALLOWED_REPO_ROOTS", "GIT_TOKEN_FILE"} & names
    with pytest.raises(ValueError, match="INDEXER_IMAGE"):
        indexer_job(uuid.uuid4(), NAMESPACE, operator_settings(indexer_image=None))
    with pytest.raises(ValueError, match="INDEXER_DATABASE_SECRET"):
        indexer_job(uuid.uuid4(), NAMESPACE, operator_settings(indexer_database_secret=None))


def job_body(job_id: uuid.UUID, *conditions: dict[str, str], deleting: bool = False) -> dict[str, Any]:
    """A Job as the watch delivers it."""
    metadata: dict[str, Any] = {
        "name": job_name(job_id),
        "namespace": NAMESPACE,
        "labels": {**COMPONENT_LABELS, JOB_ID_LABEL: str(job_id)},
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-24T10:00:00Z"
    status: dict[str, Any] = {"active": 0 if conditions else 1}
    if conditions:
        status["conditions"] = [{"status": "True", **condition} for condition in conditions]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "status": status}


COMPLETE = {"type": "Complete"}
DEADLINE = {"type": "Failed", "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline"}


def test_job_endings_read_from_the_status() -> None:
    assert job_ending({"active": 1}) is None
    assert job_ending(None) is None
    assert job_ending(job_body(uuid.uuid4(), COMPLETE)["status"]) == "Job succeeded"
    assert job_ending(job_body(uuid.uuid4(), DEADLINE)["status"]) == (
        "Job failed (DeadlineExceeded: Job was active longer than specified deadline)"
    )
    suspended = {"conditions": [{"type": "Suspended", "status": "True"}, {"type": "Failed", "status": "False"}]}
    assert job_ending(suspended) is None


class RecordingBatchApi:
    """Stands in for kubernetes.client.BatchV1Api (no API server here): records, answers like one."""

    def __init__(self) -> None:
        self.created: dict[str, dict[str, Any]] = {}  # name -> the JSON the API server would receive
        self.deleted: list[tuple[str, str | None]] = []
        self.refuse_create: ApiException | None = None

    def create_namespaced_job(self, namespace: str, body: client.V1Job, **options: Any) -> client.V1Job:
        assert options.get("_request_timeout"), "a hung API server must not hang the dispatch loop"
        assert namespace == NAMESPACE
        if self.refuse_create is not None:
            raise self.refuse_create
        manifest = serialized(body)
        name = manifest["metadata"]["name"]
        if name in self.created:
            raise api_error(409, "Conflict", f'jobs.batch "{name}" already exists')
        self.created[name] = manifest
        return body

    def delete_namespaced_job(self, name: str, namespace: str, **options: Any) -> None:
        if name not in self.created:
            raise api_error(404, "Not Found", f'jobs.batch "{name}" not found')
        self.deleted.append((name, options.get("propagation_policy")))


class RecordingCoreApi:
    """Stands in for kubernetes.client.CoreV1Api: keeps the Events posted, lists `existing`."""

    def __init__(self) -> None:
        self.events: list[client.CoreV1Event] = []
        self.existing: list[client.CoreV1Event] = []

    def create_namespaced_event(self, namespace: str, body: client.CoreV1Event, **options: Any) -> None:
        assert options.get("_request_timeout"), "a hung API server must not hang the dispatch loop"
        self.events.append(body)

    def list_namespaced_event(self, namespace: str, **options: Any) -> client.CoreV1EventList:
        wanted = dict(item.split("=", 1) for item in options["field_selector"].split(","))
        return client.CoreV1EventList(
            items=[e for e in self.existing if e.involved_object.name == wanted["involvedObject.name"]]
        )


def api_error(status: int, reason: str, message: str) -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = json.dumps({"kind": "Status", "status": "Failure", "message": message, "code": status})
    return error


def launcher_with(
    api: RecordingBatchApi, settings: Settings, core: RecordingCoreApi | None = None
) -> KubernetesLauncher:
    return KubernetesLauncher(api, core or RecordingCoreApi(), NAMESPACE, settings)  # type: ignore[arg-type]


def pod_body(job_id: uuid.UUID, status: dict[str, Any]) -> dict[str, Any]:
    labels = {**COMPONENT_LABELS, JOB_ID_LABEL: str(job_id)}
    return {"metadata": {"name": f"{job_name(job_id)}-x7k2p", "labels": labels}, "status": status}


PULL_BACKOFF = {
    "phase": "Pending",
    "containerStatuses": [
        {"name": "indexer", "state": {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling "x"'}}}
    ],
}


def test_pod_state_reads_why_a_pod_waits_and_how_it_failed() -> None:
    assert pod_state(PULL_BACKOFF) == (False, 'ImagePullBackOff: Back-off pulling "x"', None)
    unschedulable = {
        "phase": "Pending",
        "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "1 Insufficient cpu"}
        ],
    }
    assert pod_state(unschedulable) == (False, "Unschedulable: 1 Insufficient cpu", None)
    # Pulling or creating the container is progress, not a reason to give up.
    creating = {"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]}
    assert pod_state(creating) == (False, None, None)
    assert pod_state({"phase": "Running", "containerStatuses": [{"state": {"running": {}}}]}) == (True, None, None)
    killed = {
        "phase": "Failed",
        "containerStatuses": [{"name": "indexer", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}],
    }
    assert pod_state(killed) == (True, None, "container indexer OOMKilled, exit code 137")


class WatchingBatchApi(RecordingBatchApi):
    """Delivers the watch event of a Job it creates or deletes while the call is still in flight
    (on the event loop, as kopf does), and the dispatch loop reaps right then, as happens with a
    real API server: the launcher must neither take its own new Job for one an earlier operator
    left running, nor its own delete for someone else's."""

    def __init__(self, launcher: KubernetesLauncher | None = None) -> None:
        super().__init__()
        self.launcher = launcher
        self.loop = asyncio.get_running_loop()
        self.reaped: dict[uuid.UUID, str] = {}

    def _deliver(self, kind: str, name: str) -> None:
        delivered = threading.Event()

        def on_loop() -> None:
            assert self.launcher is not None
            self.launcher.observe(kind, job_body(uuid.UUID(name.removeprefix("codebase-index-"))))
            if kind == "DELETED":
                self.reaped.update(self.launcher.reap())
            delivered.set()

        self.loop.call_soon_threadsafe(on_loop)
        assert delivered.wait(5)

    def create_namespaced_job(self, namespace: str, body: client.V1Job, **options: Any) -> client.V1Job:
        created = super().create_namespaced_job(namespace, body, **options)
        assert body.metadata is not None
        assert body.metadata.name is not None
        self._deliver("ADDED", body.metadata.name)
        return created

    def delete_namespaced_job(self, name: str, namespace: str, **options: Any) -> None:
        super().delete_namespaced_job(name, namespace, **options)
        self._deliver("DELETED", name)


async def test_a_pod_that_never_starts_fails_its_job_after_the_startup_timeout() -> None:
    api, core = WatchingBatchApi(), RecordingCoreApi()
    launcher = launcher_with(api, operator_settings(indexer_startup_timeout_seconds=1), core)
    api.launcher = launcher
    stuck, quota, fine = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for job_id in (stuck, quota, fine):
        await launcher.launch(job_id)
    launcher.observe_pod("ADDED", pod_body(stuck, PULL_BACKOFF))
    launcher.observe_pod("MODIFIED", pod_body(fine, {"phase": "Running"}))
    # The quota's Job never gets a pod; the Job controller's Event says why.
    core.existing.append(
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(name="e1"),
            involved_object=client.V1ObjectReference(kind="Job", name=job_name(quota)),
            reason="FailedCreate",
            message='Error creating: pods "x" is forbidden: exceeded quota: small',
        )
    )
    await launcher.check_startups()
    assert launcher.reap() == {}, "nothing fails before the timeout"
    await asyncio.sleep(1.05)
    await launcher.check_startups()
    ended = {**api.reaped, **launcher.reap()}
    assert set(ended) == {stuck, quota}, "a running pod is not a start-up problem"
    assert ended[stuck].startswith("Job failed (StartupTimeout: its pod did not start within 1 s: ImagePullBackOff")
    assert "FailedCreate: Error creating" in ended[quota]
    assert "exceeded quota: small" in ended[quota]
    assert sorted(api.deleted) == sorted([(job_name(stuck), "Background"), (job_name(quota), "Background")])
    await asyncio.sleep(0.2)  # Events posted in the background have been
    reasons = [event.reason for event in core.events]
    assert "Adopted" not in reasons, "a Job seen by the watch before its create call returned is ours, not adopted"
    assert reasons.count("Claimed") == 3
    assert reasons.count("StartupTimedOut") == 2
    assert launcher.live() == {fine}


async def test_the_launcher_follows_its_jobs_through_watch_events() -> None:
    api = RecordingBatchApi()
    launcher = launcher_with(api, operator_settings())
    woken: list[int] = []
    launcher.on_change = lambda: woken.append(1)
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for job_id in (first, second, third):
        worker = await launcher.launch(job_id)
        assert worker.handle == f"Job {NAMESPACE}/{job_name(job_id)}"
        assert (worker.k8s_namespace, worker.k8s_job_name) == (NAMESPACE, job_name(job_id))
    assert launcher.live() == {first, second, third}
    launcher.observe("MODIFIED", job_body(first))  # still running
    launcher.observe("MODIFIED", job_body(second, DEADLINE))
    launcher.observe("DELETED", job_body(third))  # by kubectl, while it ran
    assert len(woken) == 2
    assert launcher.live() == {first}
    assert launcher.reap() == {
        second: "Job failed (DeadlineExceeded: Job was active longer than specified deadline)",
        third: "Job was deleted while it ran",
    }
    assert launcher.reap() == {}

    await launcher.stop(first)
    assert api.deleted == [(job_name(first), "Foreground")], "pods go first, so the Job shows the stop"
    assert launcher.live() == set()
    launcher.observe("MODIFIED", job_body(first, deleting=True))
    launcher.observe("DELETED", job_body(first))
    assert launcher.reap() == {}, "a Job we stopped was cancelled, not lost"

    # Not ours, or not a job id: ignored.
    launcher.observe("ADDED", {"metadata": {"name": "other", "labels": {"app": "x"}}})
    launcher.observe("ADDED", {"metadata": {"name": "odd", "labels": {JOB_ID_LABEL: "not-a-uuid"}}})
    assert launcher.live() == set()
    # Already there at start-up (an earlier operator's), running or finished while nobody watched.
    adopted, ended = uuid.uuid4(), uuid.uuid4()
    launcher.observe("ADDED", job_body(adopted))
    launcher.observe("ADDED", job_body(ended, COMPLETE))
    assert launcher.live() == {adopted}
    assert launcher.reap() == {ended: "Job succeeded"}
    await launcher.close()
    assert len(api.deleted) == 1, "closing the operator leaves running Jobs alone"


async def test_kopf_watches_our_jobs_into_the_launcher(migrated_database_url: str) -> None:
    """The registry kopf.operator() runs: what it watches, and where the events go."""
    launcher = launcher_with(RecordingBatchApi(), operator_settings())
    dispatcher = Dispatcher(migrated_database_url, launcher, operator_settings())
    registry = build_registry(launcher, dispatcher)
    # kopf's registry has no public listing; these are the objects kopf.operator() itself reads.
    watches = {str(handler.id): handler for handler in registry._watching.get_all_handlers()}
    assert set(watches) == {"jobs", "pods"}
    watch, pods = watches["jobs"], watches["pods"]
    assert watch.selector is not None
    assert pods.selector is not None
    assert (watch.selector.group, watch.selector.version, watch.selector.any_name) == ("batch", "v1", "jobs")
    assert (pods.selector.group, pods.selector.version, pods.selector.any_name) == ("", "v1", "pods")
    assert watch.labels == COMPONENT_LABELS, "only our Jobs, selected by the API server"
    assert pods.labels == COMPONENT_LABELS, "only our Jobs' pods"
    on_event: Any = watch.fn  # called as kopf calls it: keywords only, and we take just the event
    listed, finished = uuid.uuid4(), uuid.uuid4()
    await on_event(event={"type": None, "object": job_body(listed)})  # the watch's first listing
    await on_event(event={"type": "ADDED", "object": job_body(finished, COMPLETE)})
    assert launcher.live() == {listed}
    assert launcher.reap() == {finished: "Job succeeded"}
    activities = {str(handler.id): handler for handler in registry._activities.get_all_handlers()}
    assert set(activities) == {"login", "dispatching"}, "without a login handler kopf never connects"
    is_live: Any = activities["dispatching"].fn
    assert is_live() is False, "not live until the dispatch loop listens"
    dispatcher.ready.set()
    assert is_live() is True


@pytest.fixture
async def conn(migrated_database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    async with support.connection(migrated_database_url) as connection:
        yield connection


async def settled(conn: asyncpg.Connection[Any], job_id: uuid.UUID, seconds: float = 10) -> asyncpg.Record:
    for _ in range(int(seconds / 0.05)):
        row: asyncpg.Record | None = await conn.fetchrow("SELECT * FROM indexing_jobs WHERE id = $1", job_id)
        assert row is not None
        if row["status"] in ("failed", "completed", "cancelled"):
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not settle in {seconds} s")


async def until(check: Any, seconds: float = 10) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_the_operator_loop_turns_rows_into_jobs_and_jobs_into_rows(
    migrated_database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    """Dispatch, concurrency with adopted Jobs, a failed Job, a cancel and a refusal, on a real database."""
    api = RecordingBatchApi()
    launcher = launcher_with(api, operator_settings())
    # An earlier operator's Job is still running: it takes one of the two slots.
    earlier = uuid.uuid4()
    launcher.observe("ADDED", job_body(earlier))
    dispatcher = Dispatcher(migrated_database_url, launcher, operator_settings(), sweep_seconds=0.2)
    launcher.on_change = dispatcher.wake
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        first = await support.insert_job(conn, project_id="k8s", repo_url="https://github.com/pallets/click")
        second = await support.insert_job(conn, project_id="k8s", repo_url="https://github.com/psf/requests")
        await until(lambda: job_name(first) in api.created)
        await asyncio.sleep(0.5)
        assert job_name(second) not in api.created, "one slot was the earlier operator's Job"
        assert api.created[job_name(first)]["spec"]["template"]["spec"]["containers"][0]["args"][-1] == str(first)

        placed = await conn.fetchrow("SELECT k8s_namespace, k8s_job_name FROM indexing_jobs WHERE id = $1", first)
        assert placed is not None
        assert dict(placed) == {"k8s_namespace": NAMESPACE, "k8s_job_name": job_name(first)}, "for kubectl"

        launcher.observe("MODIFIED", job_body(earlier, COMPLETE))  # frees the slot
        await until(lambda: job_name(second) in api.created)

        # The pod of `first` never got to run: Kubernetes' deadline failed the Job.
        launcher.observe("MODIFIED", job_body(first, DEADLINE))
        row = await settled(conn, first)
        assert row["status"] == "failed"
        assert row["error_type"] == "WorkerExited"
        assert "DeadlineExceeded" in row["error_message"]

        # Cancelled by the user (as the gateway does): the Job is deleted.
        await conn.execute("UPDATE indexing_jobs SET status = 'cancelled', cancelled_at = now() WHERE id = $1", second)
        await until(lambda: (job_name(second), "Foreground") in api.deleted)

        # Kubernetes refuses the Job (quota, RBAC): the row says so, in the API server's words.
        api.refuse_create = api_error(403, "Forbidden", 'jobs.batch is forbidden: exceeded quota: "jobs"')
        refused = await support.insert_job(conn, project_id="k8s", repo_url="https://github.com/pallets/flask")
        row = await settled(conn, refused)
        assert row["status"] == "failed"
        assert row["error_type"] == "LaunchFailed"
        assert row["error_message"] == (
            "could not start the indexer: Kubernetes refused the indexer Job: 403 Forbidden:"
            ' jobs.batch is forbidden: exceeded quota: "jobs"'
        )
    finally:
        stop.set()
        await task
    assert launcher.live() == set()
    assert len(api.deleted) == 1, "stopping the operator deleted no Job"


async def test_an_api_server_that_cannot_answer_defers_jobs_instead_of_failing_them(
    migrated_database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    api = RecordingBatchApi()
    api.refuse_create = api_error(503, "Service Unavailable", "etcdserver: leader changed")
    launcher = launcher_with(api, operator_settings())
    # Claims lapse after half a second here (a minute by default), so the retry comes quickly.
    dispatcher = Dispatcher(
        migrated_database_url, launcher, operator_settings(), sweep_seconds=0.1, maintenance_seconds=0.2,
        stale_heartbeat_seconds=0.5,
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        job_id = await support.insert_job(conn, project_id="k8s-wait", repo_url="https://github.com/pallets/click")
        await until(lambda: dispatcher.stats.claims_released >= 1)
        row = await conn.fetchrow("SELECT status, error_message FROM indexing_jobs WHERE id = $1", job_id)
        assert row is not None
        assert (row["status"], row["error_message"]) == ("pending", None), "a 503 is not the job's fault"
        api.refuse_create = None  # the API server is back
        await until(lambda: job_name(job_id) in api.created)
    finally:
        stop.set()
        await task


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "KUBERNETES_SERVICE_HOST")}
    return subprocess.run(
        [sys.executable, "-m", "codebase_mcp.cli", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_operator_command_says_what_it_lacks(tmp_path: Path) -> None:
    unset = run_cli("operator", KUBECONFIG=str(tmp_path / "none"))
    assert unset.returncode == 1
    assert "set DATABASE_URL, INDEXER_IMAGE, INDEXER_DATABASE_SECRET" in unset.stderr
    configured = {"DATABASE_URL": SECRET_DSN, "INDEXER_IMAGE": "codebase-mcp:dev", "INDEXER_DATABASE_SECRET": "db"}
    nowhere = run_cli("operator", KUBECONFIG=str(tmp_path / "none"), **configured)
    assert nowhere.returncode == 1
    assert "no Kubernetes cluster to talk to" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr
    assert "hunter2" not in nowhere.stderr


def start_operator(health_port: int, env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """The operator, its output in a file (a pipe nobody reads could fill up and stall it)."""
    command = [sys.executable, "-m", "codebase_mcp.cli", "operator", "--health-port", str(health_port)]
    with log.open("w") as output:
        return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)


async def test_the_operator_process_against_an_api_server(
    migrated_database_url: str, conn: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    """`codebase-mcp operator` as a process: kubeconfig login, kopf's discovery and watch, Jobs created,
    followed and deleted, rows settled; SIGTERM leaves running Jobs alone."""
    health = find_free_port()
    with KubeApiStub("team") as api:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(api.kubeconfig())
        # A Job an earlier operator started, still running: adopted, and counted against the limit of 2.
        earlier = uuid.uuid4()
        api.jobs[job_name(earlier)] = job_body(earlier)
        env = {
            **{key: value for key, value in os.environ.items() if key != "KUBERNETES_SERVICE_HOST"},
            "DATABASE_URL": migrated_database_url,
            "KUBECONFIG": str(kubeconfig),
            "POD_NAMESPACE": "team",
            "INDEXER_IMAGE": "codebase-mcp:test",
            "INDEXER_DATABASE_SECRET": "codebase-db",
            "MAX_CONCURRENT_INDEXING_JOBS": "2",
        }
        log = tmp_path / "operator.log"
        operator = start_operator(health, env, log)
        try:
            await asyncio.to_thread(
                support.wait_until_ok, f"http://127.0.0.1:{health}/healthz", operator, log.read_text, 60
            )
            first = await support.insert_job(conn, project_id="proc", repo_url="https://github.com/pallets/click")
            second = await support.insert_job(conn, project_id="proc", repo_url="https://github.com/psf/requests")
            await asyncio.to_thread(api.wait_for, lambda: job_name(first) in api.jobs)
            await asyncio.sleep(1.0)
            assert job_name(second) not in api.jobs, "the adopted Job holds the second slot"
            created = api.jobs[job_name(first)]
            assert created["spec"]["template"]["spec"]["containers"][0]["args"] == ["indexer", "--job-id", str(first)]

            api.set_conditions(job_name(earlier), COMPLETE)  # seen through kopf's watch: the slot frees
            await asyncio.to_thread(api.wait_for, lambda: job_name(second) in api.jobs)

            api.set_conditions(job_name(first), DEADLINE)
            row = await settled(conn, first, 20)
            assert row["status"] == "failed"
            assert row["error_message"] == (
                "the indexer Job failed (DeadlineExceeded: Job was active longer than specified deadline)"
                " before finishing the job"
            )
            assert (row["k8s_namespace"], row["k8s_job_name"]) == ("team", job_name(first))

            cancel = "UPDATE indexing_jobs SET status = 'cancelled', cancelled_at = now() WHERE id = $1"
            await conn.execute(cancel, second)
            await asyncio.to_thread(api.wait_for, lambda: job_name(second) in api.deleted)

            third = await support.insert_job(conn, project_id="proc", repo_url="https://github.com/pallets/flask")
            await asyncio.to_thread(api.wait_for, lambda: job_name(third) in api.jobs)
            operator.terminate()
            await asyncio.to_thread(operator.wait, timeout=30)
            output = log.read_text()
            assert operator.returncode == 0, output[-3000:]
            assert job_name(third) not in api.deleted, "a running Job outlives the operator"
            assert "Traceback" not in output
            # kopf's dynamic scanning is off: it never asked for namespaces or CRDs cluster-wide.
            assert not [path for _, path in api.requests if "namespaces" in path and "/team/" not in path]
        finally:
            if operator.poll() is None:
                operator.kill()
                operator.wait()
