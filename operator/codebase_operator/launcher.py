"""The operator's launcher: each indexing job runs as a Kubernetes Job in the operator's namespace.

The dispatch loop (codebase_mcp/dispatch.py) claims rows and calls launch/stop/live/reap, as it does
for the local executor. What the Jobs are doing comes from kopf's watch on them (`observe`), not
from polling: a Job that ends wakes the loop at once, and after an operator restart the watch's
first listing re-adopts the Jobs still running, which carry on undisturbed (they settle their own
rows; nothing about an operator restart should cost a user their indexing run).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from codebase_mcp.dispatch import LaunchDeferredError, LaunchError, Worker
from codebase_mcp.settings import Settings
from codebase_operator.manifests import STOP_GRACE_SECONDS, indexer_job, job_id_of, job_name

log = logging.getLogger("codebase_operator")
# A call to the API server that takes longer has failed: the dispatch loop must not hang on it.
REQUEST_TIMEOUT_SECONDS = 30
# Answers that say "not now" rather than "no": too many requests, or the server in trouble.
RETRY_LATER_STATUSES = {429, 500, 502, 503, 504}
# Container states in which a pod waits for something that will not come by itself; Kubernetes
# keeps such a pod Pending for ever (backoffLimit never counts it), so the startup timeout must.
STUCK_REASONS = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
}
# A Job with no pod after this long: its Events say why (quota, admission) better than silence.
NO_POD_EVENTS_AFTER_SECONDS = 5.0
STARTUP_CHECK_SECONDS = 2.0
MESSAGE_LIMIT = 500


@dataclass
class _Tracked:
    ending: str | None = None  # how the Job ended, once it has
    stopping: bool = False  # we deleted it (cancelled): it is not live, and its end is not news
    since: float = field(default_factory=time.monotonic)  # launched, or adopted by this operator
    uid: str | None = None  # the Job's, for the Events we post on it
    started: bool = False  # its pod got as far as running its container
    pod_seen: bool = False
    waiting: str | None = None  # why its pod is not running yet, in Kubernetes' words
    pod_failure: str | None = None  # how its container ended, when it did not succeed


def job_ending(status: dict[str, Any] | None) -> str | None:
    """How a Job ended, from its status (None while it runs): 'Job succeeded' or the failure's reason."""
    for condition in (status or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "Job succeeded"
        if condition.get("type") in ("Failed", "FailureTarget"):
            reason = condition.get("reason") or "Failed"
            message = condition.get("message")
            return f"Job failed ({reason}: {message})" if message else f"Job failed ({reason})"
    return None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def pod_state(status: dict[str, Any] | None) -> tuple[bool, str | None, str | None]:
    """(started, waiting, failure) of an indexer pod, from its status: whether its container got to
    run, why it is stuck (Kubernetes' reason and message), how it ended when it failed."""
    status = status or {}
    started = status.get("phase") in ("Running", "Succeeded", "Failed")
    waiting = failure = None
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            waiting = _short(f"{condition.get('reason') or 'Unschedulable'}: {condition.get('message') or ''}")
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if "running" in state:
            started = True
        stuck = state.get("waiting") or {}
        if stuck.get("reason") in STUCK_REASONS:
            waiting = _short(f"{stuck['reason']}: {stuck.get('message') or ''}")
        ended = state.get("terminated") or {}
        if ended:
            started = True
            if ended.get("exitCode") != 0:
                reason = ended.get("reason") or "failed"
                words = f"container {container.get('name')} {reason}, exit code {ended.get('exitCode')}"
                message = ended.get("message")
                failure = _short(f"{words}: {message}" if message else words)
    return started, waiting, failure


def describe_api_error(error: ApiException) -> str:
    """The API server's own words (its Status message), not the client's dump of headers."""
    try:
        message = json.loads(error.body or "{}").get("message")
    except ValueError:
        message = None
    return f"{error.status} {error.reason}: {message or error.body or 'no details'}"


class KubernetesLauncher:
    def __init__(
        self,
        api: client.BatchV1Api,
        core: client.CoreV1Api,
        namespace: str,
        settings: Settings,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.api = api
        self.core = core  # pods' and Jobs' Events
        self.namespace = namespace
        self.settings = settings
        self.on_change = on_change  # wakes the dispatch loop: a Job ended, a pod failed
        self._jobs: dict[uuid.UUID, _Tracked] = {}
        self._instance = socket.gethostname()
        self._background: set[asyncio.Task[None]] = set()
        self.owner: client.V1OwnerReference | None = None  # what the Jobs belong to (INDEXER_JOB_OWNER)

    async def launch(self, job_id: uuid.UUID) -> Worker:
        try:
            manifest = indexer_job(job_id, self.namespace, self.settings, self.owner)
        except ValueError as error:
            raise LaunchError(str(error)) from None
        # Followed before it exists: the watch may deliver the new Job while the create call is
        # still in flight, and an unknown Job would read as one an earlier operator left running.
        fresh = job_id not in self._jobs
        tracked = self._jobs.setdefault(job_id, _Tracked())
        created: Any = None
        try:
            created = await asyncio.to_thread(
                self.api.create_namespaced_job, self.namespace, manifest, _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
        except ApiException as error:
            # 409: an operator that died between creating the Job and reporting it already made it.
            if error.status != 409:
                if fresh:
                    self._jobs.pop(job_id, None)
                if error.status in RETRY_LATER_STATUSES:
                    raise LaunchDeferredError(f"the API server answered {describe_api_error(error)}") from None
                raise LaunchError(f"Kubernetes refused the indexer Job: {describe_api_error(error)}") from None
        except urllib3.exceptions.HTTPError as error:  # unreachable, or no answer in time
            if fresh:
                self._jobs.pop(job_id, None)
            raise LaunchDeferredError(f"the API server did not answer: {error}") from None
        name = job_name(job_id)
        if created is not None:
            tracked.uid = created.metadata.uid
            await self.post_event(job_id, "Claimed", f"indexing job {job_id} claimed from PostgreSQL; its pod follows")
        return Worker(f"Job {self.namespace}/{name}", k8s_namespace=self.namespace, k8s_job_name=name)

    async def stop(self, job_id: uuid.UUID) -> None:
        tracked = self._jobs.setdefault(job_id, _Tracked())
        tracked.stopping = True
        await self.post_event(job_id, "CancelRequested", "the job was cancelled: deleting this Job and its pod")
        try:
            # Foreground: the Job object stays until its pod is gone, so `kubectl get jobs` shows
            # the stop in progress; the pod gets SIGTERM and its grace period to settle its row.
            await asyncio.to_thread(
                self.api.delete_namespaced_job,
                job_name(job_id),
                self.namespace,
                propagation_policy="Foreground",
                grace_period_seconds=STOP_GRACE_SECONDS,
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            )
        except ApiException as error:
            if error.status == 404:  # already gone: there is nothing left to follow
                self._jobs.pop(job_id, None)
                return
            tracked.stopping = False  # still running: the next pass tries again
            raise LaunchError(f"could not delete the indexer Job: {describe_api_error(error)}") from None
        except urllib3.exceptions.HTTPError as error:
            tracked.stopping = False
            raise LaunchError(f"could not delete the indexer Job: the API server did not answer: {error}") from None

    def observe(self, event_type: str, body: dict[str, Any]) -> None:
        """A watch event for one of our Jobs (kopf's @on.event with our labels)."""
        metadata = body.get("metadata") or {}
        job_id = job_id_of(metadata.get("labels"))
        if job_id is None:
            return
        tracked = self._jobs.get(job_id)
        if event_type == "DELETED":
            if tracked is None:
                return
            if tracked.stopping:
                del self._jobs[job_id]  # the stop we asked for is done
            elif tracked.ending is None:
                tracked.ending = "Job was deleted while it ran"  # by someone else: kubectl, a namespace
            self.on_change()
            return
        if tracked is None:
            # Listed at start-up, or created by an earlier operator: ours to follow from now on.
            tracked = self._jobs[job_id] = _Tracked(stopping=metadata.get("deletionTimestamp") is not None)
            tracked.uid = metadata.get("uid")
            if not tracked.stopping and job_ending(body.get("status")) is None:
                self._post_soon(job_id, "Adopted", "running Job adopted by a newly started operator")
        tracked.uid = tracked.uid or metadata.get("uid")
        ending = job_ending(body.get("status"))
        if ending is not None and tracked.ending is None:
            # Kubernetes says the Job failed; the pod says why (OOMKilled, the exit code, its log tail).
            if tracked.pod_failure and not ending.startswith("Job succeeded"):
                ending = f"{ending}; {tracked.pod_failure}"
            tracked.ending = ending
            self.on_change()

    def observe_pod(self, event_type: str, body: dict[str, Any]) -> None:
        """A watch event for one of our Jobs' pods: whether it started, why not, how it failed."""
        job_id = job_id_of((body.get("metadata") or {}).get("labels"))
        tracked = self._jobs.get(job_id) if job_id is not None else None
        if tracked is None or event_type == "DELETED":
            return
        started, waiting, failure = pod_state(body.get("status"))
        tracked.pod_seen = True
        tracked.started = tracked.started or started
        tracked.waiting = None if tracked.started else waiting
        tracked.pod_failure = failure or tracked.pod_failure

    async def check_startups(self) -> None:
        """Fail the jobs whose pod has not started within INDEXER_STARTUP_TIMEOUT_SECONDS, with the
        reason Kubernetes gives, and delete their Jobs: Kubernetes itself waits for ever."""
        timeout = self.settings.indexer_startup_timeout_seconds
        now = time.monotonic()
        for job_id, tracked in list(self._jobs.items()):
            if tracked.started or tracked.stopping or tracked.ending is not None:
                continue
            age = now - tracked.since
            if not tracked.pod_seen and age >= min(NO_POD_EVENTS_AFTER_SECONDS, timeout):
                tracked.waiting = await self._why_no_pod(job_id) or tracked.waiting
            if age < timeout:
                continue
            why = tracked.waiting or "no pod was created"
            # Decided before the delete: its watch event may arrive while the call is in flight,
            # and must not read as a Job deleted by someone else.
            tracked.ending = f"Job failed (StartupTimeout: its pod did not start within {timeout} s: {why})"
            await self.post_event(
                job_id, "StartupTimedOut", f"its pod did not start within {timeout} s: {why}", warn=True
            )
            try:
                await asyncio.to_thread(
                    self.api.delete_namespaced_job,
                    job_name(job_id),
                    self.namespace,
                    propagation_policy="Background",
                    _request_timeout=REQUEST_TIMEOUT_SECONDS,
                )
            except ApiException as error:
                if error.status != 404:
                    log.warning("job %s: could not delete its Job: %s", job_id, describe_api_error(error))
            except urllib3.exceptions.HTTPError as error:
                log.warning("job %s: could not delete its Job: %s", job_id, error)
            self.on_change()

    async def watch_startups(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.check_startups()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STARTUP_CHECK_SECONDS)

    async def _why_no_pod(self, job_id: uuid.UUID) -> str | None:
        """The latest FailedCreate Event of a Job that has no pod: a quota or an admission refusal."""
        try:
            events: Any = await asyncio.to_thread(
                self.core.list_namespaced_event,
                self.namespace,
                field_selector=f"involvedObject.kind=Job,involvedObject.name={job_name(job_id)}",
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            )
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            log.warning("job %s: cannot read its Job's events: %s", job_id, error)
            return None
        failed = [event for event in events.items if event.reason == "FailedCreate"]
        if not failed:
            return None
        latest = max(
            failed, key=lambda event: event.last_timestamp or event.event_time or event.metadata.creation_timestamp
        )
        return _short(f"FailedCreate: {latest.message}")

    def _post_soon(self, job_id: uuid.UUID, reason: str, message: str) -> None:
        try:
            task = asyncio.get_running_loop().create_task(self.post_event(job_id, reason, message))
        except RuntimeError:  # no loop: a synchronous caller (tests)
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def post_event(self, job_id: uuid.UUID, reason: str, message: str, *, warn: bool = False) -> None:
        """A Kubernetes Event on the job's Job, so `kubectl describe job` tells what the operator
        decided. Best effort: an Event that cannot be posted changes nothing else."""
        tracked = self._jobs.get(job_id)
        now = datetime.datetime.now(datetime.UTC)
        name = job_name(job_id)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{name}.", namespace=self.namespace),
            involved_object=client.V1ObjectReference(
                api_version="batch/v1",
                kind="Job",
                name=name,
                namespace=self.namespace,
                uid=tracked.uid if tracked else None,
            ),
            reason=reason,
            message=_short(message),
            type="Warning" if warn else "Normal",
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component="codebase-mcp-operator"),
            reporting_component="codebase-mcp-operator",
            reporting_instance=self._instance,
        )
        try:
            await asyncio.to_thread(
                self.core.create_namespaced_event, self.namespace, event, _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            log.warning("job %s: could not post Event %s: %s", job_id, reason, error)

    def live(self) -> set[uuid.UUID]:
        return {job_id for job_id, tracked in self._jobs.items() if tracked.ending is None and not tracked.stopping}

    def reap(self) -> dict[uuid.UUID, str]:
        done = {job_id: t.ending for job_id, t in self._jobs.items() if t.ending is not None and not t.stopping}
        for job_id in done:
            del self._jobs[job_id]
        return {job_id: ending for job_id, ending in done.items() if ending is not None}

    async def close(self) -> None:
        """Leaves the Jobs running: they settle their own rows, and the next operator adopts them."""
