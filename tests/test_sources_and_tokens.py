"""Source URL/ref rules, code-aware tokens and path globs: small pure functions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from codebase_mcp.code_tokens import code_tokens
from codebase_mcp.search import SearchError, glob_to_regex
from codebase_mcp.settings import Settings
from indexer_image.sources import SourceError, validate_git_url, validate_ref


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


def test_code_tokens_split_identifiers() -> None:
    tokens = code_tokens("getUserName(parse_config_file, HTTPServer2)")
    for expected in ["getusername", "get", "user", "name", "parseconfigfile", "parse", "config", "file", "http"]:
        assert expected in tokens
    assert "server" in tokens


@pytest.mark.parametrize(
    ("glob", "matches", "misses"),
    [
        ("*.py", ["a.py", "src/deep/b.py"], ["a.pyc", "a.ts"]),
        ("src/**/*.ts", ["src/a.ts", "src/x/y/b.ts"], ["lib/a.ts", "src/a.tsx"]),
        ("src/*.go", ["src/main.go"], ["src/pkg/main.go"]),
        ("tests/test_?.py", ["tests/test_a.py"], ["tests/test_ab.py"]),
        ("a+b(c).py", ["a+b(c).py"], ["aab(c).py"]),
    ],
)
def test_glob_to_regex(glob: str, matches: list[str], misses: list[str]) -> None:
    pattern = re.compile(glob_to_regex(glob))
    assert all(pattern.search(path) for path in matches)
    assert not any(pattern.search(path) for path in misses)


def test_bad_glob() -> None:
    with pytest.raises(SearchError):
        glob_to_regex("")
