"""Container image: size, a cold build, and a rebuild after a source-only change (`make bench-image`).

Builds from a copy of the repository's tracked files (so the working tree is never touched), once
with --no-cache and once after editing one source file, through scripts/image.sh like `make image`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import append_report, table

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "codebase-mcp:bench"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is not installed")
    return found


def copy_context(destination: Path) -> None:
    tracked = subprocess.run([tool("git"), "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in [*tracked.split("\n"), *(str(p.relative_to(ROOT)) for p in (ROOT / ".wheels").glob("*.whl"))]:
        if name and (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)


def build(context: Path, flags: str = "") -> tuple[float, str]:
    """Seconds the build took, and the docker client scripts/image.sh chose."""
    started = time.monotonic()
    done = subprocess.run(
        [tool("bash"), "scripts/image.sh"],
        cwd=context,
        env={**os.environ, "IMAGE": IMAGE, "BUILD_FLAGS": flags},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"image build failed:\n{done.stderr[-3000:]}")
    return time.monotonic() - started, done.stdout.strip().rsplit("DOCKER=", 1)[-1]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="codebase-mcp-image-bench-") as scratch:
        context = Path(scratch)
        copy_context(context)
        cold, docker = build(context, "--no-cache")
        with (context / "codebase_mcp" / "__init__.py").open("a") as source:
            source.write("# a source-only change\n")
        source_only, _ = build(context)
    size = int(subprocess.run([docker, "image", "inspect", IMAGE, "--format", "{{.Size}}"],
                              capture_output=True, text=True, check=True).stdout)  # fmt: skip
    history = subprocess.run(
        [docker, "history", IMAGE, "--format", "{{.Size}}\t{{.CreatedBy}}"], capture_output=True, text=True, check=True
    ).stdout
    layers = [line.split("\t", 1) for line in history.splitlines() if not line.startswith("0B")]
    body = table(
        ["measure", "value"],
        [
            ["image size", f"{size / 1e6:,.0f} MB"],
            ["cold build (--no-cache, base image present)", f"{cold:.0f} s"],
            ["rebuild after a source-only change", f"{source_only:.1f} s"],
        ],
    )
    body += "\n\nLayers (newest first):\n\n" + table(
        ["size", "step"], [[size_text, step.strip()[:90].replace("|", "\\|")] for size_text, step in layers]
    )
    append_report("Container image", body)
    subprocess.run([docker, "image", "rm", IMAGE], capture_output=True, check=False)


if __name__ == "__main__":
    main()
