"""The one settings model shared by the gateway, the operator and the indexer.

Every knob is an environment variable named after its field in upper case (no prefix, so the
names match the seed design and docs/configuration.md). Invalid values fail at start-up with a
message that names the variable, never deep inside a job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from codebase_mcp import repository_graphs
from codebase_mcp.errors import UserError

# The embedding model the schema's vector(384) columns were made for.
DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_DIMENSIONS = 384


class ConfigError(UserError):
    """Raised when the environment holds an invalid setting; the message names each variable."""


def default_home() -> Path:
    """Per-user state directory (for example ~/.local/share/codebase-mcp on Linux)."""
    return Path(platformdirs.user_data_dir("codebase-mcp", appauthor=False))


class Settings(BaseSettings):
    """Configuration read from the environment; see docs/configuration.md."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL DSN (postgresql://...). Unset: the embedded server under CODEBASE_MCP_HOME.",
    )
    codebase_mcp_home: Path = Field(
        default_factory=default_home,
        description="State directory: embedded database, generated token, logs.",
    )
    allowed_repo_roots: Annotated[tuple[Path, ...], NoDecode] = Field(
        default=(),
        description="Colon-separated absolute directories under which local repositories may be indexed.",
    )
    embedding_model: str = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        min_length=1,
        description="sentence-transformers model name; must produce 384-dimensional vectors.",
    )
    max_concurrent_indexing_jobs: int = Field(default=2, ge=1, le=1000)
    indexing_job_timeout_seconds: int = Field(default=3600, ge=1)
    job_status_retention_days: int = Field(default=7, ge=1)
    max_repo_size_gb: float = Field(default=10, gt=0)
    progress_update_interval_seconds: float = Field(default=2, gt=0)
    cancellation_check_interval_seconds: float = Field(default=5, gt=0)
    max_file_size_bytes: int = Field(
        default=1_000_000, ge=1, description="Files larger than this are skipped (generated or data files)."
    )
    repository_graph_min_chunks: int = Field(
        default=repository_graphs.DEFAULT_MIN_CHUNKS,
        ge=0,
        description="A repository with more chunks than this gets its own HNSW graph (see repository_graphs.py).",
    )
    allowed_git_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Comma-separated hosts git URLs may point to; empty allows any host."
    )
    git_token: SecretStr | None = Field(
        default=None, description="Token for https git remotes (sent by git's askpass, never in URLs or logs)."
    )
    git_token_file: Path | None = Field(
        default=None, description="File holding the git token (a mounted Kubernetes Secret); read per clone."
    )
    tokens_file: Path | None = Field(
        default=None, description="JSON file of bearer-token digests and their projects (mcp_gateway/auth.py)."
    )
    tasks_url: str = Field(
        default="memory://",
        min_length=1,
        description="Backend of MCP task-augmented calls: memory:// (one gateway) or redis://host:port/db (replicas).",
    )
    # The operator: what its indexer Jobs run with (docs/kubernetes.md).
    pod_namespace: str | None = Field(
        default=None, description="Namespace the operator watches and runs Jobs in; unset: its own pod's."
    )
    indexer_image: str | None = Field(default=None, description="Image of the indexer Jobs (the operator's own).")
    indexer_database_secret: str | None = Field(
        default=None, description="Secret holding the DSN indexer pods connect with."
    )
    indexer_database_secret_key: str = Field(
        default="DATABASE_URL", min_length=1, description="The key of that DSN in INDEXER_DATABASE_SECRET."
    )
    indexer_job_owner: str | None = Field(
        default=None,
        description="ConfigMap owning the indexer Jobs: deleting it (helm uninstall) deletes them and their pods.",
    )
    # Passed through to every indexer Job as JSON (the chart's indexer.* values): where its pods may
    # run (GPU nodes), and labels/annotations other controllers read (Kueue's queue name, cost).
    indexer_node_selector: dict[str, str] = Field(default_factory=dict, description="nodeSelector of indexer pods.")
    indexer_tolerations: list[dict[str, Any]] = Field(default_factory=list, description="tolerations of indexer pods.")
    indexer_affinity: dict[str, Any] = Field(default_factory=dict, description="affinity of indexer pods.")
    indexer_job_labels: dict[str, str] = Field(
        default_factory=dict, description="More labels on indexer Jobs and pods."
    )
    indexer_job_annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations on indexer Jobs and pods."
    )
    indexer_job_ttl_seconds: int = Field(
        default=86_400, ge=0, description="How long a finished indexer Job (and its pod's logs) is kept."
    )
    indexer_startup_timeout_seconds: int = Field(
        default=600,
        ge=1,
        description="An indexer pod not running after this long (image pull, scheduling, quota) fails its job.",
    )
    indexer_cpu: str = Field(
        default="1", pattern=r"^[0-9]+(\.[0-9]+)?m?$", description="CPU request of an indexer pod."
    )
    indexer_memory: str = Field(
        default="3Gi",
        pattern=r"^[0-9]+(Ki|Mi|Gi|Ti|K|M|G|T)?$",
        description="Memory of an indexer pod (request = limit).",
    )
    indexer_repositories_claim: str | None = Field(
        default=None, description="PersistentVolumeClaim mounted read-only in indexer pods for local-path jobs."
    )
    indexer_git_token_secret: str | None = Field(
        default=None, description="Secret whose `token` key indexer pods use for https git remotes."
    )
    indexer_git_ca_secret: str | None = Field(
        default=None,
        description="Secret whose `ca.crt` key indexer pods trust for https git remotes (a private CA).",
    )
    embedded_db_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port for the embedded PostgreSQL on 127.0.0.1; unset picks a free one and keeps it.",
    )

    @field_validator("database_url")
    @classmethod
    def _dsn_is_postgres(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// or postgres:// URL")
        return value

    @field_validator("codebase_mcp_home", mode="before")
    @classmethod
    def _expand_home(cls, value: Any) -> Any:
        if isinstance(value, str | Path):
            path = Path(value).expanduser()
            if not path.is_absolute():
                raise ValueError(f"must be an absolute path, got {str(value)!r}")
            return path
        return value

    @field_validator("allowed_repo_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.split(os.pathsep) if part.strip()]
        if isinstance(value, list | tuple):
            roots = []
            for part in value:
                path = Path(part).expanduser()
                if not path.is_absolute():
                    raise ValueError(f"every root must be an absolute path, got {str(part)!r}")
                roots.append(path)
            return tuple(roots)
        return value

    @field_validator("allowed_git_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(host.strip().lower() for host in value.split(",") if host.strip())
        return value


# The settings an indexer obeys, forwarded by every executor to its workers (Job pods, local
# subprocesses), so each job indexes the way its executor was configured. Credentials are not
# among them: a pod gets the git token from a mounted Secret, a subprocess inherits it.
INDEXER_SETTINGS = (
    "embedding_model",
    "indexing_job_timeout_seconds",
    "max_repo_size_gb",
    "max_file_size_bytes",
    "repository_graph_min_chunks",
    "progress_update_interval_seconds",
    "cancellation_check_interval_seconds",
    "allowed_git_hosts",
    "allowed_repo_roots",
)
# How the list settings are written in the environment (their validators split on the same).
_SEPARATORS = {"allowed_git_hosts": ",", "allowed_repo_roots": os.pathsep}


def indexer_environment(settings: Settings) -> dict[str, str]:
    """INDEXER_SETTINGS as environment variables, written the way Settings reads them back."""
    environment = {}
    for name in INDEXER_SETTINGS:
        value = getattr(settings, name)
        if name in _SEPARATORS:
            value = _SEPARATORS[name].join(str(part) for part in value)
        environment[name.upper()] = str(value)
    return environment


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "?"
        given = item.get("input")
        shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
        lines.append(f"  {field.upper()}: {item['msg']}{shown}")
    return "Invalid configuration:\n" + "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (plus explicit overrides), or raise ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
