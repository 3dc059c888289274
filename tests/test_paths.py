"""The repository path validator: the seed design's cases and the ones it missed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from codebase_mcp.jobs import IndexingJobCreate
from codebase_mcp.paths import RepoPathError, validate_repo_path


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """An allowed root with a repository in it, and a sibling directory that is not allowed."""
    allowed = tmp_path / "allowed"
    (allowed / "repo" / "src").mkdir(parents=True)
    (allowed / "notes.txt").write_text("not a directory")
    outside = tmp_path / "allowed2"
    (outside / "secret").mkdir(parents=True)
    return allowed, outside


def test_plain_repository_inside_root_is_accepted(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    assert validate_repo_path(str(allowed / "repo"), [allowed]) == (allowed / "repo").resolve()


def test_root_itself_is_accepted(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    assert validate_repo_path(str(allowed), [allowed]) == allowed.resolve()


def test_seed_traversal_case_is_rejected() -> None:
    # The seed's own test case, which its validator accepted: this resolves to /etc/passwd.
    with pytest.raises(RepoPathError, match="outside the allowed roots"):
        validate_repo_path("/var/data/../../etc/passwd", [Path("/var/data")])


def test_dotdot_escaping_the_root_is_rejected(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    with pytest.raises(RepoPathError, match="outside the allowed roots"):
        validate_repo_path(str(allowed / "repo" / ".." / ".."), [allowed])


def test_sibling_with_common_prefix_is_rejected(roots: tuple[Path, Path]) -> None:
    allowed, outside = roots
    # /allowed/../allowed2 normalises to /allowed2, which merely starts with the text "/allowed".
    with pytest.raises(RepoPathError, match="outside the allowed roots"):
        validate_repo_path(str(allowed / ".." / outside.name), [allowed])
    with pytest.raises(RepoPathError, match="outside the allowed roots"):
        validate_repo_path(str(outside / "secret"), [allowed])


def test_dotdot_staying_inside_the_root_is_accepted(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    path = allowed / "repo" / "src" / ".."
    assert validate_repo_path(str(path), [allowed]) == (allowed / "repo").resolve()


def test_symlink_escaping_the_root_is_rejected(roots: tuple[Path, Path]) -> None:
    allowed, outside = roots
    (allowed / "sneaky").symlink_to(outside / "secret", target_is_directory=True)
    with pytest.raises(RepoPathError, match="outside the allowed roots"):
        validate_repo_path(str(allowed / "sneaky"), [allowed])


def test_symlink_staying_inside_the_root_is_accepted(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    (allowed / "alias").symlink_to(allowed / "repo", target_is_directory=True)
    assert validate_repo_path(str(allowed / "alias"), [allowed]) == (allowed / "repo").resolve()


def test_root_given_through_a_symlink_still_matches(tmp_path: Path, roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    link_to_root = tmp_path / "root-link"
    link_to_root.symlink_to(allowed, target_is_directory=True)
    assert validate_repo_path(str(allowed / "repo"), [link_to_root]) == (allowed / "repo").resolve()


def test_trailing_slashes_are_accepted(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    assert validate_repo_path(str(allowed / "repo") + "//", [Path(str(allowed) + "/")]) == (allowed / "repo").resolve()


def test_unicode_names_are_accepted(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    repo = allowed / "répo-日本語"
    repo.mkdir()
    assert validate_repo_path(str(repo), [allowed]) == repo.resolve()


@pytest.mark.parametrize("raw", ["./relative/path", "relative", "~/repo"])
def test_relative_paths_are_rejected(raw: str, roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    with pytest.raises(RepoPathError, match="must be absolute"):
        validate_repo_path(raw, [allowed])


def test_nul_byte_is_rejected(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    with pytest.raises(RepoPathError, match="NUL"):
        validate_repo_path(str(allowed / "repo") + "\x00/etc", [allowed])


def test_missing_path_is_rejected(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    with pytest.raises(RepoPathError, match="does not exist"):
        validate_repo_path(str(allowed / "missing"), [allowed])


def test_file_is_rejected(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    with pytest.raises(RepoPathError, match="not a directory"):
        validate_repo_path(str(allowed / "notes.txt"), [allowed])


def test_no_roots_configured_is_a_clear_error(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    with pytest.raises(RepoPathError, match="ALLOWED_REPO_ROOTS is empty"):
        validate_repo_path(str(allowed / "repo"), [])


def test_empty_path_is_rejected() -> None:
    with pytest.raises(RepoPathError, match="non-empty"):
        validate_repo_path("  ", [Path("/")])


# -- the seed's IndexingJobCreate model ------------------------------------------------------


def test_job_create_accepts_and_normalises(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    job = IndexingJobCreate.model_validate(
        {"repo_path": str(allowed / "repo" / "src" / ".."), "repo_name": "repo", "project_id": "team-a"},
        context={"allowed_roots": [allowed]},
    )
    assert job.repo_path == str((allowed / "repo").resolve())
    assert job.force_reindex is False


def test_job_create_rejects_seed_traversal() -> None:
    with pytest.raises(ValidationError, match="outside the allowed roots"):
        IndexingJobCreate.model_validate(
            {"repo_path": "/var/data/../../etc/passwd", "repo_name": "x", "project_id": "p"},
            context={"allowed_roots": [Path("/var/data")]},
        )


def test_job_create_reads_roots_from_settings(
    roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, fresh_settings: None
) -> None:
    allowed, outside = roots
    monkeypatch.setenv("ALLOWED_REPO_ROOTS", f"{outside}:{allowed}")
    job = IndexingJobCreate(repo_path=str(allowed / "repo"), repo_name="repo", project_id="p")
    assert job.repo_path == str((allowed / "repo").resolve())
    monkeypatch.setenv("ALLOWED_REPO_ROOTS", str(outside))
    from codebase_mcp.settings import get_settings

    get_settings.cache_clear()
    with pytest.raises(ValidationError, match="outside the allowed roots"):
        IndexingJobCreate(repo_path=str(allowed / "repo"), repo_name="repo", project_id="p")


@pytest.mark.parametrize("project_id", ["", "-leading-dash", "has space", "semi;colon", "a/b", "x" * 129, "é"])
def test_job_create_rejects_bad_project_ids(project_id: str, roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    with pytest.raises(ValidationError, match="project_id"):
        IndexingJobCreate.model_validate(
            {"repo_path": str(allowed / "repo"), "repo_name": "r", "project_id": project_id},
            context={"allowed_roots": [allowed]},
        )


def test_outside_paths_do_not_reveal_whether_they_exist(roots: tuple[Path, Path]) -> None:
    allowed, outside = roots
    for target in (outside / "secret", outside / "no-such-dir"):
        with pytest.raises(RepoPathError, match="outside the allowed roots"):
            validate_repo_path(str(target), [allowed])


def test_symlink_loop_is_a_clear_error(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    (allowed / "loop-a").symlink_to(allowed / "loop-b")
    (allowed / "loop-b").symlink_to(allowed / "loop-a")
    with pytest.raises(RepoPathError, match="cannot be resolved"):
        validate_repo_path(str(allowed / "loop-a"), [allowed])
