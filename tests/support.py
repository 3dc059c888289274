"""Helpers the tests share: fixture repositories, job rows, running the indexer."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx2

from codebase_mcp import job_rows
from codebase_mcp.db.connect import connect
from codebase_mcp.sources import CheckedSource

SCRIPT_DIR = Path(sys.executable).parent

T = TypeVar("T")


def write(root: Path, relative: str, content: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


PYTHON_BILLING = '''"""Billing helpers."""

import math


def compute_invoice_total(line_items, tax_rate):
    """Sum the line items of an invoice and add the sales tax."""
    subtotal = sum(item.price * item.quantity for item in line_items)
    return math.ceil(subtotal * (1 + tax_rate) * 100) / 100


class PaymentGateway:
    """Talks to the card processor."""

    def charge_credit_card(self, card_number, amount):
        """Charge a customer's credit card and return the transaction id."""
        if amount <= 0:
            raise ValueError("amount must be positive")
        return self._post("/charges", {"card": card_number, "amount": amount})

    def refund_payment(self, transaction_id):
        return self._post("/refunds", {"transaction": transaction_id})
'''

TYPESCRIPT_AUTH = """export interface Session { userId: string; expiresAt: number }

export function verifyPasswordHash(password: string, hash: string): boolean {
  // constant-time comparison of the salted password hash
  return timingSafeEqual(hashPassword(password), hash);
}

export class SessionStore {
  private sessions = new Map<string, Session>();
  createSession(userId: string): Session {
    const session = { userId, expiresAt: Date.now() + 3600_000 };
    this.sessions.set(userId, session);
    return session;
  }
}
"""

GO_SERVER = """package server

import "net/http"

// HealthHandler reports that the HTTP server is alive.
func HealthHandler(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
}

type RateLimiter struct {
	tokens int
}

// Allow takes one token from the bucket; it refuses the request when the bucket is empty.
func (l *RateLimiter) Allow() bool {
	if l.tokens == 0 {
		return false
	}
	l.tokens--
	return true
}
"""

JAVA_QUEUE = """package jobs;

public class RetryQueue {
    private int attempts;

    public void scheduleRetryWithBackoff(Runnable task, int attempt) {
        long delay = (long) Math.pow(2, attempt) * 100;
        this.attempts = attempt;
    }
}
"""

RUST_PARSER = """pub struct Tokenizer { input: String }

impl Tokenizer {
    pub fn next_token(&mut self) -> Option<char> {
        self.input.pop()
    }
}

fn parse_configuration_file(path: &str) -> Result<String, std::io::Error> {
    std::fs::read_to_string(path)
}
"""

C_RING = """#include <stdlib.h>

struct ring_buffer { int *data; size_t head; size_t tail; };

int ring_buffer_push(struct ring_buffer *rb, int value) {
    rb->data[rb->head++] = value;
    return 0;
}
"""


def make_sample_repository(root: Path) -> Path:
    """Several languages, a .gitignore, a binary, a huge file, invalid UTF-8, an escaping symlink."""
    write(root, "billing/invoice.py", PYTHON_BILLING)
    write(root, "web/src/auth.ts", TYPESCRIPT_AUTH)
    write(root, "server/health.go", GO_SERVER)
    write(root, "java/jobs/RetryQueue.java", JAVA_QUEUE)
    write(root, "native/parser.rs", RUST_PARSER)
    write(root, "native/ring.c", C_RING)
    write(root, "docs/README.md", "# Sample\n\nHow to deploy the sample service to production.\n")
    write(root, ".gitignore", "*.log\nsecrets/\n!keep.log\n")
    write(root, "debug.log", "ignored log line\n")
    write(root, "keep.log", "this log is kept by a negated pattern\n")
    write(root, "secrets/token.txt", "ignored secret\n")
    write(root, "node_modules/lib/index.js", "function vendored() {}\n")
    write(root, "assets/logo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00binary")
    write(root, "data/huge.txt", "x" * 2_000_001)
    write(root, "legacy/latin1.py", b"# caf\xe9 menu\ndef order_coffee():\n    return 'espresso'\n")
    outside = root.parent / f"{root.name}-outside"
    outside.mkdir(exist_ok=True)
    write(outside, "stolen.py", "def stolen_secret(): pass\n")
    (root / "escape.py").symlink_to(outside / "stolen.py")
    return root


def git(root: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    return subprocess.run(
        ["git", "-C", str(root), *args], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_git_repository(root: Path) -> tuple[str, str]:
    """A git repository with two commits; returns (first_sha, second_sha)."""
    write(root, "app.py", "def greet_user(name):\n    return f'hello {name}'\n")
    git(root, "init", "--quiet", "--initial-branch", "main")
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "first")
    first = git(root, "rev-parse", "HEAD")
    write(
        root,
        "app.py",
        "def greet_user(name):\n    return f'hello {name}'\n\n\ndef farewell_user(name):\n    return 'bye'\n",
    )
    write(root, "lib/math_utils.py", "def fibonacci_sequence(n):\n    return [0, 1][:n]\n")
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "second")
    return first, git(root, "rev-parse", "HEAD")


def make_large_repository(root: Path, files: int, functions: int, salt: str) -> Path:
    """Many small Python functions with unique text (so the embedding cache never has them)."""
    for f in range(files):
        body = "\n\n".join(
            f"def handler_{f}_{n}_{salt}(request):\n"
            f"    '''Handle request kind {n} of module {f} ({salt}).'''\n"
            f"    value = request.get('field_{n}') or {n}\n"
            f"    return {{'module': {f}, 'kind': {n}, 'value': value, 'salt': '{salt}'}}\n"
            for n in range(functions)
        )
        write(root, f"pkg/module_{f}.py", body + "\n")
    return root


async def insert_job(
    conn: asyncpg.Connection[Any],
    *,
    project_id: str,
    repo_path: str | None = None,
    repo_url: str | None = None,
    ref: str | None = None,
    force_reindex: bool = False,
) -> uuid.UUID:
    """A pending job as the gateway queues it, but without the gateway's source checks: tests also
    queue sources the indexer must refuse. Returns the source's active job if it has one."""
    name = Path(repo_path or repo_url or "repo").name
    source = CheckedSource(repo_path, repo_url, ref, name)
    return (await job_rows.enqueue(conn, project_id, source, force_reindex=force_reindex)).job_id


def indexer_process(job_id: uuid.UUID, dsn: str, **env: str) -> subprocess.Popen[str]:
    """`codebase-mcp indexer --job-id` as a real process (what the executors start)."""
    environment = {**os.environ, "DATABASE_URL": dsn, **env}
    return subprocess.Popen(
        [str(SCRIPT_DIR / "codebase-mcp"), "indexer", "--job-id", str(job_id)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@asynccontextmanager
async def connection(dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A connection with pgvector's codec, closed afterwards."""
    conn = await connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


def embedding_started(conn: asyncpg.Connection[Any], job_id: uuid.UUID) -> Callable[[], Awaitable[bool]]:
    """A check that a job's indexer has embedded its first batch (and so is mid-run)."""

    async def check() -> bool:
        message = await conn.fetchval("SELECT progress_message FROM indexing_jobs WHERE id = $1", job_id)
        return (
            bool(message) and message.startswith("Embedding chunks") and not message.startswith("Embedding chunks 0/")
        )

    return check


def wait_until_ok(url: str, process: subprocess.Popen[str], output: Callable[[], str], seconds: float) -> None:
    """Until GET url answers 200; fails at once, with the process's output, if the process exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the process exited ({process.returncode}): {output()[-3000:]}"
        try:
            if httpx2.get(url, timeout=2).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 within {seconds} s")


async def eventually(check: Callable[[], Awaitable[T | None]], seconds: float, what: str, interval: float = 0.05) -> T:
    """Poll `check` until it returns something other than None or False, and return that; fail
    the test after `seconds` naming `what`. The one waiting helper of the suite's async tests."""
    deadline = time.monotonic() + seconds
    while True:
        found = await check()
        if found is not None and found is not False:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(interval)
