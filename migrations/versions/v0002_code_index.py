"""Code index: projects, repositories, index generations, files, chunks, embedding cache.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Project isolation (docs/architecture.md): one shared schema, every row carries project_id, and
chunks, the only big table, is LIST-partitioned by project_id. Each project's partition has its
own HNSW graph, so a vector search for a small project never has to filter a large project's
neighbours away (it still returns its full k), and a query for one project is pruned to that
project's partition. ensure_project() creates the project row and its partition; with no default
partition, a chunk for an unknown project is refused by the database.
"""

from __future__ import annotations

from codebase_mcp.db.migrations import run_sql_script

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

UPGRADE = r"""
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE projects (
    id VARCHAR(128) PRIMARY KEY
        CONSTRAINT ck_projects_id_alphabet CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    chunk_partition TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
COMMENT ON TABLE projects IS 'Tenants: every other table is filtered by project_id';
COMMENT ON COLUMN projects.chunk_partition IS 'Name of this project''s partition of chunks';

CREATE TABLE repositories (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id VARCHAR(128) NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    source_kind TEXT NOT NULL CONSTRAINT ck_repositories_source_kind CHECK (source_kind IN ('path', 'git')),
    source TEXT NOT NULL,
    ref TEXT,
    active_generation_id BIGINT,
    last_commit_sha TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_repositories_source UNIQUE NULLS NOT DISTINCT (project_id, source_kind, source, ref)
);
COMMENT ON TABLE repositories IS 'An indexed source (local directory or git URL at a ref) inside one project';
COMMENT ON COLUMN repositories.source IS 'Resolved local path, or git URL without credentials';
COMMENT ON COLUMN repositories.active_generation_id IS
    'The generation search reads; switched in one transaction when a re-index completes';
COMMENT ON COLUMN repositories.last_commit_sha IS 'Commit of the active generation, for git sources';

CREATE TABLE index_generations (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repository_id UUID NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    project_id VARCHAR(128) NOT NULL,
    job_id UUID,
    embedding_model TEXT NOT NULL,
    commit_sha TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    activated_at TIMESTAMPTZ,
    CONSTRAINT uq_index_generations_id_repository UNIQUE (id, repository_id)
);
COMMENT ON TABLE index_generations IS
    'One complete build of a repository''s index; only the repository''s active one is searched';
COMMENT ON COLUMN index_generations.job_id IS 'Job that built it (no FK: old jobs are purged)';

-- The active generation must belong to the same repository; deleting it unsets the pointer only.
ALTER TABLE repositories
    ADD CONSTRAINT fk_repositories_active_generation
    FOREIGN KEY (active_generation_id, id) REFERENCES index_generations (id, repository_id)
    ON DELETE SET NULL (active_generation_id);

ALTER TABLE indexing_jobs
    ADD CONSTRAINT fk_indexing_jobs_repository
    FOREIGN KEY (repository_id) REFERENCES repositories (id) ON DELETE SET NULL;

CREATE TABLE file_contents (
    project_id VARCHAR(128) NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    content_sha256 BYTEA NOT NULL CONSTRAINT ck_file_contents_sha CHECK (octet_length(content_sha256) = 32),
    content TEXT NOT NULL,
    PRIMARY KEY (project_id, content_sha256)
);
COMMENT ON TABLE file_contents IS
    'Indexed file text, stored once per project per content hash (git clones are deleted after indexing)';

-- A file version is immutable: one file's text at one path in one repository, with its chunks.
-- A generation is the set of versions it contains (generation_files), so a re-index carries an
-- unchanged file into the new generation with one membership row: no copy of its chunks, no
-- second insertion of their vectors into the HNSW graph.
CREATE TABLE file_versions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id VARCHAR(128) NOT NULL,
    repository_id UUID NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    content_sha256 BYTEA NOT NULL CONSTRAINT ck_file_versions_sha CHECK (octet_length(content_sha256) = 32),
    language TEXT,
    size_bytes BIGINT NOT NULL CONSTRAINT ck_file_versions_size CHECK (size_bytes >= 0),
    line_count INTEGER NOT NULL CONSTRAINT ck_file_versions_lines CHECK (line_count >= 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT fk_file_versions_content FOREIGN KEY (project_id, content_sha256)
        REFERENCES file_contents (project_id, content_sha256)
);
COMMENT ON TABLE file_versions IS
    'Immutable (repository, path, content) with its chunks; generations list the versions they contain';
COMMENT ON COLUMN file_versions.path IS 'Relative to the repository root, with / separators';
COMMENT ON COLUMN file_versions.content_sha256 IS
    'SHA-256 of the file bytes: what incremental re-indexing compares';
CREATE INDEX idx_file_versions_repository_path ON file_versions (repository_id, path);
CREATE INDEX idx_file_versions_content ON file_versions (project_id, content_sha256);

CREATE TABLE generation_files (
    generation_id BIGINT NOT NULL REFERENCES index_generations (id) ON DELETE CASCADE,
    file_version_id BIGINT NOT NULL REFERENCES file_versions (id) ON DELETE CASCADE,
    PRIMARY KEY (generation_id, file_version_id)
);
COMMENT ON TABLE generation_files IS 'Which file versions make up a generation';
CREATE INDEX idx_generation_files_version ON generation_files (file_version_id);

-- Identity columns on partitioned tables need PostgreSQL 17; a plain sequence works on 15+.
CREATE SEQUENCE chunks_id_seq AS BIGINT;
CREATE TABLE chunks (
    id BIGINT NOT NULL DEFAULT nextval('chunks_id_seq'),
    project_id VARCHAR(128) NOT NULL,
    repository_id UUID NOT NULL,
    file_version_id BIGINT NOT NULL REFERENCES file_versions (id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    language TEXT,
    symbol_name TEXT,
    start_line INTEGER NOT NULL CONSTRAINT ck_chunks_start CHECK (start_line >= 1),
    end_line INTEGER NOT NULL,
    content TEXT NOT NULL,
    content_sha256 BYTEA NOT NULL CONSTRAINT ck_chunks_sha CHECK (octet_length(content_sha256) = 32),
    embedding vector(384) NOT NULL,
    search_tsv TSVECTOR NOT NULL,
    PRIMARY KEY (project_id, id),
    CONSTRAINT ck_chunks_lines CHECK (end_line >= start_line)
) PARTITION BY LIST (project_id);
ALTER SEQUENCE chunks_id_seq OWNED BY chunks.id;
COMMENT ON TABLE chunks IS 'Searchable pieces of files; partitioned by project_id (one partition per project)';
COMMENT ON COLUMN chunks.symbol_name IS 'Function/class the chunk belongs to (kept by every piece of a split symbol)';
COMMENT ON COLUMN chunks.content_sha256 IS 'SHA-256 of the text that was embedded (the embedding cache key)';
COMMENT ON COLUMN chunks.embedding IS 'Normalised all-MiniLM-L6-v2 embedding (cosine distance)';
COMMENT ON COLUMN chunks.search_tsv IS 'Full-text vector over code-aware tokens (identifiers split on case and _)';
CREATE INDEX idx_chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops)
    WITH (m = 16, ef_construction = 64);
CREATE INDEX idx_chunks_search_tsv ON chunks USING gin (search_tsv);
CREATE INDEX idx_chunks_file_version ON chunks (file_version_id);

CREATE TABLE embedding_cache (
    model TEXT NOT NULL,
    content_sha256 BYTEA NOT NULL CONSTRAINT ck_embedding_cache_sha CHECK (octet_length(content_sha256) = 32),
    embedding vector(384) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (model, content_sha256)
);
COMMENT ON TABLE embedding_cache IS
    'Embeddings by (model, sha256 of chunk text): the same text is never embedded twice';

-- Creates a project and its chunks partition. Idempotent and safe to call concurrently: the
-- advisory lock serialises creators, so two indexers starting the same new project cannot race
-- on CREATE TABLE. The partition name is derived from a hash, never from the raw id.
CREATE FUNCTION ensure_project(p_project_id VARCHAR) RETURNS TEXT
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
    RETURN part;
END;
$$;
COMMENT ON FUNCTION ensure_project(VARCHAR) IS 'Create a project and its chunks partition if missing';
"""

DOWNGRADE = """
DROP FUNCTION IF EXISTS ensure_project(VARCHAR);
DROP TABLE IF EXISTS embedding_cache;
DROP TABLE IF EXISTS chunks;
DROP TABLE IF EXISTS generation_files;
DROP TABLE IF EXISTS file_versions;
DROP TABLE IF EXISTS file_contents;
ALTER TABLE indexing_jobs DROP CONSTRAINT IF EXISTS fk_indexing_jobs_repository;
ALTER TABLE repositories DROP CONSTRAINT IF EXISTS fk_repositories_active_generation;
DROP TABLE IF EXISTS index_generations;
DROP TABLE IF EXISTS repositories;
DROP TABLE IF EXISTS projects;
"""


def upgrade() -> None:
    run_sql_script(UPGRADE)


def downgrade() -> None:
    # The vector extension stays: other schemas in the same database may use it.
    run_sql_script(DOWNGRADE)
