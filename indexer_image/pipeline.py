"""The indexing pipeline: what `codebase-mcp indexer --job-id ID` runs, in a pod or a subprocess.

claim the row (pending -> running) -> open the source (local path, or shallow git fetch) ->
scan (0-10%) -> chunk changed files (10-50%) -> embed what the cache lacks (50-90%) ->
write a new generation, switch to it and complete the row in one transaction (90-100%) ->
delete what no generation uses any more.

Exit status: 0 completed or cancelled, 1 failed, 3 refused (job missing or not pending).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import socket
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np

from codebase_mcp import job_rows, repository_graphs
from codebase_mcp.code_tokens import search_document
from codebase_mcp.db.connect import connect
from codebase_mcp.embedding import Embedder, get_embedder
from codebase_mcp.jobs import IndexingJobStatus, validate_project_id
from codebase_mcp.settings import Settings
from indexer_image import store
from indexer_image.checkout import Source, open_source
from indexer_image.chunking import chunk_text
from indexer_image.progress import JobCancelledError, ProgressReporter, WatchState, watch
from indexer_image.scan import detect_language, read_text, scan_repository

log = logging.getLogger("codebase_mcp.indexer")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 3
EMBED_BATCH = 64
# Budget per chunk in model tokens, leaving room for [CLS]/[SEP] and the symbol header line.
HEADER_TOKEN_RESERVE = 16
# How long to keep trying to record a failure when the database itself is what failed.
RECORD_FAILURE_SECONDS = 60


@dataclass
class Work:
    """Everything one run gathers before the write transaction."""

    carried: list[int] = field(default_factory=list)
    files: list[store.NewFile] = field(default_factory=list)
    chunks: list[store.NewChunk] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    embedded: int = 0
    from_cache: int = 0
    # Wall seconds per phase, and the part of embedding spent in the model's forward pass.
    seconds: dict[str, float] = field(default_factory=dict)


def worker_identity() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


def embedding_text(symbol: str | None, content: str) -> str:
    """What the model sees: the symbol first, so a split function's later pieces keep their name."""
    return f"{symbol}\n{content}" if symbol else content


async def run_job(job_id: uuid.UUID, settings: Settings, dsn: str, embedder: Embedder | None = None) -> int:
    conn = await connect(dsn)
    try:
        job = await job_rows.claim(conn, job_id, worker_identity(), str(os.getpid()))
        if job is None:
            status = await job_rows.status_of(conn, job_id)
            what = f"is {status.value}" if status else "does not exist"
            log.warning("refusing job %s: it %s, not pending", job_id, what, extra={"job_id": str(job_id)})
            return EXIT_REFUSED
        return await _supervise(conn, job, settings, dsn, embedder)
    finally:
        await conn.close(timeout=5)


