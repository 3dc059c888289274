"""`codebase-mcp operator`: pending indexing_jobs rows become Kubernetes Jobs.

The reconcile loop is the dispatch loop every executor shares (codebase_mcp/dispatch.py): it wakes
on PostgreSQL NOTIFY, claims pending rows with FOR UPDATE SKIP LOCKED, and stops the workers of
cancelled jobs. Here its workers are Jobs (launcher.py), and kopf watches them, so a Job that ends
settles its row at once. PostgreSQL stays the only record of a job's state: the operator keeps
nothing that a restart would lose.

One operator runs per namespace (kopf's standalone mode: no peering objects, so no cluster-wide
rights). It needs, in its own namespace only: jobs get/list/watch/create/delete, pods
get/list/watch (why a pod cannot start), events create/patch/list/watch (its decisions on each Job,
and a Job's FailedCreate reasons); the chart's Role (charts/codebase-mcp/templates/operator.yaml).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import kopf
import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from codebase_mcp.dispatch import Dispatcher
from codebase_mcp.errors import UserError
from codebase_mcp.settings import Settings
from codebase_operator.launcher import REQUEST_TIMEOUT_SECONDS, KubernetesLauncher, describe_api_error
from codebase_operator.manifests import COMPONENT_LABELS

log = logging.getLogger("codebase_operator")
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class OperatorConfigError(UserError):
    """The operator cannot start as configured; the message says what to set."""


def check_settings(settings: Settings) -> None:
    missing = [
        name
        for name, value in (
            ("DATABASE_URL", settings.database_url),
            ("INDEXER_IMAGE", settings.indexer_image),
            ("INDEXER_DATABASE_SECRET", settings.indexer_database_secret),
        )
        if not value
    ]
    if missing:
        raise OperatorConfigError(
            f"set {', '.join(missing)}: the operator needs the database, the image its indexer Jobs run, and the"
            " Secret they read DATABASE_URL from (docs/kubernetes.md)"
        )


def kubernetes_api() -> tuple[client.ApiClient, str]:
    """A client for the cluster we run in (or the kubeconfig's), and the namespace it implies
    (the pod's own, or the kubeconfig context's, as kubectl would use)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]  # the client leaves it unannotated
        return client.ApiClient(), SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except config.ConfigException:
        pass
    try:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError) as error:
        raise OperatorConfigError(
            f"no Kubernetes cluster to talk to: not running in a pod, and no usable kubeconfig ({error});"
            " set KUBECONFIG"
        ) from None
    _, context = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
    return client.ApiClient(), (context or {}).get("context", {}).get("namespace") or "default"


async def adopt_existing(api: client.BatchV1Api, launcher: KubernetesLauncher, namespace: str) -> None:
    """Follow the Jobs an earlier operator started, before claiming anything: the concurrency limit
    counts them, and those that ended while no operator ran settle their rows."""
    selector = ",".join(f"{key}={value}" for key, value in COMPONENT_LABELS.items())
    try:
        # The raw JSON, as kopf's watch delivers it, rather than the client's models.
        response: Any = await asyncio.to_thread(
            api.list_namespaced_job,
            namespace,
            label_selector=selector,
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT_SECONDS,
        )
    except ApiException as error:
        raise OperatorConfigError(f"cannot list Jobs in namespace {namespace!r}: {describe_api_error(error)}") from None
    except urllib3.exceptions.HTTPError as error:
        host = api.api_client.configuration.host
        raise OperatorConfigError(f"cannot reach the Kubernetes API server at {host}: {error}") from None
    for body in json.loads(response.data)["items"]:
        launcher.observe("ADDED", body)


async def job_owner(core: client.CoreV1Api, namespace: str, name: str) -> client.V1OwnerReference:
    """The ConfigMap the indexer Jobs will belong to: Kubernetes' garbage collector deletes them
    (and their pods) when it goes, as `helm uninstall` does."""
    try:
        anchor: Any = await asyncio.to_thread(
            core.read_namespaced_config_map, name, namespace, _request_timeout=REQUEST_TIMEOUT_SECONDS
        )
    except ApiException as error:
        raise OperatorConfigError(
            f"INDEXER_JOB_OWNER: cannot read ConfigMap {namespace}/{name}: {describe_api_error(error)}"
        ) from None
    return client.V1OwnerReference(api_version="v1", kind="ConfigMap", name=name, uid=anchor.metadata.uid)


