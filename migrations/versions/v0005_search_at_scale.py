"""Search at a million chunks: a denser HNSW graph, and finer statistics for chunks.search_tsv.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

Search keeps the rarest query terms while their matches, estimated from ANALYZE's most common
lexemes, stay within a budget (codebase_mcp/search.py, _text_query). At the default statistics
target ANALYZE lists 1,000 lexemes, and at a million chunks a term missing from that list may
still be in thousands of chunks; at 1,000 it lists 10,000. Set on every existing partition and,
through ensure_project, on each new one (a partition does not take its parent's target).

The HNSW index is rebuilt with ef_construction 128 instead of pgvector's default 64: at a million
chunks recall@10 against exact search at ef_search 100 went from 0.91 to 0.98 (1.00 at 200), for
about 0.9 ms more per inserted chunk, small next to embedding it (bench/search.py,
docs/benchmarks.md). The rebuild reads every project's vectors once.
"""

from __future__ import annotations

from codebase_mcp.db.migrations import run_sql_script

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

STATISTICS_TARGET = 1000

ENSURE_PROJECT = """
CREATE OR REPLACE FUNCTION ensure_project(p_project_id VARCHAR) RETURNS TEXT
LANGUAGE plpgsql AS $$
DECLARE
    part TEXT;
BEGIN
    SELECT chunk_partition INTO part FROM projects WHERE id = p_project_id;
    IF part IS NOT NULL THEN
        RETURN part;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('codebase_mcp.ensure_project'));
    SELECT chunk_partition INTO part FROM projects WHERE id = p_project_id;
    IF part IS NOT NULL THEN
        RETURN part;
    END IF;
    part := 'chunks_p_' || md5(p_project_id);
    INSERT INTO projects (id, chunk_partition) VALUES (p_project_id, part);
    EXECUTE format('CREATE TABLE %I PARTITION OF chunks FOR VALUES IN (%L)', part, p_project_id);
    EXECUTE format('ALTER TABLE %I ALTER COLUMN search_tsv SET STATISTICS {target}', part);
    RETURN part;
END;
$$;
"""


def _hnsw_index(ef_construction: int) -> str:
    # On the partitioned table: PostgreSQL builds one index per partition, and each new one gets its own.
    return (
        "DROP INDEX IF EXISTS idx_chunks_embedding_hnsw;"
        " CREATE INDEX idx_chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops)"
        f" WITH (m = 16, ef_construction = {ef_construction});"
    )


def _set_statistics(target: int) -> str:
    # ALTER TABLE on the partitioned table recurses into every partition.
    return f"ALTER TABLE chunks ALTER COLUMN search_tsv SET STATISTICS {target};"


def upgrade() -> None:
    ensure_project = ENSURE_PROJECT.replace("{target}", str(STATISTICS_TARGET))
    run_sql_script(_set_statistics(STATISTICS_TARGET) + ensure_project + _hnsw_index(128))


def downgrade() -> None:
    # -1: back to default_statistics_target; ensure_project as 0002 defined it.
    without = "\n".join(line for line in ENSURE_PROJECT.splitlines() if "SET STATISTICS" not in line)
    run_sql_script(_set_statistics(-1) + without + _hnsw_index(64))
