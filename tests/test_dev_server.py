"""`codebase-mcp dev` as a user runs it: one command, then index and search over MCP; restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp import Client

from codebase_mcp.db.embedded import EmbeddedPostgres, find_free_port
from tests import support

pytestmark = pytest.mark.slow
SCRIPT = str(Path(sys.executable).parent / "codebase-mcp")


class DevServer:
    def __init__(self, home: Path, roots: Path) -> None:
        self.home = home
        self.roots = roots
        self.port = find_free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = {**os.environ, "CODEBASE_MCP_HOME": str(self.home), "ALLOWED_REPO_ROOTS": str(self.roots)}
        env.pop("DATABASE_URL", None)
        self.process = subprocess.Popen(
            [SCRIPT, "dev", "--port", str(self.port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        process = self.process

        def output() -> str:
            return process.stdout.read() if process.stdout else ""

        support.wait_until_ok(f"http://127.0.0.1:{self.port}/readyz", process, output, 90)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)

    @property
    def token(self) -> str:
        return (self.home / "token").read_text().strip()


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevServer]:
    roots = tmp_path / "code"
    roots.mkdir()
    server = DevServer(tmp_path / "home", roots)
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
        EmbeddedPostgres(server.home).stop()


async def call(dev: DevServer, tool: str, **arguments: Any) -> dict[str, Any]:
    async with Client(dev.url, auth=dev.token) as client:
        result = await client.call_tool(tool, arguments)
    assert result.structured_content is not None
    return dict(result.structured_content)


async def test_dev_indexes_and_searches_and_survives_a_restart(dev: DevServer) -> None:
    await asyncio.to_thread(dev.start)
    assert (dev.home / "token").stat().st_mode & 0o777 == 0o600
    repo = support.make_sample_repository(dev.roots / "shop")
    job = await call(dev, "start_indexing_background", repo_path=str(repo))
    assert job["project_id"] == "default"
    deadline = time.monotonic() + 120
    while (status := await call(dev, "get_indexing_status", job_id=job["job_id"]))["status"] in {"pending", "running"}:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.5)
    assert status["status"] == "completed", status["error_message"]
    hits = await call(dev, "search_code", query="verify a password against its salted hash")
    assert (hits["results"][0]["path"], hits["results"][0]["symbol"]) == ("web/src/auth.ts", "verifyPasswordHash")

    async with httpx2.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{dev.port}/metrics")).text
    assert 'codebase_mcp_tool_calls_total{outcome="ok",tool="search_code"} 1.0' in metrics
    assert 'codebase_mcp_jobs{status="completed"} 1.0' in metrics

    assert await asyncio.to_thread(dev.stop) == 0
    token = dev.token
    await asyncio.to_thread(dev.start)
    assert dev.token == token, "the token is kept across restarts"
    after = await call(dev, "get_indexing_status", job_id=job["job_id"])
    assert after == status, "job state lives in PostgreSQL, not in the gateway"
    again = await call(dev, "search_code", query="verify a password against its salted hash")
    assert again["results"][0]["symbol"] == "verifyPasswordHash"
    assert await asyncio.to_thread(dev.stop) == 0


def cli(dev: DevServer, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CODEBASE_MCP_HOME": str(dev.home), **env}
    return subprocess.run([SCRIPT, *args], env=environment, capture_output=True, text=True, timeout=180, check=False)


async def test_people_cli_index_search_jobs(dev: DevServer) -> None:
    await asyncio.to_thread(dev.start)
    repo = support.make_sample_repository(dev.roots / "shop")
    url = ["--url", dev.url]

    indexed = await asyncio.to_thread(cli, dev, "index", str(repo), "--wait", *url)
    assert indexed.returncode == 0, indexed.stdout + indexed.stderr
    assert "completed:" in indexed.stdout
    assert "100%" in indexed.stderr  # the progress bar
    job_id = indexed.stdout.split()[1]

    found = await asyncio.to_thread(cli, dev, "search", "token bucket rate limiter", "--json", "-k", "3", *url)
    assert found.returncode == 0, found.stderr
    results = json.loads(found.stdout)
    assert len(results) == 3
    assert results[0]["path"] == "server/health.go"
    assert results[0]["symbol"] in {"Allow", "RateLimiter"}
    assert set(results[0]) == {"repository", "path", "start_line", "end_line", "symbol", "language", "score"}
    human = await asyncio.to_thread(cli, dev, "search", "token bucket rate limiter", "--lang", "go", *url)
    assert "shop:server/health.go:" in human.stdout

    status = await asyncio.to_thread(cli, dev, "jobs", "status", job_id, "--json", *url)
    assert json.loads(status.stdout)["status"] == "completed"
    listed = await asyncio.to_thread(cli, dev, "jobs", "list", "--json", *url)
    assert [job["job_id"] for job in json.loads(listed.stdout)] == [job_id]
    refused = await asyncio.to_thread(cli, dev, "jobs", "cancel", job_id, *url)
    assert refused.returncode == 1
    assert "already completed" in refused.stderr
    assert "Traceback" not in refused.stderr

    wrong = await asyncio.to_thread(cli, dev, "jobs", "list", "--token", "nope", *url)
    assert wrong.returncode == 1
    assert "refused the token" in wrong.stderr
    await asyncio.to_thread(dev.stop)
    down = await asyncio.to_thread(cli, dev, "jobs", "list", *url)
    assert down.returncode == 1
    assert "cannot reach the gateway" in down.stderr


INTERRUPTIBLE = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


class Terminal:
    """A CLI process on a pseudo-terminal, as a person runs it: Ctrl-C and typed answers."""

    def __init__(self, dev: DevServer, *args: str) -> None:
        self.screen = ""
        self._main, child = pty.openpty()
        environment = {**os.environ, "CODEBASE_MCP_HOME": str(dev.home)}
        # A shell runs background jobs with SIGINT ignored, and the ignoring is inherited: put Ctrl-C
        # back to its default, as a terminal's foreground process has it, whatever started pytest.
        command = [sys.executable, "-c", INTERRUPTIBLE, SCRIPT, *args]
        self.process = subprocess.Popen(command, env=environment, stdin=child, stdout=child, stderr=child)
        os.close(child)

    def read_until(self, text: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while text not in self.screen:
            assert time.monotonic() < deadline, f"{text!r} never appeared on the screen: {self.screen!r}"
            if select.select([self._main], [], [], 0.2)[0]:
                try:
                    self.screen += os.read(self._main, 4096).decode(errors="replace")
                except OSError:  # the process closed the terminal
                    assert text in self.screen, f"the process ended without showing {text!r}: {self.screen!r}"

    def type(self, text: str) -> None:
        os.write(self._main, text.encode())

    def finish(self) -> int:
        code = self.process.wait(timeout=60)
        with contextlib.suppress(OSError):
            while select.select([self._main], [], [], 0.2)[0]:
                chunk = os.read(self._main, 4096)
                if not chunk:
                    break
                self.screen += chunk.decode(errors="replace")
        os.close(self._main)
        return code


@pytest.mark.parametrize(("answer", "expected"), [("y", "cancelled"), ("n", "completed")])
async def test_ctrl_c_during_index_wait_offers_to_cancel(dev: DevServer, answer: str, expected: str) -> None:
    await asyncio.to_thread(dev.start)
    repo = support.make_large_repository(dev.roots / "big", files=30, functions=10, salt=answer)
    terminal = Terminal(dev, "index", str(repo), "--wait", "--url", dev.url)
    await asyncio.to_thread(terminal.read_until, "%")  # the progress bar is up
    job_id = terminal.screen.split()[1]
    terminal.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    await asyncio.to_thread(terminal.read_until, "Cancel the indexing job? [y/N]")
    terminal.type(answer + "\n")
    assert await asyncio.to_thread(terminal.finish) == 130, terminal.screen
    assert "Traceback" not in terminal.screen
    if answer == "y":
        assert "cancelled" in terminal.screen
        assert (await call(dev, "get_indexing_status", job_id=job_id))["status"] == "cancelled"
    else:
        assert f"codebase-mcp jobs cancel {job_id}" in terminal.screen
        deadline = time.monotonic() + 120
        while (status := await call(dev, "get_indexing_status", job_id=job_id))["status"] in {"pending", "running"}:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.5)
        assert status["status"] == expected
