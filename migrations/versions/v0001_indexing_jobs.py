"""indexing_jobs: the seed design's job table, plus what the Kubernetes executor needs.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Deviation from the seed, on purpose: repo_path is nullable because a job may name a git URL
instead (repo_url); the CHECK jobs_source_present requires one of the two.
"""

from __future__ import annotations

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

COLUMN_COMMENTS = {
    "id": "Opaque, high-entropy job handle returned to agents",
    "repository_id": "Repository this job indexes; set by the indexer once the repository row exists",
    "repo_path": "Absolute local path (validated against ALLOWED_REPO_ROOTS); NULL when repo_url is used",
    "repo_name": "Display name of the repository",
    "project_id": "Project (tenant) the job belongs to; every read is filtered by it",
    "force_reindex": "Re-embed every file even when its content hash is unchanged",
    "status": "Job lifecycle state (pending/running/completed/failed/cancelled)",
    "progress_percentage": "0..100, never decreases while running",
    "progress_message": "Human-readable phase message, e.g. 'Embedding chunks 5,000/45,000'",
    "files_scanned": "Files seen by the scanner",
    "files_indexed": "Files chunked and written",
    "chunks_created": "Chunks written to the new index generation",
    "error_message": "Why the job failed (safe to show an agent: no credentials)",
    "error_type": "Exception class name of the failure",
    "error_traceback": "Full stack trace, for operators",
    "created_at": "When the job was requested",
    "started_at": "When a worker claimed it and started",
    "completed_at": "When it reached completed or failed",
    "cancelled_at": "When cancellation was requested",
    "metadata": "Extensible metadata for logging context, user info, etc.",
    "worker_task_id": "Executor handle of the worker: local subprocess pid or Kubernetes pod name",
    "connection_id": "pg_backend_pid() of the worker's database session, to check liveness",
    "repo_url": "Git URL (https, ssh or file) when the source is not a local path; never holds credentials",
    "ref": "Git branch, tag or commit to index; NULL means the remote's default branch",
    "commit_sha": "Commit actually indexed, when the source is a git repository",
    "k8s_namespace": "Namespace of the Kubernetes Job running this job (Kubernetes executor only)",
    "k8s_job_name": "Name of the Kubernetes Job running this job (Kubernetes executor only)",
    "attempt_count": "How many times a worker has claimed this job",
    "heartbeat_at": "Last sign of life from the worker; moves with progress so a dead worker shows",
    "claimed_by": "Identity of the executor that claimed the job (host/pid or operator pod)",
}


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE indexing_jobs (
            id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            repository_id UUID,
            repo_path TEXT,
            repo_name TEXT NOT NULL,
            project_id VARCHAR(255) NOT NULL,
            force_reindex BOOLEAN NOT NULL DEFAULT FALSE,
            status VARCHAR(20) NOT NULL
                CONSTRAINT ck_indexing_jobs_status
                CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
            progress_percentage INTEGER NOT NULL DEFAULT 0
                CONSTRAINT ck_indexing_jobs_progress_range
                CHECK (progress_percentage >= 0 AND progress_percentage <= 100),
            progress_message TEXT,
            files_scanned INTEGER NOT NULL DEFAULT 0,
            files_indexed INTEGER NOT NULL DEFAULT 0,
            chunks_created INTEGER NOT NULL DEFAULT 0,
            error_message TEXT,
            error_type VARCHAR(255),
            error_traceback TEXT,
            created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
            started_at TIMESTAMPTZ,
            completed_at TIMESTAMPTZ,
            cancelled_at TIMESTAMPTZ,
            metadata JSONB DEFAULT '{}'::jsonb,
            worker_task_id TEXT,
            connection_id TEXT,
            repo_url TEXT,
            ref TEXT,
            commit_sha TEXT,
            k8s_namespace TEXT,
            k8s_job_name TEXT,
            attempt_count INTEGER NOT NULL DEFAULT 0 CONSTRAINT ck_indexing_jobs_attempts CHECK (attempt_count >= 0),
            heartbeat_at TIMESTAMPTZ,
            claimed_by TEXT,
            CONSTRAINT ck_indexing_jobs_source_present CHECK (repo_path IS NOT NULL OR repo_url IS NOT NULL)
        )
        """
    )
    op.execute("CREATE INDEX idx_indexing_jobs_status ON indexing_jobs (status) WHERE status IN ('pending', 'running')")
    op.execute("CREATE INDEX idx_indexing_jobs_project_id ON indexing_jobs (project_id)")
    op.execute("CREATE INDEX idx_indexing_jobs_created_at ON indexing_jobs (created_at DESC)")
    op.execute(
        "CREATE INDEX idx_indexing_jobs_repository_id ON indexing_jobs (repository_id) WHERE repository_id IS NOT NULL"
    )
    op.execute(
        "COMMENT ON TABLE indexing_jobs IS 'Background indexing job tracking with PostgreSQL-native state persistence'"
    )
    for column, comment in COLUMN_COMMENTS.items():
        escaped = comment.replace("'", "''")
        op.execute(f"COMMENT ON COLUMN indexing_jobs.{column} IS '{escaped}'")


def downgrade() -> None:
    op.execute("DROP TABLE indexing_jobs")
