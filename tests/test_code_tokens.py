"""Code-aware tokens (codebase_mcp/code_tokens.py): identifiers split the way people search."""

from __future__ import annotations

from codebase_mcp.code_tokens import code_tokens


def test_code_tokens_split_identifiers() -> None:
    tokens = code_tokens("getUserName(parse_config_file, HTTPServer2)")
    for expected in ["getusername", "get", "user", "name", "parseconfigfile", "parse", "config", "file", "http"]:
        assert expected in tokens
    assert "server" in tokens
