"""What may be indexed: local paths under the allowed roots, git URLs, refs, repository names.

The gateway checks a request with these rules before it queues a job, and the indexer checks the
job again before it reads anything (a row may have been written by other means), so both apply
exactly the same rules. Fetching is the indexer's (indexer_image/checkout.py).

Local paths: the seed design compared a resolved path with its own parent, which accepts
/var/data/../../etc/passwd (it resolves to /etc/passwd, whose parent is /etc). Here the rule is
positive instead: the fully resolved path (symlinks followed) must lie inside one of the fully
resolved allowed roots. Containment is decided on path components, never on string prefixes,
so /allowed2 is not inside /allowed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from codebase_mcp.errors import UserError
from codebase_mcp.settings import Settings

_SCP_LIKE = re.compile(r"^(?P<user>[A-Za-z0-9._-]+@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)$")
# git check-ref-format's rules, reduced to what a user could mistype or smuggle in.
_BAD_REF = re.compile(r"(^-)|(\.\.)|[\x00-\x20\x7f~^:?*\[\\]|(@\{)|(\.lock$)|(/$)|(^/)")


class SourceError(UserError, ValueError):
    """A source that may not be indexed: the message says why and what to do, and is safe to show
    (it never holds credentials). A failed job's error_type names it."""


@dataclass(frozen=True)
class CheckedSource:
    """A job's source after the rules: exactly one of repo_path (resolved) and repo_url."""

    repo_path: str | None
    repo_url: str | None
    ref: str | None
    name: str  # the repository's name: the directory's, or the URL's last segment

    @property
    def identity(self) -> str:
        """What an active job is unique on, with the ref."""
        return self.repo_path or self.repo_url or ""


def check_source(settings: Settings, *, repo_path: str | None, repo_url: str | None, ref: str | None) -> CheckedSource:
    """Apply every rule to a requested source, or raise SourceError saying which one failed."""
    if bool(repo_path) == bool(repo_url):
        raise SourceError("give exactly one of repo_path (a local directory) or repo_url (a git URL)")
    if repo_path:
        resolved = validate_repo_path(repo_path, settings.allowed_repo_roots)
        return CheckedSource(str(resolved), None, None, resolved.name)
    assert repo_url is not None
    url = validate_git_url(repo_url, settings)
    return CheckedSource(None, url, validate_ref(ref), repository_name(url))


def repository_name(url: str) -> str:
    """The name a git URL's repository is listed under: its last path segment without .git."""
    return url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git") or url


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
            except SourceError as error:
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


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def validate_repo_path(raw: str, allowed_roots: Iterable[Path]) -> Path:
    """Return the resolved repository directory, or raise SourceError with a clear reason."""
    if not isinstance(raw, str) or raw.strip() == "":
        raise SourceError("repo_path must be a non-empty absolute path")
    if "\x00" in raw:
        raise SourceError("repo_path must not contain NUL bytes")
    if not os.path.isabs(raw):
        raise SourceError(f"repo_path must be absolute, got {raw!r}")

    roots = [Path(root).resolve() for root in allowed_roots]
    if not roots:
        raise SourceError(
            "no local repositories may be indexed: ALLOWED_REPO_ROOTS is empty "
            "(set it to a colon-separated list of directories)"
        )

    allowed = ", ".join(str(root) for root in roots)
    # First where the path leads as far as it exists (symlinks followed, '..' applied): anything
    # outside the roots is refused before we say whether it exists, so the answer reveals
    # nothing about the file system outside the roots.
    try:
        leads_to = Path(raw).resolve(strict=False)
    except (OSError, RuntimeError) as error:  # symlink loop, permission denied
        raise SourceError(f"repo_path cannot be resolved: {raw!r} ({error.__class__.__name__})") from None
    if not any(_is_within(leads_to, root) for root in roots):
        raise SourceError(
            f"repo_path {raw!r} resolves to {str(leads_to)!r}, which is outside the allowed roots ({allowed})"
        )
    try:
        resolved = Path(raw).resolve(strict=True)
    except FileNotFoundError:
        raise SourceError(f"repo_path does not exist: {raw!r}") from None
    except (OSError, RuntimeError) as error:  # permission denied, symlink loop
        raise SourceError(f"repo_path cannot be resolved: {raw!r} ({error.__class__.__name__})") from None
    # Checked again on the strict result: a symlink created between the two calls cannot escape.
    if not any(_is_within(resolved, root) for root in roots):
        raise SourceError(
            f"repo_path {raw!r} resolves to {str(resolved)!r}, which is outside the allowed roots ({allowed})"
        )
    if not resolved.is_dir():
        raise SourceError(f"repo_path is not a directory: {raw!r}")
    return resolved
