"""Indexing benchmark: throughput and phases, model-only rate side by side, incremental re-index.

    python -m bench.indexing [--quick]

Corpora: a generated repository, and a real code base (the installed source of a PyPI package:
kopf, or starlette with --quick). Each is indexed into a fresh embedded database (empty embedding
cache), with the model loaded beforehand so the figures are the pipeline's. In the same run the
model alone embeds a sample of the same chunk texts with the same batch size: that rate is what
the pipeline's embedding rate is compared with. Then a 1,000-file repository is indexed, one file
changed, and re-indexed: in-process (model warm) and as a fresh `codebase-mcp indexer` process.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import append_report, table, throwaway_database
from codebase_mcp import job_rows
from codebase_mcp.db.connect import connect
from codebase_mcp.embedding import Embedder
from codebase_mcp.settings import Settings
from codebase_mcp.sources import CheckedSource
from indexer_image.pipeline import EMBED_BATCH, EXIT_OK, embedding_text, run_job

MODEL_SAMPLE = 512


def generate_repository(root: Path, files: int, functions: int, tag: str) -> Path:
    """Python modules of realistic shape: docstrings, branches, a class per file."""
    for f in range(files):
        parts = [f'"""Module {f} of the generated service ({tag})."""\n\nimport json\nimport logging\n']
        for n in range(functions):
            parts.append(
                f"def process_record_{f}_{n}(record, options=None):\n"
                f'    """Validate record {n} of module {f}, normalise its fields and return a summary."""\n'
                f"    options = options or {{}}\n"
                f"    if not record.get('id'):\n"
                f"        raise ValueError('record {n} needs an id')\n"
                f"    fields = {{key.lower(): value for key, value in record.items() if value is not None}}\n"
                f"    logging.getLogger(__name__).debug('record %s has %d fields', fields['id'], len(fields))\n"
                f"    return json.dumps({{'module': {f}, 'kind': {n}, 'fields': sorted(fields), 'tag': '{tag}'}})\n"
            )
        parts.append(
            f"class Store{f}:\n    def __init__(self):\n        self.items = []\n\n"
            f"    def add(self, item):\n        self.items.append(item)\n        return len(self.items)\n"
        )
        target = root / f"service/pkg_{f % 10}/module_{f}.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n\n".join(parts))
    return root


def installed_package(name: str, destination: Path) -> Path:
    source = Path(importlib.import_module(name).__file__ or "").parent
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc"))
    return destination


async def insert_job(conn: Any, repo: Path, project: str) -> uuid.UUID:
    source = CheckedSource(str(repo), None, None, repo.name)
    return (await job_rows.enqueue(conn, project, source, force_reindex=False)).job_id


async def index_once(dsn: str, settings: Settings, embedder: Embedder, repo: Path, project: str) -> dict[str, Any]:
    conn = await connect(dsn)
    try:
        job_id = await insert_job(conn, repo, project)
        started = time.perf_counter()
        code = await run_job(job_id, settings, dsn, embedder)
        wall = time.perf_counter() - started
        row = await conn.fetchrow("SELECT * FROM indexing_jobs WHERE id = $1", job_id)
        assert row is not None
        if code != EXIT_OK:
            raise RuntimeError(f"indexing {repo} failed: {row['error_message']}")
        texts = [
            embedding_text(r["symbol_name"], r["content"])
            for r in await conn.fetch(
                "SELECT symbol_name, content FROM chunks WHERE project_id = $1 ORDER BY id LIMIT $2",
                project,
                MODEL_SAMPLE,
            )
        ]
        return {"wall": wall, "row": dict(row), "meta": json.loads(row["metadata"]), "sample": texts}
    finally:
        await conn.close()


def model_only_rate(embedder: Embedder, texts: list[str]) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), EMBED_BATCH):
        embedder.encode(texts[start : start + EMBED_BATCH])
    return len(texts) / (time.perf_counter() - started)


async def throughput(dsn: str, embedder: Embedder, corpora: dict[str, Path], roots: Path) -> str:
    settings = Settings(allowed_repo_roots=(roots,))
    rows = []
    phase_rows = []
    for name, repo in corpora.items():
        result = await index_once(dsn, settings, embedder, repo, f"bench-{uuid.uuid4().hex[:6]}")
        meta, wall = result["meta"], result["wall"]
        seconds = meta["seconds"]
        chunks = meta["chunks_total"]
        forward = seconds.get("model_forward", 0.0)
        write = wall - seconds["scan"] - seconds["chunk"] - seconds["embed"]
        pipeline_rate = meta["chunks_embedded"] / forward if forward else float("nan")
        model_rate = model_only_rate(embedder, result["sample"])
        outside = (wall - forward) / wall
        rows.append(
            [
                name,
                f"{result['row']['files_indexed']:,}",
                f"{chunks:,}",
                f"{wall:.1f}",
                f"{result['row']['files_indexed'] / wall:.1f}",
                f"{chunks / wall:.1f}",
                f"{pipeline_rate:.1f}",
                f"{model_rate:.1f}",
                f"{pipeline_rate / model_rate:.2f}",
                f"{outside:.1%}",
            ]
        )
        phase_rows.append(
            [name]
            + [f"{seconds[key]:.2f}" for key in ("scan", "chunk")]
            + [f"{seconds['embed']:.2f} ({forward:.2f} forward)", f"{write:.2f}"]
        )
    return (
        table(
            [
                "corpus",
                "files",
                "chunks",
                "wall s",
                "files/s",
                "chunks/s",
                "embed rate in pipeline (chunks/s of forward)",
                "model-only rate (same texts, same run)",
                "ratio",
                "wall outside forward pass",
            ],
            rows,
        )
        + "\n\nSeconds per phase (model loaded beforehand):\n\n"
        + table(["corpus", "scan", "chunk", "embed", "write + switch"], phase_rows)
    )


async def incremental(dsn: str, embedder: Embedder, roots: Path, files: int) -> str:
    repo = roots / "incremental"
    tag = uuid.uuid4().hex[:6]
    for f in range(files):
        target = repo / f"src/dir_{f % 25}/file_{f}.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"def compute_value_{f}(x):\n    '''Value {f} ({tag}).'''\n    return x * {f}\n")
    settings = Settings(allowed_repo_roots=(roots,))
    project = f"inc-{tag}"
    first = await index_once(dsn, settings, embedder, repo, project)
    rows = [["initial index, in-process", f"{first['wall']:.2f}", str(first["meta"]["chunks_embedded"])]]

    unchanged = await index_once(dsn, settings, embedder, repo, project)
    rows.append(["no change, in-process", f"{unchanged['wall']:.2f}", str(unchanged["meta"]["chunks_embedded"])])

    (repo / "src/dir_7/file_7.py").write_text("def compute_value_7(x):\n    return x * 700 + 1\n")
    warm = await index_once(dsn, settings, embedder, repo, project)
    rows.append(
        ["1 file changed, in-process (model warm)", f"{warm['wall']:.2f}", str(warm["meta"]["chunks_embedded"])]
    )

    (repo / "src/dir_8/file_8.py").write_text("def compute_value_8(x):\n    return x * 800 + 2\n")
    conn = await connect(dsn)
    try:
        job_id = await insert_job(conn, repo, project)
        env = {**os.environ, "DATABASE_URL": dsn, "ALLOWED_REPO_ROOTS": str(roots)}
        script = Path(sys.executable).parent / "codebase-mcp"
        started = time.perf_counter()
        await asyncio.to_thread(
            subprocess.run, [str(script), "indexer", "--job-id", str(job_id)], env=env, check=True, capture_output=True
        )
        cold_wall = time.perf_counter() - started
        meta = json.loads(await conn.fetchval("SELECT metadata FROM indexing_jobs WHERE id = $1", job_id))
    finally:
        await conn.close()
    load = meta["seconds"].get("model_load", 0.0)
    rows.append(
        [
            "1 file changed, new `codebase-mcp indexer` process",
            f"{cold_wall:.2f} (model load {load:.2f})",
            str(meta["chunks_embedded"]),
        ]
    )
    return f"{files:,}-file repository:\n\n" + table(["run", "wall s", "chunks embedded"], rows)


async def main(quick: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="codebase-mcp-bench-repos-") as scratch, throwaway_database() as dsn:
        roots = Path(scratch)
        embedder = Embedder()
        started = time.perf_counter()
        embedder.load()
        load_seconds = time.perf_counter() - started
        generated = generate_repository(roots / "generated", files=40 if quick else 150, functions=6, tag="g")
        real_name = "starlette" if quick else "kopf"
        real = installed_package(real_name, roots / real_name)
        body = await throughput(dsn, embedder, {"generated": generated, f"{real_name} (installed source)": real}, roots)
        body += "\n\nIncremental re-index of a "
        body += await incremental(dsn, embedder, roots, files=1000)
        body += f"\n\nModel load in this process: {load_seconds:.1f} s (device: {embedder.device})."
        append_report("Indexing" + (" (quick)" if quick else ""), body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller corpora")
    asyncio.run(main(parser.parse_args().quick))
