"""Indexing job models shared by the gateway, the executors and the indexer.

They mirror the indexing_jobs table (migrations/versions/v0001_indexing_jobs.py): the status
values here and the table's CHECK constraint must stay the same set.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

# Project ids become part of every query and of partition bookkeeping: keep them to a plain,
# printable alphabet so they can never smuggle quoting or path characters anywhere.
PROJECT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class IndexingJobStatus(StrEnum):
    """Job lifecycle states; the same set as the table's status CHECK constraint."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({IndexingJobStatus.COMPLETED, IndexingJobStatus.FAILED, IndexingJobStatus.CANCELLED})
ACTIVE_STATUSES = frozenset({IndexingJobStatus.PENDING, IndexingJobStatus.RUNNING})


def validate_project_id(value: str) -> str:
    if not PROJECT_ID_PATTERN.fullmatch(value):
        raise ValueError(
            "project_id must be 1-128 characters of letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit; got {value!r}"
        )
    return value


class IndexingJobProgress(BaseModel):
    """A snapshot of one job's state, as served to agents (immutable)."""

    model_config = ConfigDict(frozen=True)

    job_id: UUID
    status: IndexingJobStatus
    progress_percentage: int = Field(ge=0, le=100)
    progress_message: str
    files_scanned: int = Field(ge=0)
    files_indexed: int = Field(ge=0)
    chunks_created: int = Field(ge=0)
    error_message: str | None = None
    error_type: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None
