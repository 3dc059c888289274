"""Where a job's code comes from: a local directory under the allowed roots, or a git URL.

A git source is fetched shallowly (one commit) into a scratch directory that is always removed.
Credentials never travel in a URL or on a command line: git asks an askpass helper that reads
the token from this process's environment, so neither logs, the job row nor error messages can
contain it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from codebase_mcp.paths import RepoPathError, validate_repo_path
from codebase_mcp.settings import Settings

GIT_TIMEOUT_SECONDS = 900
_SCP_LIKE = re.compile(r"^(?P<user>[A-Za-z0-9._-]+@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)$")
# git check-ref-format's rules, reduced to what a user could mistype or smuggle in.
_BAD_REF = re.compile(r"(^-)|(\.\.)|[\x00-\x20\x7f~^:?*\[\\]|(@\{)|(\.lock$)|(/$)|(^/)")
# The name (not the value) of the variable through which the askpass helper gets the token.
_TOKEN_ENV = "CODEBASE_MCP_GIT_TOKEN"  # noqa: S105


class SourceError(ValueError):
    """The job's source cannot be used; the message is safe to show (no credentials)."""


@dataclass(frozen=True)
class Source:
    root: Path
    kind: str  # "path" or "git"
    identity: str  # resolved path, or the URL as given (it holds no credentials)
    ref: str | None
    commit_sha: str | None


def validate_git_url(url: str, settings: Settings) -> str:
    """Return the URL if it is an https, ssh or (local, allowed-root) file URL we may fetch."""
    if not url or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise SourceError("repo_url must be a non-empty URL without spaces or control characters")
    if url.startswith("-"):
        raise SourceError("repo_url must not start with '-' (git would read it as an option)")
    if "::" in url:
        # <transport>::<address> runs a git remote helper (ext:: runs arbitrary commands).
        raise SourceError("repo_url must not use git's remote-helper syntax ('::')")
    scp = _SCP_LIKE.match(url)
    if "://" not in url and scp:
        host = scp.group("host").lower()
    else:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in {"https", "ssh", "file"}:
            raise SourceError(f"repo_url scheme must be https, ssh or file, got {scheme or 'none'!r}")
        if parts.password is not None or (scheme == "https" and parts.username):
            raise SourceError("repo_url must not contain credentials: set GIT_TOKEN or GIT_TOKEN_FILE instead")
        if scheme == "file":
            if parts.netloc not in {"", "localhost"}:
                raise SourceError("file:// URLs must name a local path")
            try:
                validate_repo_path(parts.path, settings.allowed_repo_roots)
            except RepoPathError as error:
                raise SourceError(f"file:// repo_url: {error}") from None
            return url
        host = (parts.hostname or "").lower()
        if not host:
            raise SourceError("repo_url has no host")
    if host.startswith("-"):
        raise SourceError("repo_url host must not start with '-'")
    if settings.allowed_git_hosts and host not in settings.allowed_git_hosts:
        raise SourceError(f"repo_url host {host!r} is not in ALLOWED_GIT_HOSTS")
    return url


def validate_ref(ref: str | None) -> str | None:
    if ref is None or ref == "":
        return None
    if len(ref) > 255 or _BAD_REF.search(ref):
        raise SourceError(f"ref {ref!r} is not a valid git branch, tag or commit name")
    return ref


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
    if repo_url:
        url = validate_git_url(repo_url, settings)
        checked_ref = validate_ref(ref)
        scratch = Path(tempfile.mkdtemp(prefix="codebase-mcp-clone-"))
        try:
            checkout = scratch / "repo"
            commit = _fetch(url, checked_ref, checkout, settings)
            yield Source(checkout, "git", url, checked_ref, commit)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    if not repo_path:
        raise SourceError("the job names neither repo_path nor repo_url")
    try:
        root = validate_repo_path(repo_path, settings.allowed_repo_roots)
    except RepoPathError as error:
        raise SourceError(str(error)) from None
    yield Source(root, "path", str(root), None, _local_commit(root))
