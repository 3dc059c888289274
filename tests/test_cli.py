"""The console script (codebase_mcp/cli.py): errors written for people come out as one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_missing_tokens_file_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "tokens.json"
    env = {**os.environ, "TOKENS_FILE": str(missing), "DATABASE_URL": "postgresql://127.0.0.1:9/none"}
    result = subprocess.run(
        [sys.executable, "-m", "codebase_mcp.cli", "gateway", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"codebase-mcp: tokens file {missing} does not exist"