async def _supervise(
    conn: asyncpg.Connection[Any], job: job_rows.ClaimedJob, settings: Settings, dsn: str, embedder: Embedder | None
) -> int:
    """Run the pipeline under the timeout, the cancellation watcher and SIGTERM; settle the row."""
    state = WatchState()
    loop = asyncio.get_running_loop()
    pipeline = asyncio.create_task(_index(conn, job, settings, dsn, embedder))

    def on_sigterm() -> None:
        state.terminated = True
        pipeline.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    watcher = asyncio.create_task(watch(dsn, job.id, settings.cancellation_check_interval_seconds, pipeline, state))
    extra = {"job_id": str(job.id)}
    try:
        async with asyncio.timeout(settings.indexing_job_timeout_seconds):
            await asyncio.shield(pipeline)
        log.info("job %s completed", job.id, extra=extra)
        return EXIT_OK
    except (asyncio.CancelledError, JobCancelledError):
        await _drain(pipeline)
        final = await _final_status(dsn, job.id)
        if final is IndexingJobStatus.COMPLETED:  # stopped while cleaning up after the switch
            return EXIT_OK
        if state.cancel_requested or final is IndexingJobStatus.CANCELLED:
            await _settle(dsn, job.id, cancelled=True)
            log.info("job %s cancelled; partial work removed", job.id, extra=extra)
            return EXIT_OK
        if state.terminated:
            reason = "the indexer was stopped by SIGTERM (pod deleted or node drained) before it finished"
            await _settle(dsn, job.id, error=(reason, "Terminated", None))
        else:
            reason = f"lost the database connection: {state.lost_database}"
            await _settle(dsn, job.id, error=(reason, "DatabaseConnectionLost", None))
        log.error("job %s failed: %s", job.id, reason, extra=extra)
        return EXIT_FAILED
    except TimeoutError:
        pipeline.cancel()
        await _drain(pipeline)
        reason = f"indexing took longer than INDEXING_JOB_TIMEOUT_SECONDS ({settings.indexing_job_timeout_seconds} s)"
        await _settle(dsn, job.id, error=(reason, "Timeout", None))
        log.error("job %s failed: %s", job.id, reason, extra=extra)
        return EXIT_FAILED
    except Exception as error:
        details = (str(error) or error.__class__.__name__, error.__class__.__name__, traceback.format_exc())
        await _settle(dsn, job.id, error=details)
        log.error("job %s failed: %s", job.id, details[0], extra=extra)
        return EXIT_FAILED
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        watcher.cancel()
        await _drain(watcher)


async def _drain(task: asyncio.Task[Any]) -> None:
    """Wait for a cancelled task to unwind (its transaction rolled back) without re-raising."""
    if task.done():
        return
    # The task's own outcome was already handled by the caller; only its unwinding matters here.
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    current = asyncio.current_task()
    if current is not None:
        current.uncancel()


async def _final_status(dsn: str, job_id: uuid.UUID) -> IndexingJobStatus | None:
    try:
        conn = await connect(dsn, vector=False)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        return await job_rows.status_of(conn, job_id)
    finally:
        await conn.close(timeout=5)


async def _settle(
    dsn: str, job_id: uuid.UUID, *, cancelled: bool = False, error: tuple[str, str, str | None] | None = None
) -> None:
    """Record the end on a fresh connection, retrying while the database comes back (restart, failover)."""
    deadline = time.monotonic() + RECORD_FAILURE_SECONDS
    delay = 0.5
    while True:
        try:
            conn = await connect(dsn, vector=False)
            try:
                if cancelled:
                    await job_rows.acknowledge_cancel(conn, job_id)
                elif error is not None:
                    message, error_type, trace = error
                    await job_rows.fail(conn, job_id, message=message, error_type=error_type, traceback=trace)
            finally:
                await conn.close(timeout=5)
            return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if time.monotonic() > deadline:
                log.error("could not record the end of job %s: database unreachable", job_id)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5)


def _load_model(settings: Settings) -> Embedder:
    return get_embedder(settings.embedding_model)


async def _index(
    conn: asyncpg.Connection[Any],
    job: job_rows.ClaimedJob,
    settings: Settings,
    dsn: str,
    embedder: Embedder | None,
) -> None:
    reporter = ProgressReporter(conn, job.id, settings.progress_update_interval_seconds)
    await reporter.report("scanning", 0, 1, "Opening repository", force=True)
    model: Embedder = embedder if embedder is not None else await asyncio.to_thread(_load_model, settings)
    validate_project_id(job.project_id)  # a clear message rather than the projects CHECK violation
    await conn.execute("SELECT ensure_project($1)", job.project_id)
    with open_source(settings, repo_path=job.repo_path, repo_url=job.repo_url, ref=job.ref) as source:
        key = store.RepositoryKey(job.project_id, source.kind, source.identity, source.ref, job.repo_name)
        base = await store.baseline(conn, key)
        work = await _scan_and_chunk(reporter, source, settings, model, base, force=job.force_reindex)
    embeddings = await _embed(conn, reporter, model, work, force=job.force_reindex)
    await _write(conn, reporter, job, source, key, base, model, work, embeddings, settings.repository_graph_min_chunks)


