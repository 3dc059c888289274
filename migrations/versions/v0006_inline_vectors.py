"""Keep each chunk's vector and tsvector in its row, and count each generation's chunks.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24

A chunk row holds a 1,544-byte vector, its tsvector and its code (about 470 characters in a
typical chunk of click or requests, up to a few KB). Past 2 KB PostgreSQL moves the largest values
out of the row into TOAST, the vector first (and with longer chunks the tsvector), so an exact scan
of a repository's 5,000 chunks read 17,000 buffers: 20-31 ms, no faster than the HNSW graph, and
ranking full-text matches of longer chunks read a TOAST entry per match. With both columns stored
MAIN and rows kept whole up to 4,000 bytes, the code text goes out of line instead (search reads
it for the 10 hits only): the exact scan took 4-12 ms, and with 120-word chunks a whole search's
p95 fell from 28-29 to 17-21 ms at 50,000 chunks (docs/benchmarks.md, fifth round: b3ab5dd, 2026-11-24).
toast_tuple_target is a per-table setting a partition does not take from its parent, so every
existing partition gets it here and ensure_project gives it to each new one. Rows already written
keep their layout until their files are indexed again (rewriting them here would insert every
vector into the HNSW graph a second time).

index_generations.chunk_count is the number of chunks a generation makes searchable, written when
the indexer activates it: search reads it to decide whether a repository filter is answered by an
exact scan of the repository's chunks or by the HNSW graph (codebase_mcp/search.py), and
list_repositories shows it.
"""

from __future__ import annotations

from codebase_mcp.db.migrations import run_sql_script

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

# Below PostgreSQL's 8,160-byte page maximum: about two whole rows a page.
TOAST_TUPLE_TARGET = 4000

# ensure_project as 0005 defined it, plus the per-partition TOAST target.
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
    EXECUTE format('ALTER TABLE %I ALTER COLUMN search_tsv SET STATISTICS 1000', part);
    EXECUTE format('ALTER TABLE %I SET (toast_tuple_target = {target})', part);
    RETURN part;
END;
$$;
"""


def _partitions(statement: str) -> str:
    # One statement per existing partition (projects lists them all).
    return f"""
DO $$
DECLARE
    part TEXT;
BEGIN
    FOR part IN SELECT chunk_partition FROM projects LOOP
        EXECUTE format('{statement}', part);
    END LOOP;
END;
$$;
"""


UPGRADE = f"""
-- On the partitioned table: recurses into every partition, and new partitions take it.
ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE MAIN, ALTER COLUMN search_tsv SET STORAGE MAIN;
{_partitions(f"ALTER TABLE %I SET (toast_tuple_target = {TOAST_TUPLE_TARGET})")}
{ENSURE_PROJECT.replace("{target}", str(TOAST_TUPLE_TARGET))}
ALTER TABLE index_generations ADD COLUMN chunk_count INTEGER NOT NULL DEFAULT 0
    CONSTRAINT ck_index_generations_chunk_count CHECK (chunk_count >= 0);
COMMENT ON COLUMN index_generations.chunk_count IS
    'Chunks this generation makes searchable; written when the indexer activates it';
UPDATE index_generations g
   SET chunk_count = (SELECT count(*) FROM generation_files f
                        JOIN chunks c ON c.file_version_id = f.file_version_id AND c.project_id = g.project_id
                       WHERE f.generation_id = g.id);
"""

_ENSURE_PROJECT_0005 = "\n".join(line for line in ENSURE_PROJECT.splitlines() if "toast_tuple_target" not in line)

DOWNGRADE = f"""
ALTER TABLE index_generations DROP COLUMN chunk_count;
{_ENSURE_PROJECT_0005}
{_partitions("ALTER TABLE %I RESET (toast_tuple_target)")}
ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE EXTERNAL, ALTER COLUMN search_tsv SET STORAGE EXTENDED;
"""


def upgrade() -> None:
    run_sql_script(UPGRADE)


def downgrade() -> None:
    run_sql_script(DOWNGRADE)
