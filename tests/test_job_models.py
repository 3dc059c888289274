"""The job models (codebase_mcp/jobs.py): statuses and the frozen progress snapshot."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

from codebase_mcp.jobs import ACTIVE_STATUSES, TERMINAL_STATUSES, IndexingJobProgress, IndexingJobStatus


def progress(**overrides: Any) -> IndexingJobProgress:
    values: dict[str, Any] = {
        "job_id": uuid.uuid4(),
        "status": "running",
        "progress_percentage": 45,
        "progress_message": "Embedding chunks 5,000/10,000",
        "files_scanned": 10585,
        "files_indexed": 5000,
        "chunks_created": 45000,
        "created_at": datetime.now(UTC),
    }
    values.update(overrides)
    return IndexingJobProgress(**values)


def test_statuses_split_into_active_and_terminal() -> None:
    assert set(IndexingJobStatus) == ACTIVE_STATUSES | TERMINAL_STATUSES
    assert not ACTIVE_STATUSES & TERMINAL_STATUSES
    assert IndexingJobStatus.CANCELLED.is_terminal
    assert not IndexingJobStatus.RUNNING.is_terminal


def test_progress_is_frozen() -> None:
    snapshot = progress()
    assert snapshot.status is IndexingJobStatus.RUNNING
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        snapshot.progress_percentage = 50


@pytest.mark.parametrize(
    ("field", "value"),
    [("progress_percentage", 101), ("progress_percentage", -1), ("files_indexed", -3), ("status", "queued")],
)
def test_progress_rejects_impossible_values(field: str, value: object) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        progress(**{field: value})


def test_progress_serialises_for_agents() -> None:
    dumped = progress(error_message=None).model_dump(mode="json")
    assert dumped["status"] == "running"
    assert dumped["progress_percentage"] == 45
    assert isinstance(dumped["job_id"], str)
