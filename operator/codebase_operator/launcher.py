"""The operator's launcher: each indexing job runs as a Kubernetes Job in the operator's namespace.

The dispatch loop (codebase_mcp/dispatch.py) claims rows and calls launch/stop/live/reap, as it does
for the local executor. What the Jobs are doing comes from kopf's watch on them (`observe`), not
from polling: a Job that ends wakes the loop at once, and after an operator restart the watch's
first listing re-adopts the Jobs still running, which carry on undisturbed (they settle their own
rows; nothing about an operator restart should cost a user their indexing run).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from codebase_mcp.dispatch import LaunchDeferredError, LaunchError, Worker
from codebase_mcp.settings import Settings
from codebase_operator.manifests import STOP_GRACE_SECONDS, indexer_job, job_id_of, job_name

# A call to the API server that takes longer has failed: the dispatch loop must not hang on it.
REQUEST_TIMEOUT_SECONDS = 30
# Answers that say "not now" rather than "no": too many requests, or the server in trouble.
RETRY_LATER_STATUSES = {429, 500, 502, 503, 504}


@dataclass
class _Tracked:
    ending: str | None = None  # how the Job ended, once it has
    stopping: bool = False  # we deleted it (cancelled): it is not live, and its end is not news


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


def describe_api_error(error: ApiException) -> str:
    """The API server's own words (its Status message), not the client's dump of headers."""
    try:
        message = json.loads(error.body or "{}").get("message")
    except ValueError:
        message = None
    return f"{error.status} {error.reason}: {message or error.body or 'no details'}"


class KubernetesLauncher:
    def __init__(self, api: client.BatchV1Api, namespace: str, settings: Settings) -> None:
        self.api = api
        self.namespace = namespace
        self.settings = settings
        self.on_change: Callable[[], None] = lambda: None
        self._jobs: dict[uuid.UUID, _Tracked] = {}

    async def launch(self, job_id: uuid.UUID) -> Worker:
        try:
            manifest = indexer_job(job_id, self.namespace, self.settings)
        except ValueError as error:
            raise LaunchError(str(error)) from None
        try:
            await asyncio.to_thread(
                self.api.create_namespaced_job, self.namespace, manifest, _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
        except ApiException as error:
            if error.status in RETRY_LATER_STATUSES:
                raise LaunchDeferredError(f"the API server answered {describe_api_error(error)}") from None
            # 409: an operator that died between creating the Job and reporting it already made it.
            if error.status != 409:
                raise LaunchError(f"Kubernetes refused the indexer Job: {describe_api_error(error)}") from None
        except urllib3.exceptions.HTTPError as error:  # unreachable, or no answer in time
            raise LaunchDeferredError(f"the API server did not answer: {error}") from None
        self._jobs.setdefault(job_id, _Tracked())
        name = job_name(job_id)
        return Worker(f"Job {self.namespace}/{name}", k8s_namespace=self.namespace, k8s_job_name=name)

    async def stop(self, job_id: uuid.UUID) -> None:
        tracked = self._jobs.setdefault(job_id, _Tracked())
        tracked.stopping = True
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
        ending = job_ending(body.get("status"))
        if ending is not None and tracked.ending is None:
            tracked.ending = ending
            self.on_change()

    def live(self) -> set[uuid.UUID]:
        return {job_id for job_id, tracked in self._jobs.items() if tracked.ending is None and not tracked.stopping}

    def reap(self) -> dict[uuid.UUID, str]:
        done = {job_id: t.ending for job_id, t in self._jobs.items() if t.ending is not None and not t.stopping}
        for job_id in done:
            del self._jobs[job_id]
        return {job_id: ending for job_id, ending in done.items() if ending is not None}

    async def close(self) -> None:
        """Leaves the Jobs running: they settle their own rows, and the next operator adopts them."""
