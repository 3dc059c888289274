"""What may be indexed (codebase_mcp/sources.py): the path rules (the seed design's cases and the
ones it missed), git URLs and refs, and whole requests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from codebase_mcp.jobs import validate_project_id
from codebase_mcp.settings import Settings
from codebase_mcp.sources import (
    SourceError,
    check_source,
    validate_git_url,
    validate_ref,
    validate_repo_path,
)


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
    with pytest.raises(SourceError, match="outside the allowed roots"):
        validate_repo_path("/var/data/../../etc/passwd", [Path("/var/data")])


def test_dotdot_escaping_the_root_is_rejected(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    with pytest.raises(SourceError, match="outside the allowed roots"):
        validate_repo_path(str(allowed / "repo" / ".." / ".."), [allowed])


def test_sibling_with_common_prefix_is_rejected(roots: tuple[Path, Path]) -> None:
    allowed, outside = roots
    # /allowed/../allowed2 normalises to /allowed2, which merely starts with the text "/allowed".
    with pytest.raises(SourceError, match="outside the allowed roots"):
        validate_repo_path(str(allowed / ".." / outside.name), [allowed])
    with pytest.raises(SourceError, match="outside the allowed roots"):
        validate_repo_path(str(outside / "secret"), [allowed])


def test_dotdot_staying_inside_the_root_is_accepted(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    path = allowed / "repo" / "src" / ".."
    assert validate_repo_path(str(path), [allowed]) == (allowed / "repo").resolve()


def test_symlink_escaping_the_root_is_rejected(roots: tuple[Path, Path]) -> None:
    allowed, outside = roots
    (allowed / "sneaky").symlink_to(outside / "secret", target_is_directory=True)
    with pytest.raises(SourceError, match="outside the allowed roots"):
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
    with pytest.raises(SourceError, match="must be absolute"):
        validate_repo_path(raw, [allowed])


def test_nul_byte_is_rejected(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    with pytest.raises(SourceError, match="NUL"):
        validate_repo_path(str(allowed / "repo") + "\x00/etc", [allowed])


def test_missing_path_is_rejected(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    with pytest.raises(SourceError, match="does not exist"):
        validate_repo_path(str(allowed / "missing"), [allowed])


def test_file_is_rejected(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    with pytest.raises(SourceError, match="not a directory"):
        validate_repo_path(str(allowed / "notes.txt"), [allowed])


def test_no_roots_configured_is_a_clear_error(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    with pytest.raises(SourceError, match="ALLOWED_REPO_ROOTS is empty"):
        validate_repo_path(str(allowed / "repo"), [])


def test_empty_path_is_rejected() -> None:
    with pytest.raises(SourceError, match="non-empty"):
        validate_repo_path("  ", [Path("/")])


# -- a whole request: what the gateway queues and the indexer reads ----------------------------


def test_check_source_normalises_a_path(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    settings = Settings(allowed_repo_roots=(allowed,))
    checked = check_source(settings, repo_path=str(allowed / "repo" / "src" / ".."), repo_url=None, ref="main")
    assert checked.repo_path == str((allowed / "repo").resolve())
    assert (checked.repo_url, checked.ref, checked.name) == (None, None, "repo")


def test_check_source_refuses_the_seed_traversal() -> None:
    settings = Settings(allowed_repo_roots=(Path("/var/data"),))
    with pytest.raises(SourceError, match="outside the allowed roots"):
        check_source(settings, repo_path="/var/data/../../etc/passwd", repo_url=None, ref=None)


@pytest.mark.parametrize(
    ("url", "name"),
    [("https://example.com/org/tool.git", "tool"), ("git@example.com:org/tool.git", "tool"),
     ("git@example.com:tool.git", "tool"), ("https://example.com/org/tool/", "tool")],
)  # fmt: skip
def test_check_source_names_a_git_repository(url: str, name: str) -> None:
    checked = check_source(Settings(), repo_path=None, repo_url=url, ref="v1.0")
    assert (checked.repo_url, checked.ref, checked.name) == (url, "v1.0", name)


@pytest.mark.parametrize(("repo_path", "repo_url"), [(None, None), ("/r", "https://example.com/r.git")])
def test_check_source_wants_exactly_one_source(repo_path: str | None, repo_url: str | None) -> None:
    with pytest.raises(SourceError, match="exactly one"):
        check_source(Settings(), repo_path=repo_path, repo_url=repo_url, ref=None)


@pytest.mark.parametrize("project_id", ["", "-leading-dash", "has space", "semi;colon", "a/b", "x" * 129, "é"])
def test_bad_project_ids_are_refused(project_id: str) -> None:
    with pytest.raises(ValueError, match="project_id"):
        validate_project_id(project_id)


def test_outside_paths_do_not_reveal_whether_they_exist(roots: tuple[Path, Path]) -> None:
    allowed, outside = roots
    for target in (outside / "secret", outside / "no-such-dir"):
        with pytest.raises(SourceError, match="outside the allowed roots"):
            validate_repo_path(str(target), [allowed])


def test_symlink_loop_is_a_clear_error(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    (allowed / "loop-a").symlink_to(allowed / "loop-b")
    (allowed / "loop-b").symlink_to(allowed / "loop-a")
    with pytest.raises(SourceError, match="cannot be resolved"):
        validate_repo_path(str(allowed / "loop-a"), [allowed])


# -- git URLs and refs ------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(allowed_repo_roots=(tmp_path,), allowed_git_hosts=())


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/org/repo.git",
        "ssh://git@gitlab.example.org:2222/group/repo.git",
        "git@github.com:org/repo.git",
    ],
)
def test_accepted_urls(url: str, settings: Settings) -> None:
    assert validate_git_url(url, settings) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("--upload-pack=touch%20/tmp/pwned", "must not start with '-'"),
        ("-oProxyCommand=evil", "must not start with '-'"),
        ("http://example.org/repo.git", "scheme must be https, ssh or file"),
        ("ext::sh%20-c%20touch%20/tmp/pwned", "remote-helper syntax"),
        ("fd::17", "remote-helper syntax"),
        ("ftp://example.org/repo.git", "scheme must be https, ssh or file"),
        ("https://user:hunter2@github.com/org/repo.git", "must not contain credentials"),
        ("https://token@github.com/org/repo.git", "must not contain credentials"),
        ("file:///etc", "outside the allowed roots"),
        ("https:///nohost", "no host"),
        ("https://example.org/ repo", "without spaces"),
    ],
)
def test_rejected_urls(url: str, reason: str, settings: Settings) -> None:
    with pytest.raises(SourceError, match=re.escape(reason)) as caught:
        validate_git_url(url, settings)
    assert "hunter2" not in str(caught.value)


def test_host_allow_list(tmp_path: Path) -> None:
    settings = Settings(allowed_repo_roots=(tmp_path,), allowed_git_hosts="github.com, gitlab.example.org")  # type: ignore[arg-type]
    assert validate_git_url("https://github.com/a/b", settings)
    assert validate_git_url("git@gitlab.example.org:a/b.git", settings)
    with pytest.raises(SourceError, match="not in ALLOWED_GIT_HOSTS"):
        validate_git_url("https://evil.example.com/a/b", settings)


def test_file_urls_follow_the_path_rules(tmp_path: Path, settings: Settings) -> None:
    (tmp_path / "repo").mkdir()
    assert validate_git_url(f"file://{tmp_path}/repo", settings)


@pytest.mark.parametrize("ref", ["main", "v1.2.3", "feature/x", "0123456789abcdef0123456789abcdef01234567"])
def test_good_refs(ref: str) -> None:
    assert validate_ref(ref) == ref


@pytest.mark.parametrize(
    "ref", ["-b", "--upload-pack=x", "a..b", "with space", "x~1", "a:b", "refs/", "x.lock", "a\\b"]
)
def test_bad_refs(ref: str) -> None:
    with pytest.raises(SourceError, match="not a valid git"):
        validate_ref(ref)
