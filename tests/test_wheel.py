"""The built wheel is the whole product: installed into a fresh virtual environment, away from the
source tree, its console script migrates a database with the Alembic scripts it carries."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import asyncpg
import pytest

from codebase_mcp.db import migrations

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str | Path, cwd: Path, **kwargs: object) -> str:
    result = subprocess.run([str(arg) for arg in args], cwd=cwd, capture_output=True, text=True, timeout=300,
                            check=False, **kwargs)  # type: ignore[call-overload]  # fmt: skip
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return str(result.stdout)


@pytest.mark.slow
async def test_the_installed_wheel_migrates_a_database(empty_database_url: str, tmp_path: Path) -> None:
    # The tree as git sees it (tracked and not ignored), so the build leaves nothing in the clone.
    source = tmp_path / "source"
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", dist, ".",
        cwd=source)  # fmt: skip
    (wheel,) = dist.glob("codebase_mcp-*.whl")

    # A fresh environment: the wheel itself, and the dependencies already installed here (a path
    # line, not a site directory, so this checkout's editable install is not seen).
    fresh = tmp_path / "fresh"
    run(sys.executable, "-m", "venv", "--without-pip", fresh, cwd=tmp_path)
    site = Path(run(fresh / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                    cwd=tmp_path).strip())  # fmt: skip
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(sys.executable, "-m", "pip", "--python", fresh / "bin" / "python", "install", "--quiet", "--no-deps",
        "--no-index", wheel, cwd=tmp_path)  # fmt: skip

    where = run(fresh / "bin" / "python", "-c", "import codebase_mcp.migrations as m; print(m.__file__)", cwd=tmp_path)
    assert where.startswith(str(site)), where
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": empty_database_url, "HOME": str(tmp_path)}
    output = run(fresh / "bin" / "codebase-mcp", "db", "upgrade", cwd=tmp_path, env=env)
    assert f"Database at revision {migrations.head_revision()}" in output
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == migrations.head_revision()
    finally:
        await conn.close()
