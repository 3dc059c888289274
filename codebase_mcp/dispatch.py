"""The dispatch loop every executor shares: claim pending jobs, start workers, stop cancelled ones.

An executor is this loop plus a Launcher: the local executor starts `codebase-mcp indexer` as a
subprocess (mcp_gateway/local_executor.py); the Kubernetes operator starts a Job
(operator/codebase_operator/launcher.py). The loop:

- wakes on NOTIFY from the indexing_jobs trigger, and also every `sweep_seconds` (a missed
  notification, for instance across a database restart, costs at most one sweep);
- reaps finished workers, and fails a job whose worker exited without settling its row;
- stops the workers of jobs that were cancelled (SIGTERM, then SIGKILL after a grace period);
- claims as many pending jobs as it has free slots (MAX_CONCURRENT_INDEXING_JOBS) and starts them;
- now and then: fails running jobs whose heartbeat went stale with no live worker, releases
  pending claims of executors that died, and deletes finished jobs past JOB_STATUS_RETENTION_DAYS.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from codebase_mcp import job_rows
from codebase_mcp.db.connect import connect
from codebase_mcp.jobs import IndexingJobStatus
from codebase_mcp.settings import Settings

log = logging.getLogger("codebase_mcp.dispatch")
CHANNEL = "indexing_jobs"


class LaunchError(Exception):
    """A worker could not be started; the message says why, for the job's row."""


class LaunchDeferredError(Exception):
    """Workers cannot be started just now (the cluster's API server is unreachable or overloaded):
    the job stays pending, its claim lapses, and a later pass dispatches it again."""


@dataclass(frozen=True)
class Worker:
    """What an executor started for a job: a handle for logs, and where to look in Kubernetes."""

    handle: str  # "pid 1234", "Job codebase/codebase-index-..."
    k8s_namespace: str | None = None
    k8s_job_name: str | None = None


class Launcher(Protocol):
    """Starts and stops the workers of one executor."""

    async def launch(self, job_id: uuid.UUID) -> Worker:
        """Start a worker for the job (LaunchError or OSError if it cannot)."""

    async def stop(self, job_id: uuid.UUID) -> None:
        """Stop the job's worker (gracefully first); once it returns the job is no longer live."""

    def live(self) -> set[uuid.UUID]:
        """Jobs whose worker is still running."""

    def reap(self) -> dict[uuid.UUID, str]:
        """Workers that ended since the last call, each with how it ended ("exited with status 1")."""

    async def close(self) -> None:
        """The executor is stopping: stop the workers that cannot outlive it."""


@dataclass
class DispatchStats:
    launched: int = 0
    stopped: int = 0
    worker_deaths: int = 0
    orphans_failed: int = 0
    claims_released: int = 0
    purged: int = 0
    dispatch_latency: list[float] = field(default_factory=list)


def executor_identity() -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"


