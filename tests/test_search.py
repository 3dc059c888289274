"""Search filters (codebase_mcp/search.py): path globs as the SQL sees them."""

from __future__ import annotations

import re

import pytest

from codebase_mcp.search import SearchError, glob_to_regex


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
