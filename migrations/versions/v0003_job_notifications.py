"""NOTIFY on indexing_jobs changes, so executors wake at once instead of polling.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

Channel `indexing_jobs`, payload `<job id>:<status>`, sent when a job is inserted or its status
changes. NOTIFY is transactional: it reaches listeners only when the change commits.
"""

from __future__ import annotations

from codebase_mcp.db.migrations import run_sql_script

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

UPGRADE = """
CREATE FUNCTION notify_indexing_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('indexing_jobs', NEW.id::text || ':' || NEW.status);
    RETURN NULL;
END;
$$;
CREATE TRIGGER trg_indexing_jobs_notify_insert AFTER INSERT ON indexing_jobs
    FOR EACH ROW EXECUTE FUNCTION notify_indexing_job();
CREATE TRIGGER trg_indexing_jobs_notify_status AFTER UPDATE OF status ON indexing_jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION notify_indexing_job();
"""

DOWNGRADE = """
DROP TRIGGER IF EXISTS trg_indexing_jobs_notify_status ON indexing_jobs;
DROP TRIGGER IF EXISTS trg_indexing_jobs_notify_insert ON indexing_jobs;
DROP FUNCTION IF EXISTS notify_indexing_job();
"""


def upgrade() -> None:
    run_sql_script(UPGRADE)


def downgrade() -> None:
    run_sql_script(DOWNGRADE)
