"""Bearer tokens and the projects they may use.

Tokens live in a JSON file (TOKENS_FILE; later a mounted Kubernetes Secret), which holds only
SHA-256 digests, never the tokens themselves:

    {"tokens": [{"name": "alice", "sha256": "<hex digest of the token>",
                 "projects": ["team-a", "team-b"], "default_project": "team-a"}]}

`"projects": ["*"]` allows every project (the single local user of `codebase-mcp dev`).
Lookups compare digests with hmac.compare_digest over every entry, so neither the time taken nor
an early exit reveals how much of a guess was right. Tokens are never logged.

Project resolution for a tool call: the explicit project_id if the token may use it, else the
token's default project, else a clear error listing what the token may use.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastmcp.server.auth import AccessToken, TokenVerifier
from fastmcp.server.dependencies import get_access_token

from codebase_mcp.errors import AccessDeniedError, UserError
from codebase_mcp.jobs import validate_project_id

ANY_PROJECT = "*"


class TokenFileError(UserError, ValueError):
    """The tokens file is missing or malformed; the message says where."""


@dataclass(frozen=True)
class Grant:
    name: str
    digest: bytes
    projects: frozenset[str]
    default_project: str | None

    def allows(self, project_id: str) -> bool:
        return ANY_PROJECT in self.projects or project_id in self.projects


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def load_grants(path: Path) -> list[Grant]:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise TokenFileError(f"tokens file {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as error:
        raise TokenFileError(f"tokens file {path} cannot be read: {error}") from None
    grants: list[Grant] = []
    for number, entry in enumerate(document.get("tokens", []), start=1):
        try:
            projects = frozenset(entry["projects"])
            default = entry.get("default_project")
            for project in projects - {ANY_PROJECT}:
                validate_project_id(project)
            if default is not None:
                validate_project_id(default)
            name = str(entry["name"])
            # The name is the token's client_id, which also scopes its MCP tasks: it must be unique.
            if any(grant.name == name for grant in grants):
                raise ValueError(f"the name {name!r} is used by an earlier entry; token names must be unique")
            grants.append(Grant(name, bytes.fromhex(entry["sha256"]), projects, default))
        except (KeyError, TypeError, ValueError) as error:
            raise TokenFileError(f"tokens file {path}, entry {number}: {error}") from None
    if not grants:
        raise TokenFileError(f"tokens file {path} defines no tokens")
    return grants


def grant_entry(name: str, token: str, projects: list[str], default_project: str | None) -> dict[str, Any]:
    """A tokens-file entry for a token (what `codebase-mcp dev` writes for its generated token)."""
    return {"name": name, "sha256": digest(token).hex(), "projects": projects, "default_project": default_project}


class ProjectTokenVerifier(TokenVerifier):
    """Accepts the bearer tokens of the tokens file; anything else gets HTTP 401."""

    def __init__(self, grants: list[Grant]) -> None:
        super().__init__()
        self._grants = grants

    async def verify_token(self, token: str) -> AccessToken | None:
        presented = digest(token)
        found: Grant | None = None
        for grant in self._grants:  # no early exit: every entry is compared
            if hmac.compare_digest(presented, grant.digest):
                found = grant
        if found is None:
            return None
        return AccessToken(
            token=token,
            client_id=found.name,
            scopes=[],
            claims={"projects": sorted(found.projects), "default_project": found.default_project},
        )


def resolve_project(requested: str | None) -> str:
    """The project a tool call acts on, checked against the caller's token."""
    token = get_access_token()
    if token is None:  # only reachable without auth, which the gateway never runs
        raise AccessDeniedError("not authenticated")
    projects = set(token.claims.get("projects", []))
    default = token.claims.get("default_project")
    if requested:
        try:
            validate_project_id(requested)
        except ValueError as error:
            raise UserError(str(error)) from None
        if ANY_PROJECT in projects or requested in projects:
            return requested
        raise AccessDeniedError(
            f"this token may not use project {requested!r}; it may use: {', '.join(sorted(projects))}"
        )
    if default:
        return str(default)
    raise UserError(f"give project_id: this token may use {', '.join(sorted(projects))} and has no default project")
