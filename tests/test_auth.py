"""The tokens file: what it accepts, and the clear errors for what it does not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcp_gateway.auth import ProjectTokenVerifier, TokenFileError, grant_entry, load_grants


def write(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"tokens": entries}))
    return path


async def test_a_valid_file_grants_its_tokens_and_nothing_else(tmp_path: Path) -> None:
    grants = load_grants(
        write(
            tmp_path / "t.json",
            [grant_entry("ci", "secret-1", ["team-a"], "team-a"), grant_entry("x", "s2", ["*"], None)],
        )
    )
    verifier = ProjectTokenVerifier(grants)
    token = await verifier.verify_token("secret-1")
    assert token is not None
    assert token.client_id == "ci"
    assert token.claims == {"projects": ["team-a"], "default_project": "team-a"}
    assert await verifier.verify_token("secret-") is None
    assert await verifier.verify_token("") is None


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([grant_entry("ci", "a", ["p"], None), grant_entry("ci", "b", ["q"], None)], "token names must be unique"),
        ([grant_entry("ci", "a", ["../etc"], None)], "entry 1"),
        ([grant_entry("ci", "a", ["p"], "Bad Project")], "entry 1"),
        ([{"name": "ci", "projects": ["p"]}], "entry 1: 'sha256'"),
        ([{"name": "ci", "sha256": "not hex", "projects": ["p"]}], "entry 1"),
        ([], "defines no tokens"),
    ],
)
def test_bad_files_are_refused_with_the_entry_named(
    tmp_path: Path, entries: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(TokenFileError, match=message):
        load_grants(write(tmp_path / "t.json", entries))


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="does not exist"):
        load_grants(tmp_path / "absent.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(TokenFileError, match="cannot be read"):
        load_grants(tmp_path / "broken.json")
