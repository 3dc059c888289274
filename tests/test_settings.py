"""Settings: documented defaults, environment overrides, and errors that name the variable."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from codebase_mcp.settings import (
    DEFAULT_EMBEDDING_MODEL,
    INDEXER_SETTINGS,
    ConfigError,
    Settings,
    indexer_environment,
    load_settings,
)

KNOBS = [
    "DATABASE_URL",
    "CODEBASE_MCP_HOME",
    "ALLOWED_REPO_ROOTS",
    "EMBEDDING_MODEL",
    "MAX_CONCURRENT_INDEXING_JOBS",
    "INDEXING_JOB_TIMEOUT_SECONDS",
    "JOB_STATUS_RETENTION_DAYS",
    "MAX_REPO_SIZE_GB",
    "PROGRESS_UPDATE_INTERVAL_SECONDS",
    "CANCELLATION_CHECK_INTERVAL_SECONDS",
    "EMBEDDED_DB_PORT",
    "MAX_FILE_SIZE_BYTES",
    "REPOSITORY_GRAPH_MIN_CHUNKS",
    "ALLOWED_GIT_HOSTS",
    "GIT_TOKEN",
    "GIT_TOKEN_FILE",
    "TOKENS_FILE",
    "TASKS_URL",
    "POD_NAMESPACE",
    "INDEXER_IMAGE",
    "INDEXER_DATABASE_SECRET",
    "INDEXER_CPU",
    "INDEXER_MEMORY",
    "INDEXER_REPOSITORIES_CLAIM",
    "INDEXER_GIT_TOKEN_SECRET",
    "INDEXER_DATABASE_SECRET_KEY",
    "INDEXER_GIT_CA_SECRET",
    "INDEXER_STARTUP_TIMEOUT_SECONDS",
    "INDEXER_JOB_OWNER",
    "INDEXER_JOB_TTL_SECONDS",
    "INDEXER_NODE_SELECTOR",
    "INDEXER_TOLERATIONS",
    "INDEXER_AFFINITY",
    "INDEXER_JOB_LABELS",
    "INDEXER_JOB_ANNOTATIONS",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KNOBS:
        monkeypatch.delenv(name, raising=False)


def test_defaults_match_the_seed_design() -> None:
    settings = load_settings()
    assert settings.max_concurrent_indexing_jobs == 2
    assert settings.indexing_job_timeout_seconds == 3600
    assert settings.job_status_retention_days == 7
    assert settings.max_repo_size_gb == 10
    assert settings.progress_update_interval_seconds == 2
    assert settings.cancellation_check_interval_seconds == 5
    assert settings.database_url is None
    assert settings.allowed_repo_roots == ()
    assert settings.embedding_model == DEFAULT_EMBEDDING_MODEL
    assert settings.codebase_mcp_home.is_absolute()
    assert settings.codebase_mcp_home.name == "codebase-mcp"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAX_CONCURRENT_INDEXING_JOBS", "5")
    monkeypatch.setenv("PROGRESS_UPDATE_INTERVAL_SECONDS", "0.5")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db.example:5432/code")
    monkeypatch.setenv("CODEBASE_MCP_HOME", str(tmp_path))
    monkeypatch.setenv("ALLOWED_REPO_ROOTS", f"{tmp_path}/a::{tmp_path}/b:")
    settings = load_settings()
    assert settings.max_concurrent_indexing_jobs == 5
    assert settings.progress_update_interval_seconds == 0.5
    assert settings.database_url == "postgresql://u:p@db.example:5432/code"
    assert settings.codebase_mcp_home == tmp_path
    assert settings.allowed_repo_roots == (tmp_path / "a", tmp_path / "b")


def test_empty_database_url_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "")
    assert load_settings().database_url is None


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MAX_CONCURRENT_INDEXING_JOBS", "0", "greater than or equal to 1"),
        ("MAX_CONCURRENT_INDEXING_JOBS", "two", "valid integer"),
        ("INDEXING_JOB_TIMEOUT_SECONDS", "-5", "greater than or equal to 1"),
        ("JOB_STATUS_RETENTION_DAYS", "0", "greater than or equal to 1"),
        ("MAX_REPO_SIZE_GB", "0", "greater than 0"),
        ("PROGRESS_UPDATE_INTERVAL_SECONDS", "soon", "valid number"),
        ("CANCELLATION_CHECK_INTERVAL_SECONDS", "0", "greater than 0"),
        ("DATABASE_URL", "mysql://x@y/z", "postgresql://"),
        ("ALLOWED_REPO_ROOTS", "relative/dir", "absolute"),
        ("CODEBASE_MCP_HOME", "relative/home", "absolute"),
        ("EMBEDDED_DB_PORT", "70000", "less than or equal to 65535"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert variable in message
    assert expected in message


def test_every_problem_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_CONCURRENT_INDEXING_JOBS", "0")
    monkeypatch.setenv("MAX_REPO_SIZE_GB", "-1")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "MAX_CONCURRENT_INDEXING_JOBS" in str(caught.value)
    assert "MAX_REPO_SIZE_GB" in str(caught.value)


def test_cli_fails_at_start_up_naming_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "codebase_mcp.cli", "db", "status"],
        env={"PATH": "/usr/bin:/bin", "CODEBASE_MCP_HOME": str(tmp_path), "MAX_CONCURRENT_INDEXING_JOBS": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "MAX_CONCURRENT_INDEXING_JOBS" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_knob_is_documented() -> None:
    docs = Path(__file__).resolve().parents[1] / "docs"
    # The operator's own settings are in docs/kubernetes.md, beside what they do to a Job.
    doc = (docs / "configuration.md").read_text() + (docs / "kubernetes.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", doc, flags=re.MULTILINE))
    assert set(KNOBS) <= documented, f"missing from the docs: {set(KNOBS) - documented}"
    fields = {name.upper() for name in Settings.model_fields}
    assert fields == set(KNOBS), "KNOBS in this test must list every setting"


@pytest.mark.parametrize(
    ("name", "value"), [("INDEXER_MEMORY", "3 GB"), ("INDEXER_CPU", "two"), ("INDEXER_MEMORY", "-1Gi")]
)
def test_pod_resources_must_be_kubernetes_quantities(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_indexer_settings_reach_a_worker_as_they_were_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Both executors forward indexer_environment(); what a worker reads back is what was set."""
    configured = Settings(
        embedding_model="org/another-model",
        indexing_job_timeout_seconds=77,
        max_repo_size_gb=1.5,
        max_file_size_bytes=999,
        repository_graph_min_chunks=5,
        progress_update_interval_seconds=0.5,
        cancellation_check_interval_seconds=0.25,
        allowed_git_hosts=("a.example", "b.example"),
        allowed_repo_roots=(tmp_path / "a", tmp_path / "b"),
    )
    for name in INDEXER_SETTINGS:
        monkeypatch.delenv(name.upper(), raising=False)
    defaults = Settings()
    assert all(getattr(configured, name) != getattr(defaults, name) for name in INDEXER_SETTINGS)
    for name, value in indexer_environment(configured).items():
        monkeypatch.setenv(name, value)
    worker = Settings()
    assert {name: getattr(worker, name) for name in INDEXER_SETTINGS} == {
        name: getattr(configured, name) for name in INDEXER_SETTINGS
    }
