"""What every benchmark shares: a throwaway database, the machine's description, the report file."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from codebase_mcp.db import migrations
from codebase_mcp.db.embedded import EmbeddedPostgres

REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


@contextmanager
def throwaway_database(settings: dict[str, str] | None = None) -> Iterator[str]:
    """A fresh embedded PostgreSQL, migrated, removed afterwards: benchmarks never touch user data.

    `settings` are server parameters, written where ALTER SYSTEM writes them and applied by a
    restart before the database is used.
    """
    with tempfile.TemporaryDirectory(prefix="codebase-mcp-bench-") as home:
        server = EmbeddedPostgres(Path(home))
        dsn = server.start()
        try:
            if settings:
                with (server.data_dir / "postgresql.auto.conf").open("a") as conf:
                    conf.writelines(f"{name} = '{value}'\n" for name, value in settings.items())
                server.stop()
                dsn = server.start()
            migrations.upgrade(dsn)
            yield dsn
        finally:
            server.stop()


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{os.cpu_count()} cores, {memory}, {cpu}, GPU: {gpu}"


def commit() -> str:
    """The commit measured; "+changes" when the working tree differs from it (figures of code
    that no commit holds must say so)."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    try:
        head = subprocess.run(
            [git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, cwd=REPORT.parent
        ).stdout.strip()
        changes = subprocess.run(
            [git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True,
            cwd=REPORT.parent,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+changes" if changes else head


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def append_report(title: str, body: str) -> None:
    """Print the section and append it, stamped with date, machine and commit, to docs/benchmarks.md."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = f"\n## {title}\n\n{stamp} · commit {commit()} · {machine()}\n\n{body}\n"
    print(section)
    if not REPORT.exists():
        REPORT.write_text(
            "# Benchmarks\n\nWritten by the commands under `bench/` (`make bench`, `make bench-quick`); "
            "newest sections last. Figures are medians where runs repeat.\n"
        )
    with REPORT.open("a") as report:
        report.write(section)
