"""Code-aware tokens for full-text search, the same on the indexing and the query side.

PostgreSQL's parsers keep `getUserName` and `parse_config_file` as single words, so a query for
"user name" or "config file" would not match them. We split identifiers on case changes, `_`
and digits, and keep the whole identifier too, so both `getusername` and `user` match.
"""

from __future__ import annotations

import re

# Identifiers and numbers; everything else (operators, punctuation) separates tokens.
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
# Pieces of one identifier: "HTTPServerError" -> HTTP, Server, Error; "utf8Decode" -> utf, 8, Decode.
_PIECE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
# A token longer than this is noise (hashes, base64) and bloats the index.
MAX_TOKEN_LENGTH = 40


def code_tokens(text: str) -> list[str]:
    """Lower-case tokens: every identifier, plus its pieces when it has more than one."""
    tokens: list[str] = []
    for word in _WORD.findall(text):
        if len(word) > MAX_TOKEN_LENGTH:
            continue
        pieces = [piece.lower() for part in word.split("_") for piece in _PIECE.findall(part)]
        # The whole identifier without underscores: PostgreSQL's parser would split at "_" anyway.
        whole = word.replace("_", "").lower()
        if whole and (len(pieces) != 1 or pieces[0] != whole):
            tokens.append(whole)
        tokens.extend(pieces)
    return tokens


def search_document(*texts: str) -> str:
    """The text PostgreSQL turns into a chunk's tsvector (path, symbol and code)."""
    return " ".join(token for text in texts for token in code_tokens(text))
