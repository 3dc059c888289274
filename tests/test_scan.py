"""The scanner: what gets indexed and what is skipped, and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer_image.scan import RepositoryTooLargeError, detect_language, read_text, scan_repository
from tests.support import make_sample_repository, write


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return make_sample_repository(tmp_path / "sample")


def test_keeps_source_and_skips_the_rest(sample: Path) -> None:
    result = scan_repository(sample, max_file_bytes=1_000_000, max_total_bytes=10**9)
    paths = {candidate.path for candidate in result.candidates}
    assert {
        "billing/invoice.py",
        "web/src/auth.ts",
        "server/health.go",
        "java/jobs/RetryQueue.java",
        "native/parser.rs",
        "native/ring.c",
        "docs/README.md",
        "keep.log",
        ".gitignore",
        "assets/logo.png",  # kept by the walk; read_text finds it is binary
        "legacy/latin1.py",
    } == paths
    assert result.skipped["gitignored"] == 2  # debug.log and secrets/
    assert result.skipped["excluded directory"] == 1  # node_modules
    assert result.skipped["too large"] == 1  # data/huge.txt
    assert result.skipped["symlink outside repository"] == 1  # escape.py


def test_nested_gitignore_applies_below_its_folder(tmp_path: Path) -> None:
    write(tmp_path, "a/.gitignore", "generated.py\n")
    write(tmp_path, "a/generated.py", "x = 1\n")
    write(tmp_path, "b/generated.py", "y = 2\n")
    write(tmp_path, "a/deeper/generated.py", "z = 3\n")
    paths = {c.path for c in scan_repository(tmp_path, max_file_bytes=10**6, max_total_bytes=10**9).candidates}
    assert "b/generated.py" in paths
    assert "a/generated.py" not in paths
    assert "a/deeper/generated.py" not in paths


def test_symlink_inside_the_repository_is_followed(tmp_path: Path) -> None:
    write(tmp_path, "real/code.py", "def f(): pass\n")
    (tmp_path / "alias.py").symlink_to(tmp_path / "real" / "code.py")
    (tmp_path / "linkdir").symlink_to(tmp_path / "real", target_is_directory=True)
    result = scan_repository(tmp_path, max_file_bytes=10**6, max_total_bytes=10**9)
    assert {c.path for c in result.candidates} == {"real/code.py", "alias.py"}
    assert result.skipped["symlinked directory"] == 1


def test_repository_over_the_size_cap_is_refused_before_reading(tmp_path: Path) -> None:
    for n in range(5):
        write(tmp_path, f"f{n}.py", "x" * 1000)
    with pytest.raises(RepositoryTooLargeError, match="MAX_REPO_SIZE_GB"):
        scan_repository(tmp_path, max_file_bytes=10**6, max_total_bytes=3000)


def test_decoding_policy(sample: Path, tmp_path: Path) -> None:
    result = {c.path: c for c in scan_repository(sample, max_file_bytes=10**6, max_total_bytes=10**9).candidates}
    binary = read_text(result["assets/logo.png"])
    assert binary.text is None
    assert binary.skip_reason == "binary"
    latin = read_text(result["legacy/latin1.py"])
    assert latin.text is not None
    assert "caf\ufffd menu" in latin.text  # an invalid byte becomes U+FFFD, the rest is kept
    assert "def order_coffee" in latin.text
    noisy = write(tmp_path, "noise.txt", bytes(range(128, 256)) * 4)
    from indexer_image.scan import Candidate

    assert read_text(Candidate("noise.txt", noisy, noisy.stat().st_size)).skip_reason == "not UTF-8 text"
    bom = write(tmp_path, "bom.py", "\ufeffprint(1)\n".encode())
    assert read_text(Candidate("bom.py", bom, bom.stat().st_size)).text == "print(1)\n"


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("a/b.py", "python"),
        ("x.tsx", "tsx"),
        ("x.TS", "typescript"),
        ("main.go", "go"),
        ("lib.rs", "rust"),
        ("a.hpp", "cpp"),
        ("Dockerfile", "dockerfile"),
        ("notes", None),
    ],
)
def test_language_by_extension(path: str, language: str | None) -> None:
    assert detect_language(path) == language
