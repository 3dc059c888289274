"""Validation of local repository paths against the configured allowed roots.

The seed design compared a resolved path with its own parent, which accepts
/var/data/../../etc/passwd (it resolves to /etc/passwd, whose parent is /etc). Here the rule is
positive instead: the fully resolved path (symlinks followed) must lie inside one of the fully
resolved allowed roots. Containment is decided on path components, never on string prefixes,
so /allowed2 is not inside /allowed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


class RepoPathError(ValueError):
    """A repository path that may not be indexed; the message says why and what to do."""


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def validate_repo_path(raw: str, allowed_roots: Iterable[Path]) -> Path:
    """Return the resolved repository directory, or raise RepoPathError with a clear reason."""
    if not isinstance(raw, str) or raw.strip() == "":
        raise RepoPathError("repo_path must be a non-empty absolute path")
    if "\x00" in raw:
        raise RepoPathError("repo_path must not contain NUL bytes")
    if not os.path.isabs(raw):
        raise RepoPathError(f"repo_path must be absolute, got {raw!r}")

    roots = [Path(root).resolve() for root in allowed_roots]
    if not roots:
        raise RepoPathError(
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
        raise RepoPathError(f"repo_path cannot be resolved: {raw!r} ({error.__class__.__name__})") from None
    if not any(_is_within(leads_to, root) for root in roots):
        raise RepoPathError(
            f"repo_path {raw!r} resolves to {str(leads_to)!r}, which is outside the allowed roots ({allowed})"
        )
    try:
        resolved = Path(raw).resolve(strict=True)
    except FileNotFoundError:
        raise RepoPathError(f"repo_path does not exist: {raw!r}") from None
    except (OSError, RuntimeError) as error:  # permission denied, symlink loop
        raise RepoPathError(f"repo_path cannot be resolved: {raw!r} ({error.__class__.__name__})") from None
    # Checked again on the strict result: a symlink created between the two calls cannot escape.
    if not any(_is_within(resolved, root) for root in roots):
        raise RepoPathError(
            f"repo_path {raw!r} resolves to {str(resolved)!r}, which is outside the allowed roots ({allowed})"
        )
    if not resolved.is_dir():
        raise RepoPathError(f"repo_path is not a directory: {raw!r}")
    return resolved