async def _scan_and_chunk(
    reporter: ProgressReporter,
    source: Source,
    settings: Settings,
    embedder: Embedder,
    base: store.Baseline,
    *,
    force: bool,
) -> Work:
    await reporter.report("scanning", 1, 2, "Scanning files", force=True)
    started = time.perf_counter()
    scan = await asyncio.to_thread(
        scan_repository,
        source.root,
        max_file_bytes=settings.max_file_size_bytes,
        max_total_bytes=int(settings.max_repo_size_gb * 1e9),
    )
    total = len(scan.candidates)
    reporter.counters["files_scanned"] = total
    await reporter.report("scanning", 1, 1, f"Found {total:,} files to index", force=True)

    work = Work(skipped=dict(scan.skipped))
    work.seconds["scan"] = time.perf_counter() - started
    started = time.perf_counter()
    budget = embedder.max_tokens - 2 - HEADER_TOKEN_RESERVE
    for done, candidate in enumerate(scan.candidates, start=1):
        file = await asyncio.to_thread(read_text, candidate)
        previous = base.files.get(candidate.path)
        if file.text is None:
            assert file.skip_reason is not None
            work.skipped[file.skip_reason] = work.skipped.get(file.skip_reason, 0) + 1
        elif previous is not None and previous.sha256 == file.sha256 and not force:
            work.carried.append(previous.version_id)  # unchanged: no chunking, no embedding
        else:
            language = detect_language(candidate.path)
            index = len(work.files)
            work.files.append(
                store.NewFile(
                    candidate.path, file.sha256, language, candidate.size, file.text.count("\n") + 1, file.text
                )
            )
            pieces = await asyncio.to_thread(chunk_text, file.text, language, embedder.count_tokens, budget)
            for piece in pieces:
                text = embedding_text(piece.symbol, piece.text)
                work.chunks.append(
                    store.NewChunk(
                        index,
                        piece.start_line,
                        piece.end_line,
                        piece.symbol,
                        piece.text,
                        hashlib.sha256(text.encode()).digest(),
                        search_document(candidate.path, piece.symbol or ""),
                        search_document(piece.text),
                    )
                )
        reporter.counters["files_indexed"] = len(work.files) + len(work.carried)
        await reporter.report("chunking", done, total, f"Chunking files {done:,}/{total:,}")
    work.seconds["chunk"] = time.perf_counter() - started
    return work


async def _embed(
    conn: asyncpg.Connection[Any], reporter: ProgressReporter, embedder: Embedder, work: Work, *, force: bool
) -> np.ndarray[Any, Any]:
    started = time.perf_counter()
    work.seconds["model_forward"] = 0.0
    texts: dict[bytes, str] = {}
    for chunk in work.chunks:
        texts.setdefault(chunk.content_sha256, embedding_text(chunk.symbol, chunk.content))
    vectors: dict[bytes, Any] = {} if force else await store.cached_embeddings(conn, embedder.model_name, list(texts))
    work.from_cache = len(vectors)
    missing = [sha for sha in texts if sha not in vectors]
    total = len(work.chunks)
    await reporter.report("embedding", total - len(missing), total, f"Embedding chunks 0/{len(missing):,}", force=True)
    if missing and not embedder.loaded:
        load_started = time.perf_counter()
        await asyncio.to_thread(embedder.load)
        work.seconds["model_load"] = time.perf_counter() - load_started
    for start in range(0, len(missing), EMBED_BATCH):
        batch = missing[start : start + EMBED_BATCH]
        forward_started = time.perf_counter()
        encoded = await asyncio.to_thread(embedder.encode, [texts[sha] for sha in batch])
        work.seconds["model_forward"] += time.perf_counter() - forward_started
        await store.store_embeddings(conn, embedder.model_name, batch, encoded, replace=force)
        vectors.update(zip(batch, encoded, strict=True))
        work.embedded += len(batch)
        done = start + len(batch)
        await reporter.report(
            "embedding", total - len(missing) + done, total, f"Embedding chunks {done:,}/{len(missing):,}"
        )
    work.seconds["embed"] = time.perf_counter() - started
    if not work.chunks:
        return np.zeros((0, 384), dtype=np.float32)
    return np.stack([np.asarray(vectors[chunk.content_sha256], dtype=np.float32) for chunk in work.chunks])


