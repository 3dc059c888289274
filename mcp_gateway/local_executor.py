"""The local executor: the dispatch loop with a launcher that runs each job as a
`codebase-mcp indexer` subprocess, assembled here as the operator is in codebase_operator/run.py.

Used when there is no cluster (`codebase-mcp dev`, `gateway --local-executor`), for as long as the
gateway serves (its lifespan). Each worker's output goes to CODEBASE_MCP_HOME/logs/job-<id>.log.
A worker that exits wakes the loop at once. Stopping sends SIGTERM, which the indexer handles by
rolling back and settling its row, then SIGKILL if it has not exited after the grace period.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import BinaryIO

from codebase_mcp.dispatch import Dispatcher, Worker
from codebase_mcp.settings import Settings, indexer_environment

STOP_GRACE_SECONDS = 10.0


def indexer_command() -> list[str]:
    """The indexer of this very installation (the interpreter running us)."""
    return [sys.executable, "-m", "codebase_mcp.cli", "indexer", "--job-id"]


class SubprocessLauncher:
    def __init__(
        self,
        log_dir: Path,
        *,
        command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        grace_seconds: float = STOP_GRACE_SECONDS,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.log_dir = log_dir
        self.on_change = on_change
        self._exits: set[asyncio.Task[None]] = set()
        self.command = list(command) if command is not None else indexer_command()
        self.env = {**os.environ, **(env or {})}
        self.grace_seconds = grace_seconds
        self._workers: dict[uuid.UUID, asyncio.subprocess.Process] = {}

    def _open_log(self, job_id: uuid.UUID) -> BinaryIO:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return open(self.log_dir / f"job-{job_id}.log", "ab")

    async def launch(self, job_id: uuid.UUID) -> Worker:
        log = await asyncio.to_thread(self._open_log, job_id)
        with log:  # the child keeps its own copy of the descriptor
            process = await asyncio.create_subprocess_exec(
                *self.command,
                str(job_id),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # a Ctrl-C in the gateway's terminal is not the worker's
            )
        self._workers[job_id] = process
        exited = asyncio.create_task(self._exited(process))
        self._exits.add(exited)
        exited.add_done_callback(self._exits.discard)
        return Worker(f"pid {process.pid}")

    async def _exited(self, process: asyncio.subprocess.Process) -> None:
        await process.wait()
        self.on_change()

    async def stop(self, job_id: uuid.UUID) -> None:
        process = self._workers.get(job_id)
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), self.grace_seconds)
        except TimeoutError:
            process.kill()
            await process.wait()

    def live(self) -> set[uuid.UUID]:
        return {job_id for job_id, process in self._workers.items() if process.returncode is None}

    def reap(self) -> dict[uuid.UUID, str]:
        done = {
            job_id: process.returncode for job_id, process in self._workers.items() if process.returncode is not None
        }
        for job_id in done:
            del self._workers[job_id]
        return {job_id: f"process exited with status {code}" for job_id, code in done.items()}

    async def close(self) -> None:
        # The workers are this process's children: none may outlive it.
        for job_id in list(self.live()):
            await self.stop(job_id)

    def pid(self, job_id: uuid.UUID) -> int | None:
        process = self._workers.get(job_id)
        return process.pid if process is not None else None


class LocalExecutor:
    """Subprocess workers and the dispatch loop of one machine, wired together."""

    def __init__(self, settings: Settings, dsn: str, launcher: type[SubprocessLauncher] = SubprocessLauncher) -> None:
        wake = asyncio.Event()
        # The workers are this installation's indexer, pointed at the same database, configured
        # as this executor is.
        self.launcher = launcher(
            settings.codebase_mcp_home / "logs",
            env={**indexer_environment(settings), "DATABASE_URL": dsn,
                 "CODEBASE_MCP_HOME": str(settings.codebase_mcp_home)},
            on_change=wake.set,
        )  # fmt: skip
        self.dispatcher = Dispatcher(dsn, self.launcher, settings, wake=wake)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Dispatch for the duration of the block; then stop the workers (their jobs settle)."""
        stop = asyncio.Event()
        dispatching = asyncio.create_task(self.dispatcher.run(stop))
        try:
            yield
        finally:
            stop.set()
            await dispatching
