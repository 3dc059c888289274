"""Weight path and symbol tokens above code tokens in chunks.search_tsv.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

The indexer now writes `setweight(names, 'A') || body`, so ts_rank_cd ranks a chunk whose path or
symbol matches the query above one that only mentions the words (bench/quality.py measured it).
Chunks written before keep their text and embeddings; this adds the weighted names to their
tsvector (their names also stay at the default weight, which ranks the same), in batches, so an
unchanged file ranks like a re-indexed one without re-embedding anything.
"""

from __future__ import annotations

from typing import Any

from codebase_mcp.code_tokens import search_document
from codebase_mcp.db.migrations import run_sql_script, run_with_connection

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None
BATCH = 5000

UPDATE_BATCH = """
UPDATE chunks c SET search_tsv = setweight(to_tsvector('english', u.names), 'A') || c.search_tsv
  FROM unnest($1::varchar[], $2::bigint[], $3::text[]) AS u(project_id, id, names)
 WHERE c.project_id = u.project_id AND c.id = u.id
"""


async def _reweight(conn: Any) -> None:
    last: tuple[str, int] = ("", -1)
    while True:
        rows = await conn.fetch(
            "SELECT project_id, id, path, symbol_name FROM chunks WHERE (project_id, id) > ($1, $2)"
            " ORDER BY project_id, id LIMIT $3",
            last[0],
            last[1],
            BATCH,
        )
        if not rows:
            return
        await conn.execute(
            UPDATE_BATCH,
            [row["project_id"] for row in rows],
            [row["id"] for row in rows],
            [search_document(row["path"], row["symbol_name"] or "") for row in rows],
        )
        last = (rows[-1]["project_id"], rows[-1]["id"])


def upgrade() -> None:
    run_with_connection(_reweight)


def downgrade() -> None:
    # Every lexeme back to the default weight: ranks as before 0004 did.
    run_sql_script("UPDATE chunks SET search_tsv = setweight(search_tsv, 'D') WHERE search_tsv <> ''")