async def _write(
    conn: asyncpg.Connection[Any],
    reporter: ProgressReporter,
    job: job_rows.ClaimedJob,
    source: Source,
    key: store.RepositoryKey,
    base: store.Baseline,
    embedder: Embedder,
    work: Work,
    embeddings: np.ndarray[Any, Any],
    graph_min_chunks: int,
) -> None:
    carried_chunks = await _carried_chunk_count(conn, job.project_id, work.carried)
    chunk_total = len(work.chunks) + carried_chunks
    # A large repository gets its own search graph before its chunks are written, so that they go
    # into it in the generation's transaction (repository_graphs says why, and what it costs).
    repository_id = base.repository_id or store.repository_id_for(key)
    if chunk_total > graph_min_chunks and not await repository_graphs.has_graph(conn, repository_id):
        started = time.perf_counter()
        await reporter.report(
            "writing", 0, 1, f"Building this repository's search graph ({chunk_total:,} chunks)", force=True
        )
        await repository_graphs.ensure_graph(conn, key.project_id, repository_id, carried_chunks)
        work.seconds["graph"] = time.perf_counter() - started
    await reporter.report("writing", 0, 1, f"Writing {len(work.chunks):,} chunks", force=True)
    reporter.counters["chunks_created"] = len(work.chunks)
    counters = {
        "files_scanned": reporter.counters["files_scanned"],
        "files_indexed": len(work.files) + len(work.carried),
        "chunks_created": len(work.chunks),
    }
    metadata = {
        "files_changed": len(work.files),
        "files_unchanged": len(work.carried),
        "files_skipped": work.skipped,
        "chunks_embedded": work.embedded,
        "chunks_from_cache": work.from_cache,
        "chunks_total": chunk_total,
        "embedding_model": embedder.model_name,
        "device": embedder.device if embedder.loaded else None,  # None: nothing needed the model
        "seconds": {name: round(value, 3) for name, value in work.seconds.items()},
    }
    message = (
        f"Indexed {counters['files_indexed']:,} files ({len(work.files):,} changed) into {chunk_total:,} chunks; "
        f"embedded {work.embedded:,}, reused {len(work.chunks) - work.embedded:,}"
    )

    async def on_slice(done: int, total: int) -> None:
        await reporter.report("writing", done, total, f"Writing chunks {done:,}/{total:,}")

    repository_id = await store.write_generation(
        conn,
        job_id=job.id,
        key=key,
        base=base,
        model=embedder.model_name,
        commit_sha=source.commit_sha,
        carried=work.carried,
        files=work.files,
        chunks=work.chunks,
        embeddings=embeddings,
        completion={"message": message, "counters": counters, "commit_sha": source.commit_sha, "metadata": metadata},
        on_slice=on_slice,
    )
    try:
        await store.collect_garbage(conn, key.project_id, repository_id)
    except asyncpg.PostgresError as error:  # harmless leftovers: unreferenced rows are never searched
        log.warning("garbage collection after job %s failed: %s", job.id, error, extra={"job_id": str(job.id)})
    try:
        await store.refresh_statistics(conn, key.project_id)
    except asyncpg.PostgresError as error:  # autovacuum's analyze gets there later
        log.warning("ANALYZE after job %s failed: %s", job.id, error, extra={"job_id": str(job.id)})


async def _carried_chunk_count(conn: asyncpg.Connection[Any], project_id: str, versions: list[int]) -> int:
    if not versions:
        return 0
    value: int = await conn.fetchval(
        "SELECT count(*) FROM chunks WHERE project_id = $1 AND file_version_id = ANY($2::bigint[])",
        project_id,
        versions,
    )
    return value