class Dispatcher:
    def __init__(
        self,
        dsn: str,
        launcher: Launcher,
        settings: Settings,
        *,
        sweep_seconds: float = 5.0,
        maintenance_seconds: float = 60.0,
        stale_heartbeat_seconds: float | None = None,
        wake: asyncio.Event | None = None,
    ) -> None:
        self.dsn = dsn
        self.launcher = launcher
        self.settings = settings
        self.identity = executor_identity()
        self.sweep_seconds = sweep_seconds
        self.maintenance_seconds = maintenance_seconds
        # A live worker heartbeats every CANCELLATION_CHECK_INTERVAL_SECONDS; allow several misses.
        self.stale_heartbeat_seconds = stale_heartbeat_seconds or max(
            60.0, 6 * settings.cancellation_check_interval_seconds
        )
        self.stats = DispatchStats()
        # Set by NOTIFY, and by the launcher when one of its workers changes (the executor gives
        # the launcher `wake.set` when it makes it).
        self._wake = wake or asyncio.Event()
        self._last_maintenance = float("-inf")
        self.ready = asyncio.Event()

    def _on_notify(self, *args: Any) -> None:
        self._wake.set()

    def wake(self) -> None:
        """Run a pass now (a worker's state changed), not at the next sweep."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until `stop` is set; then stop every worker this executor started."""
        conn = await connect(self.dsn, vector=False)
        listener = await connect(self.dsn, vector=False)
        try:
            await listener.add_listener(CHANNEL, self._on_notify)
            self.ready.set()
            while not stop.is_set():
                # Cleared before the pass, not after: a NOTIFY that lands during the pass must
                # trigger another one rather than wait for the sweep.
                self._wake.clear()
                try:
                    await self.tick(conn)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                    log.warning("dispatch pass failed, retrying: %s", error)
                    conn, listener = await self._reconnect(conn, listener)
                waiters = [asyncio.create_task(self._wake.wait()), asyncio.create_task(stop.wait())]
                try:
                    await asyncio.wait(waiters, timeout=self.sweep_seconds, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
        finally:
            await self.launcher.close()
            await conn.close(timeout=5)
            await listener.close(timeout=5)

    async def _reconnect(
        self, conn: asyncpg.Connection[Any], listener: asyncpg.Connection[Any]
    ) -> tuple[asyncpg.Connection[Any], asyncpg.Connection[Any]]:
        for old in (conn, listener):
            old.terminate()
        delay = 0.5
        while True:
            try:
                conn = await connect(self.dsn, vector=False)
                listener = await connect(self.dsn, vector=False)
                await listener.add_listener(CHANNEL, self._on_notify)
                return conn, listener
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def tick(self, conn: asyncpg.Connection[Any]) -> None:
        await self._settle_finished(conn)
        await self._stop_cancelled(conn)
        free = self.settings.max_concurrent_indexing_jobs - len(self.launcher.live())
        for job_id in await job_rows.claim_for_dispatch(conn, self.identity, free):
            started = time.monotonic()
            try:
                worker = await self.launcher.launch(job_id)
            except LaunchDeferredError as error:
                log.warning("job %s: not started yet: %s", job_id, error, extra={"job_id": str(job_id)})
                break  # the others claimed in this pass wait too; their claims lapse the same way
            except (LaunchError, OSError) as error:
                await job_rows.fail(
                    conn,
                    job_id,
                    message=f"could not start the indexer: {error}",
                    error_type="LaunchFailed",
                    unstarted_too=True,
                )
                continue
            self.stats.launched += 1
            self.stats.dispatch_latency.append(time.monotonic() - started)
            if worker.k8s_job_name:  # so get_indexing_status can say what to `kubectl describe`
                await job_rows.record_kubernetes_job(conn, job_id, worker.k8s_namespace, worker.k8s_job_name)
            log.info("job %s started (%s)", job_id, worker.handle, extra={"job_id": str(job_id)})
        if time.monotonic() - self._last_maintenance >= self.maintenance_seconds:
            await self.maintain(conn)

    async def _settle_finished(self, conn: asyncpg.Connection[Any]) -> None:
        for job_id, ending in self.launcher.reap().items():
            # A worker settles its own row; if it is still pending or running, the worker died.
            if await job_rows.fail(
                conn,
                job_id,
                message=f"the indexer {ending} before finishing the job",
                error_type="WorkerExited",
                unstarted_too=True,
            ):
                self.stats.worker_deaths += 1
                log.error("job %s: the indexer %s", job_id, ending, extra={"job_id": str(job_id)})

    async def _stop_cancelled(self, conn: asyncpg.Connection[Any]) -> None:
        live = list(self.launcher.live())
        if not live:
            return
        for job_id, status in (await job_rows.statuses(conn, live)).items():
            if status is IndexingJobStatus.CANCELLED:
                try:
                    await self.launcher.stop(job_id)
                except LaunchError as error:  # the worker is still live: the next pass tries again
                    log.warning("job %s: could not stop its worker: %s", job_id, error, extra={"job_id": str(job_id)})
                    continue
                self.stats.stopped += 1
                log.info("job %s cancelled: worker stopped", job_id, extra={"job_id": str(job_id)})

    async def maintain(self, conn: asyncpg.Connection[Any]) -> None:
        self._last_maintenance = time.monotonic()
        orphans = await job_rows.recover_orphans(conn, self.stale_heartbeat_seconds, self.launcher.live())
        self.stats.orphans_failed += orphans["failed"]
        self.stats.claims_released += orphans["released"]
        self.stats.purged += await job_rows.purge_finished(conn, self.settings.job_status_retention_days)
        if orphans["failed"] or orphans["released"]:
            log.warning("recovered orphaned jobs: %s", orphans)