def build_registry(launcher: KubernetesLauncher, dispatcher: Dispatcher) -> kopf.OperatorRegistry:
    """What kopf does for us: log in, watch our Jobs (into the launcher), answer the liveness probe."""
    registry = kopf.OperatorRegistry()

    # kopf's own registry would add this; an explicit one must: the credentials the kubernetes
    # client found (in-cluster service account, or the kubeconfig), as the launcher uses them.
    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.event("batch", "v1", "jobs", id="jobs", labels=COMPONENT_LABELS, registry=registry)
    async def job_changed(*, event: kopf.RawEvent, **_: Any) -> None:
        # The type is None for the objects of the watch's first listing.
        launcher.observe(event.get("type") or "ADDED", dict(event["object"]))

    # The Jobs' pods carry the same labels: why one cannot start, how one failed (OOMKilled).
    @kopf.on.event("", "v1", "pods", id="pods", labels=COMPONENT_LABELS, registry=registry)
    async def pod_changed(*, event: kopf.RawEvent, **_: Any) -> None:
        launcher.observe_pod(event.get("type") or "ADDED", dict(event["object"]))

    @kopf.on.probe(id="dispatching", registry=registry)
    def dispatching(**_: Any) -> bool:
        return dispatcher.ready.is_set()

    return registry


def kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # kopf would otherwise list namespaces and watch CRDs cluster-wide to follow new resources; one
    # namespace and the built-in Jobs need neither, and the Role grants neither (docs/kubernetes.md).
    settings.scanning.disabled = True
    # The API server ends each watch after this long and kopf resumes it: a connection that died
    # without a word (a load balancer's idle timeout) cannot leave the operator blind for long.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    return settings


async def run_operator(settings: Settings, *, health_port: int) -> None:
    """Run until SIGTERM or SIGINT (kopf handles both), then leave the Jobs running."""
    check_settings(settings)
    assert settings.database_url is not None  # checked above
    # kopf logs every handled event and the kubelet's every probe at INFO: one line per Job change
    # is already ours (codebase_mcp.dispatch), so theirs only when something is wrong.
    for noisy in ("kopf.objects", "kopf.activities.probe", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    api_client, own_namespace = kubernetes_api()
    namespace = settings.pod_namespace or own_namespace
    batch = client.BatchV1Api(api_client)
    core = client.CoreV1Api(api_client)
    wake = asyncio.Event()
    launcher = KubernetesLauncher(batch, core, namespace, settings, on_change=wake.set)
    if settings.indexer_job_owner:
        launcher.owner = await job_owner(core, namespace, settings.indexer_job_owner)
    await adopt_existing(batch, launcher, namespace)
    dispatcher = Dispatcher(settings.database_url, launcher, settings, wake=wake)
    log.info("operator for namespace %s: %d indexer Jobs still running", namespace, len(launcher.live()))

    registry = build_registry(launcher, dispatcher)
    stop_dispatching = asyncio.Event()
    stop_watching = asyncio.Event()
    watching = asyncio.create_task(
        kopf.operator(
            registry=registry,
            settings=kopf_settings(),
            namespaces=[namespace],
            standalone=True,
            liveness_endpoint=f"http://0.0.0.0:{health_port}/healthz",
            stop_flag=stop_watching,
        )
    )
    dispatching_task = asyncio.create_task(dispatcher.run(stop_dispatching))
    startups = asyncio.create_task(launcher.watch_startups(stop_dispatching))
    try:
        await asyncio.wait({watching, dispatching_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Whichever ended first (kopf on a signal, the loop on an error) ends the other.
        stop_dispatching.set()
        stop_watching.set()
        await asyncio.gather(watching, dispatching_task, startups, return_exceptions=True)
    for task in (dispatching_task, watching):
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error
