"""Running the gateway: `codebase-mcp gateway` (a cluster) and `codebase-mcp dev` (one machine)."""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

import uvicorn

from codebase_mcp.settings import Settings
from mcp_gateway.auth import ANY_PROJECT, grant_entry
from mcp_gateway.local_executor import LocalExecutor
from mcp_gateway.server import build_server

log = logging.getLogger("codebase_mcp.gateway")
DEV_PROJECT = "default"


def serve(settings: Settings, dsn: str, host: str, port: int, *, local_executor: bool) -> None:
    """Serve MCP at http://HOST:PORT/mcp until interrupted (with the local executor if asked)."""
    executor = LocalExecutor(settings, dsn) if local_executor else None
    app = build_server(settings, dsn, executor=executor).http_app(path="/mcp")
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=15)


def dev_token(home: Path) -> tuple[str, Path]:
    """The local user's token (generated once, kept in HOME/token) and a tokens file granting it
    every project, with `default` as its default project."""
    home.mkdir(parents=True, exist_ok=True)
    token_file = home / "token"
    if token_file.exists():
        token = token_file.read_text().strip()
    else:
        token = secrets.token_urlsafe(32)
        token_file.touch(mode=0o600)
        token_file.write_text(token + "\n")
    tokens_file = home / "tokens.json"
    tokens_file.touch(mode=0o600)
    tokens_file.write_text(json.dumps({"tokens": [grant_entry("dev", token, [ANY_PROJECT], DEV_PROJECT)]}, indent=2))
    return token, tokens_file


def client_configuration(url: str, token_file: Path) -> str:
    """Ready-to-paste client setup (the token itself is read from its file, not pasted around)."""
    cursor = {
        "mcpServers": {"codebase": {"url": url, "headers": {"Authorization": "Bearer ${env:CODEBASE_MCP_TOKEN}"}}}
    }
    vscode = {
        "servers": {
            "codebase": {"type": "http", "url": url, "headers": {"Authorization": "Bearer ${input:codebase-token}"}}
        },
        "inputs": [
            {"type": "promptString", "id": "codebase-token", "description": "codebase-mcp token", "password": True}
        ],
    }
    return "\n".join(
        [
            f"  export CODEBASE_MCP_TOKEN=$(cat {token_file})",
            "",
            "Claude Code:",
            f'  claude mcp add --transport http codebase {url} --header "Authorization: Bearer $CODEBASE_MCP_TOKEN"',
            "Cursor (.cursor/mcp.json):",
            f"  {json.dumps(cursor)}",
            "VS Code (.vscode/mcp.json):",
            f"  {json.dumps(vscode)}",
        ]
    )
