"""A job's code on local disk: a directory under the allowed roots as it is, or a git checkout.

What may be indexed is decided by the core's rules (codebase_mcp/sources.py), applied here again
before anything is read. A git source is fetched shallowly (one commit) into a scratch directory that is always removed.
Credentials never travel in a URL or on a command line: git asks an askpass helper that reads
the token from this process's environment, so neither logs, the job row nor error messages can
contain it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from codebase_mcp.settings import Settings
from codebase_mcp.sources import SourceError, check_source

GIT_TIMEOUT_SECONDS = 900
# The name (not the value) of the variable through which the askpass helper gets the token.
_TOKEN_ENV = "CODEBASE_MCP_GIT_TOKEN"  # noqa: S105


@dataclass(frozen=True)
class Source:
    root: Path
    kind: str  # "path" or "git"
    identity: str  # resolved path, or the URL as given (it holds no credentials)
    ref: str | None
    commit_sha: str | None


def _git_token(settings: Settings) -> str | None:
    if settings.git_token_file is not None:
        try:
            return settings.git_token_file.read_text().strip() or None
        except OSError as error:
            raise SourceError(f"cannot read GIT_TOKEN_FILE: {error.strerror}") from None
    return settings.git_token.get_secret_value() if settings.git_token else None


def _git_executable() -> str:
    found = shutil.which("git")
    if found is None:
        raise SourceError("git is not installed on this worker")
    return found


def _git(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    try:
        result = subprocess.run(
            [_git_executable(), *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SourceError(f"git {args[0]} took longer than {GIT_TIMEOUT_SECONDS} s") from None
    if result.returncode != 0:
        # git's message names the remote and the ref; with credentials kept out of URLs it holds none.
        detail = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise SourceError(f"git {args[0]} failed: {detail}")
    return result.stdout.strip()


def _trusting(directory: Path, repositories: list[str]) -> dict[str, str]:
    """Environment under which git trusts these repositories although another user owns them.

    A repository under the allowed roots usually belongs to someone else (a volume mounted into
    the indexer's pod), and git refuses to read such a repository ("dubious ownership") unless
    `safe.directory` names it in the global configuration (git 2.39 ignores it on the command line).
    The roots already say these may be read, so a global file of our own names exactly them.
    """
    config = directory / "gitconfig"
    config.write_text("".join(f"[safe]\n\tdirectory = {path}\n" for path in repositories))
    return {"GIT_CONFIG_GLOBAL": str(config)}


def _fetch(url: str, ref: str | None, destination: Path, settings: Settings) -> str:
    source = urlsplit(url).path.rstrip("/") if url.startswith("file://") else None
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(destination.parent),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        # Local file:// fetches by commit id need this on the (local) serving side.
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "uploadpack.allowAnySHA1InWant",
        "GIT_CONFIG_VALUE_0": "true",
        **_trusting(destination.parent, [source, f"{source}/.git"] if source else []),
    }
    # GIT_SSL_CAINFO: a private CA for https remotes (the operator mounts INDEXER_GIT_CA_SECRET).
    for name in ("SSH_AUTH_SOCK", "GIT_SSH_COMMAND", "GIT_SSL_CAINFO"):
        if name in os.environ:
            env[name] = os.environ[name]
    token = _git_token(settings)
    if token:
        askpass = destination.parent / "askpass.sh"
        askpass.write_text(f'#!/bin/sh\ncase "$1" in Username*) echo x-access-token;; *) echo "${_TOKEN_ENV}";; esac\n')
        askpass.chmod(0o700)
        env["GIT_ASKPASS"] = str(askpass)
        env[_TOKEN_ENV] = token
    destination.mkdir()
    _git(["init", "--quiet"], destination, env)
    _git(["remote", "add", "origin", "--", url], destination, env)
    _git(["fetch", "--quiet", "--depth", "1", "--no-tags", "origin", "--", ref or "HEAD"], destination, env)
    _git(["checkout", "--quiet", "--detach", "FETCH_HEAD"], destination, env)
    return _git(["rev-parse", "HEAD"], destination, env)


def _local_commit(root: Path) -> str | None:
    git = shutil.which("git")
    if git is None or not (root / ".git").exists():
        return None
    try:
        with tempfile.TemporaryDirectory(prefix="codebase-mcp-git-") as scratch:
            env = {**os.environ, **_trusting(Path(scratch), [str(root), f"{root}/.git"])}
            result = subprocess.run(
                [git, "-C", str(root), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                env=env,
            )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


@contextmanager
def open_source(
    settings: Settings, *, repo_path: str | None, repo_url: str | None, ref: str | None
) -> Iterator[Source]:
    """The job's code on local disk for the duration of the block; a scratch clone is removed after."""
    checked = check_source(settings, repo_path=repo_path, repo_url=repo_url, ref=ref)
    if checked.repo_url is not None:
        scratch = Path(tempfile.mkdtemp(prefix="codebase-mcp-clone-"))
        try:
            checkout = scratch / "repo"
            commit = _fetch(checked.repo_url, checked.ref, checkout, settings)
            yield Source(checkout, "git", checked.repo_url, checked.ref, commit)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    assert checked.repo_path is not None
    root = Path(checked.repo_path)
    yield Source(root, "path", str(root), None, _local_commit(root))
