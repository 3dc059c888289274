"""Find the files of a repository worth indexing, and read them as text.

Policy (docs/indexing.md):
- `.git` and well-known dependency and build folders are skipped, and so is everything the
  repository's `.gitignore` files exclude (matched by pathspec with git's own semantics,
  including nested `.gitignore` files and negations).
- Symlinked directories are not followed; a symlinked file is read only when it points to a
  regular file inside the repository.
- Files over the size cap are skipped, and so are binary files (a NUL byte in the first 8 KiB).
- Text is decoded as UTF-8 (a BOM is dropped); invalid bytes become U+FFFD. A file in which more
  than 10% of the characters had to be replaced is treated as binary.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pathspec

SKIPPED_DIRECTORIES = frozenset(
    {
        ".git", ".hg", ".svn", ".bzr",
        "node_modules", "bower_components", "jspm_packages", "vendor", "Pods", "site-packages",
        ".venv", "venv", ".tox", ".nox", ".eggs", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache",
        "dist", "build", "target", "out", ".next", ".nuxt", ".svelte-kit", ".gradle", ".terraform",
        "coverage", "htmlcov", ".idea", ".cache",
    }
)  # fmt: skip
SKIPPED_FILE_SUFFIXES = (".min.js", ".min.css", ".map", ".pyc", ".pyo", ".class", ".o", ".so", ".dll", ".exe")
SKIPPED_FILE_NAMES = frozenset(
    {"package-lock.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock", "Cargo.lock", "composer.lock", "uv.lock"}
)
BINARY_SNIFF_BYTES = 8192
MAX_REPLACEMENT_RATIO = 0.10

LANGUAGES_BY_SUFFIX = {
    ".py": "python", ".pyi": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
    ".go": "go", ".java": "java", ".rs": "rust",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
    ".rb": "ruby", ".php": "php", ".cs": "csharp", ".kt": "kotlin", ".kts": "kotlin", ".swift": "swift",
    ".scala": "scala", ".sh": "shell", ".bash": "shell", ".sql": "sql", ".lua": "lua", ".r": "r",
    ".md": "markdown", ".rst": "rst", ".txt": "text", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml",
    ".json": "json", ".html": "html", ".css": "css", ".scss": "css", ".xml": "xml", ".proto": "protobuf",
}  # fmt: skip
LANGUAGES_BY_NAME = {"Dockerfile": "dockerfile", "Makefile": "make", "CMakeLists.txt": "cmake"}


class RepositoryTooLargeError(ValueError):
    """The repository exceeds MAX_REPO_SIZE_GB; nothing was read."""


def detect_language(path: str) -> str | None:
    name = PurePosixPath(path).name
    if name in LANGUAGES_BY_NAME:
        return LANGUAGES_BY_NAME[name]
    return LANGUAGES_BY_SUFFIX.get(PurePosixPath(name).suffix.lower())


@dataclass(frozen=True)
class Candidate:
    """A file the walk kept: relative POSIX path, where to read it, its size."""

    path: str
    location: Path
    size: int


@dataclass
class ScanResult:
    candidates: list[Candidate]
    total_bytes: int
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class FileText:
    """A candidate read and decoded; `text` is None when the file turned out not to be text."""

    sha256: bytes
    text: str | None
    skip_reason: str | None


class _Ignores:
    """The .gitignore files seen so far, each applying below its own directory."""

    def __init__(self) -> None:
        self._specs: list[tuple[str, pathspec.GitIgnoreSpec]] = []

    def load(self, directory: Path, relative: str) -> None:
        ignore_file = directory / ".gitignore"
        if ignore_file.is_file() and not ignore_file.is_symlink():
            lines = ignore_file.read_text(encoding="utf-8", errors="replace").splitlines()
            self._specs.append((relative, pathspec.GitIgnoreSpec.from_lines(lines)))

    def ignored(self, relative: str, is_dir: bool) -> bool:
        verdict = False
        for base, spec in self._specs:
            if base and not relative.startswith(base + "/"):
                continue
            inner = relative[len(base) + 1 :] if base else relative
            result = spec.check_file(inner + "/" if is_dir else inner)
            if result.include is not None:
                verdict = result.include  # later (deeper) files override earlier ones, like git
        return verdict


def scan_repository(root: Path, *, max_file_bytes: int, max_total_bytes: int) -> ScanResult:
    """Walk `root` (stat only, nothing read) and list the files to index.

    Raises RepositoryTooLargeError as soon as the kept files add up to more than max_total_bytes.
    """
    root = root.resolve()
    ignores = _Ignores()
    result = ScanResult([], 0)
    for directory, subdirs, files in os.walk(root, topdown=True, followlinks=False):
        current = Path(directory)
        relative_dir = current.relative_to(root).as_posix()
        relative_dir = "" if relative_dir == "." else relative_dir
        ignores.load(current, relative_dir)

        kept = []
        for name in sorted(subdirs):
            relative = f"{relative_dir}/{name}" if relative_dir else name
            if name in SKIPPED_DIRECTORIES or name.endswith(".egg-info"):
                result.skipped["excluded directory"] += 1
            elif (current / name).is_symlink():
                result.skipped["symlinked directory"] += 1
            elif ignores.ignored(relative, is_dir=True):
                result.skipped["gitignored"] += 1
            else:
                kept.append(name)
        subdirs[:] = kept  # os.walk descends only into what is left here

        for name in sorted(files):
            relative = f"{relative_dir}/{name}" if relative_dir else name
            location = current / name
            reason = _skip_reason(root, name, relative, location, ignores)
            if reason:
                result.skipped[reason] += 1
                continue
            size = location.stat().st_size
            if size > max_file_bytes:
                result.skipped["too large"] += 1
                continue
            result.total_bytes += size
            if result.total_bytes > max_total_bytes:
                raise RepositoryTooLargeError(
                    f"repository is larger than MAX_REPO_SIZE_GB ({max_total_bytes / 1e9:g} GB) "
                    "counting only the files that would be indexed; raise MAX_REPO_SIZE_GB or index a subdirectory"
                )
            result.candidates.append(Candidate(relative, location, size))
    return result


def _skip_reason(root: Path, name: str, relative: str, location: Path, ignores: _Ignores) -> str | None:
    if name in SKIPPED_FILE_NAMES or name.endswith(SKIPPED_FILE_SUFFIXES):
        return "excluded file"
    if ignores.ignored(relative, is_dir=False):
        return "gitignored"
    if location.is_symlink():
        try:
            target = location.resolve(strict=True)
        except (OSError, RuntimeError):
            return "broken symlink"
        if root not in target.parents or not target.is_file():
            return "symlink outside repository"
    elif not location.is_file():
        return "not a regular file"
    return None


def read_text(candidate: Candidate) -> FileText:
    """Read, hash and decode one file (the hash is of the bytes, so it is stable across policies)."""
    data = candidate.location.read_bytes()
    digest = hashlib.sha256(data).digest()
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        return FileText(digest, None, "binary")
    text = data.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    if text and text.count("\ufffd") > MAX_REPLACEMENT_RATIO * len(text):
        return FileText(digest, None, "not UTF-8 text")
    return FileText(digest, text, None)
