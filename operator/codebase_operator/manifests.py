"""The Kubernetes Job that runs one indexing job: `codebase-mcp indexer --job-id ID` in our image.

Built with the official client's typed models, so a misspelt field fails here rather than being
dropped by the API server. The pod gets nothing it does not need: no service-account token (the
indexer talks to PostgreSQL only), non-root with a read-only root filesystem and every capability
dropped, /tmp as its only writable place, and DATABASE_URL from a Secret, never in the Job spec.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from kubernetes import client

from codebase_mcp.settings import Settings, indexer_environment

COMPONENT_LABELS = {
    "app.kubernetes.io/name": "codebase-mcp",
    "app.kubernetes.io/component": "indexer",
    "app.kubernetes.io/managed-by": "codebase-mcp-operator",
}
# Not a selector (the operator selects by COMPONENT_LABELS), but what users filter by.
PART_OF_LABEL = {"app.kubernetes.io/part-of": "codebase-mcp"}
JOB_ID_LABEL = "codebase-mcp/job-id"
# The image's user (Dockerfile); runAsNonRoot alone cannot check a numeric USER, so it is stated.
IMAGE_UID = 10001
REPOSITORIES_MOUNT = "/repositories"
GIT_TOKEN_MOUNT = "/var/run/secrets/codebase-mcp/git"  # noqa: S105  # a path, not a secret
GIT_CA_MOUNT = "/var/run/secrets/codebase-mcp/git-ca"
# The indexer enforces INDEXING_JOB_TIMEOUT_SECONDS itself and settles its row; Kubernetes' deadline
# is the backstop for a pod that never got that far (image pull, scheduling), so it allows more:
# the timeout again, at most this much.
DEADLINE_MARGIN_SECONDS = 600
# SIGTERM makes the indexer roll back and mark its row; that takes seconds, not this long.
STOP_GRACE_SECONDS = 30


def job_name(job_id: uuid.UUID) -> str:
    return f"codebase-index-{job_id}"  # 51 characters: within the 63 a Job's pods may extend


def job_id_of(labels: dict[str, str] | None) -> uuid.UUID | None:
    """The indexing job a Kubernetes Job runs, from its labels (None: not one of ours)."""
    try:
        return uuid.UUID((labels or {})[JOB_ID_LABEL])
    except (KeyError, ValueError):
        return None


def _indexer_environment(settings: Settings) -> list[client.V1EnvVar]:
    """The operator's settings that shape a job, so every pod indexes the way it was configured."""
    if settings.indexer_database_secret is None:
        raise ValueError("INDEXER_DATABASE_SECRET must name the Secret holding DATABASE_URL for indexer pods")
    plain = indexer_environment(settings)
    # The operator's own roots mean nothing in a pod: local-path jobs read the mounted claim.
    del plain["ALLOWED_REPO_ROOTS"]
    if settings.indexer_repositories_claim:
        plain["ALLOWED_REPO_ROOTS"] = REPOSITORIES_MOUNT
    if settings.indexer_git_token_secret:
        plain["GIT_TOKEN_FILE"] = f"{GIT_TOKEN_MOUNT}/token"
    if settings.indexer_git_ca_secret:
        plain["GIT_SSL_CAINFO"] = f"{GIT_CA_MOUNT}/ca.crt"
    database = client.V1EnvVarSource(
        secret_key_ref=client.V1SecretKeySelector(
            name=settings.indexer_database_secret, key=settings.indexer_database_secret_key
        )
    )
    return [
        client.V1EnvVar(name="DATABASE_URL", value_from=database),
        *(client.V1EnvVar(name=name, value=value) for name, value in plain.items()),
    ]


