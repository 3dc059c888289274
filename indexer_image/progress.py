"""Keeping the job row true while the indexer works: progress, heartbeat, cancellation.

Phases and their share of the bar (the seed design's): scanning 0-10, chunking 10-50,
embedding 50-90, writing 90-100. Progress is written at most once per
PROGRESS_UPDATE_INTERVAL_SECONDS and never goes backwards; 100 is written only with `completed`.

A watcher task, on its own connection, looks at the row every CANCELLATION_CHECK_INTERVAL_SECONDS
and moves `heartbeat_at` even while one long statement or model batch runs. When the row says
`cancelled` it cancels the pipeline task, which stops at its next await (at most one batch).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from codebase_mcp import job_rows
from codebase_mcp.db.connect import connect
from codebase_mcp.jobs import IndexingJobStatus

# The indexer's logger: each progress write is also a log line, so `kubectl logs job/...` (and a
# local executor's log file) shows the job moving, not only its start and end.
log = logging.getLogger("codebase_mcp.indexer")
PHASES = {"scanning": (0, 10), "chunking": (10, 50), "embedding": (50, 90), "writing": (90, 100)}


class JobCancelledError(Exception):
    """The job's row was cancelled while the indexer worked."""


def phase_percentage(phase: str, done: int, total: int) -> int:
    start, end = PHASES[phase]
    if total <= 0:
        return start
    return start + (end - start) * min(done, total) // total


class ProgressReporter:
    """Throttled, monotonic progress writes to one job row."""

    def __init__(
        self,
        conn: asyncpg.Connection[Any],
        job_id: uuid.UUID,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._conn = conn
        self._job_id = job_id
        self._interval = interval
        self._clock = clock
        self._last_write: float | None = None
        self.percentage = 0
        self.message = ""
        self.counters: dict[str, int] = {"files_scanned": 0, "files_indexed": 0, "chunks_created": 0}
        self.writes = 0

    async def report(self, phase: str, done: int, total: int, message: str, *, force: bool = False) -> None:
        # 99 at most: 100 belongs to the `completed` transition, written with the index switch.
        self.percentage = max(self.percentage, min(99, phase_percentage(phase, done, total)))
        self.message = message
        now = self._clock()
        if not force and self._last_write is not None and now - self._last_write < self._interval:
            return
        self._last_write = now
        self.writes += 1
        log.info("%d%% %s", self.percentage, message, extra={"job_id": str(self._job_id), "phase": phase})
        if not await job_rows.record_progress(self._conn, self._job_id, self.percentage, message, self.counters):
            raise JobCancelledError()


@dataclass
class WatchState:
    cancel_requested: bool = False
    terminated: bool = False
    lost_database: BaseException | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)


async def watch(dsn: str, job_id: uuid.UUID, interval: float, target: asyncio.Task[Any], state: WatchState) -> None:
    """Heartbeat and cancellation check every `interval` seconds until cancelled."""
    try:
        conn = await connect(dsn, vector=False)
    except (OSError, asyncpg.PostgresError) as error:
        state.lost_database = error
        target.cancel()
        return
    try:
        while True:
            await asyncio.sleep(interval)
            if not await job_rows.heartbeat(conn, job_id):
                # Not running any more: cancelled by a user (stop the pipeline), or completed by the
                # pipeline itself (it is cleaning up: leave it alone).
                if await job_rows.status_of(conn, job_id) in {IndexingJobStatus.CANCELLED, None}:
                    state.cancel_requested = True
                    target.cancel()
                return
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        state.lost_database = error
        target.cancel()
    finally:
        await conn.close(timeout=5)