def _volumes(settings: Settings) -> tuple[list[client.V1Volume], list[client.V1VolumeMount]]:
    volumes = [client.V1Volume(name="tmp", empty_dir=client.V1EmptyDirVolumeSource())]
    mounts = [client.V1VolumeMount(name="tmp", mount_path="/tmp")]  # noqa: S108  # the only writable place
    if settings.indexer_repositories_claim:
        claim = client.V1PersistentVolumeClaimVolumeSource(
            claim_name=settings.indexer_repositories_claim, read_only=True
        )
        volumes.append(client.V1Volume(name="repositories", persistent_volume_claim=claim))
        mounts.append(client.V1VolumeMount(name="repositories", mount_path=REPOSITORIES_MOUNT, read_only=True))
    if settings.indexer_git_token_secret:
        secret = client.V1SecretVolumeSource(
            secret_name=settings.indexer_git_token_secret,
            items=[client.V1KeyToPath(key="token", path="token")],
            default_mode=0o400,
        )
        volumes.append(client.V1Volume(name="git-token", secret=secret))
        mounts.append(client.V1VolumeMount(name="git-token", mount_path=GIT_TOKEN_MOUNT, read_only=True))
    if settings.indexer_git_ca_secret:
        ca = client.V1SecretVolumeSource(
            secret_name=settings.indexer_git_ca_secret, items=[client.V1KeyToPath(key="ca.crt", path="ca.crt")]
        )
        volumes.append(client.V1Volume(name="git-ca", secret=ca))
        mounts.append(client.V1VolumeMount(name="git-ca", mount_path=GIT_CA_MOUNT, read_only=True))
    return volumes, mounts


def indexer_job(
    job_id: uuid.UUID, namespace: str, settings: Settings, owner: client.V1OwnerReference | None = None
) -> client.V1Job:
    """The Job for one pending indexing job; `owner` (the chart's anchor ConfigMap) takes it along
    when it is deleted, so `helm uninstall` leaves no Job or pod behind."""
    if not settings.indexer_image:
        raise ValueError("INDEXER_IMAGE must name the image indexer Jobs run (the operator's own image)")
    # The user's labels first: ours, which the operator selects by, cannot be overridden.
    labels = {**settings.indexer_job_labels, **COMPONENT_LABELS, **PART_OF_LABEL, JOB_ID_LABEL: str(job_id)}
    annotations = dict(settings.indexer_job_annotations) or None
    volumes, mounts = _volumes(settings)
    container = client.V1Container(
        name="indexer",
        image=settings.indexer_image,
        args=["indexer", "--job-id", str(job_id)],
        env=_indexer_environment(settings),
        resources=client.V1ResourceRequirements(
            requests={"cpu": settings.indexer_cpu, "memory": settings.indexer_memory},
            limits={"memory": settings.indexer_memory},
        ),
        security_context=client.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=client.V1Capabilities(drop=["ALL"]),
        ),
        volume_mounts=mounts,
        # A pod that dies before writing its row still says why: the log's tail lands in its status.
        termination_message_policy="FallbackToLogsOnError",
    )
    pod = client.V1PodSpec(
        containers=[container],
        restart_policy="Never",
        automount_service_account_token=False,
        enable_service_links=False,
        termination_grace_period_seconds=STOP_GRACE_SECONDS,
        security_context=client.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=IMAGE_UID,
            run_as_group=IMAGE_UID,
            fs_group=IMAGE_UID,
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        ),
        volumes=volumes,
        # Passed through as the user wrote them: the client serializes plain dicts as they are, and
        # the API server validates them (a typo fails the Job's creation with its own message).
        node_selector=dict(settings.indexer_node_selector) or None,
        tolerations=cast(Any, list(settings.indexer_tolerations)) or None,
        affinity=cast(Any, dict(settings.indexer_affinity)) or None,
    )
    return client.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=client.V1ObjectMeta(
            name=job_name(job_id),
            namespace=namespace,
            labels=labels,
            annotations=annotations,
            owner_references=[owner] if owner else None,
        ),
        spec=client.V1JobSpec(
            # A failed job is failed: its row says why, and starting it again is the user's call.
            backoff_limit=0,
            # ...but a pod lost to the node (drain, preemption, eviction) is not the indexer's
            # failure: it is replaced, once the old pod is gone, so two never index the same job.
            pod_failure_policy=client.V1PodFailurePolicy(
                rules=[
                    client.V1PodFailurePolicyRule(
                        action="Ignore",
                        on_pod_conditions=[
                            client.V1PodFailurePolicyOnPodConditionsPattern(type="DisruptionTarget", status="True")
                        ],
                    )
                ]
            ),
            pod_replacement_policy="Failed",
            active_deadline_seconds=settings.indexing_job_timeout_seconds
            + min(DEADLINE_MARGIN_SECONDS, settings.indexing_job_timeout_seconds),
            # Finished Jobs stay for `kubectl logs`; the row in PostgreSQL is the record that lasts.
            ttl_seconds_after_finished=settings.indexer_job_ttl_seconds,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels, annotations=annotations), spec=pod
            ),
        ),
    )
