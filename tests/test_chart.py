"""The Helm chart without a cluster: `helm lint --strict` and `helm template` for every value set
in charts/codebase-mcp/ci/, each rendered object validated against Kubernetes 1.34's schemas
(kubernetes-validate, strict), and the fields that matter asserted. `make e2e` installs it for real.

helm is the one scripts/cluster/build.sh builds (HELM names it; `make test` sets it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "codebase-mcp"
VALUE_SETS = sorted((CHART / "ci").glob("*-values.yaml"))
DEFAULT = CHART / "ci" / "default-values.yaml"
KUBERNETES_VERSION = "1.34.0"
# Kinds from CRDs: no schema in Kubernetes' own set.
CUSTOM_KINDS = {"ServiceMonitor"}


def helm() -> str:
    found = os.environ.get("HELM") or shutil.which("helm")
    if not found:
        pytest.fail("no helm: set HELM (make test builds it: scripts/cluster/build.sh helm)")
    return found


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm(), *args], capture_output=True, text=True, check=False, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}")
    return result


def render(values: Path | None = None, *sets: str) -> list[dict[str, Any]]:
    args = ["template", "cbm", str(CHART), "--namespace", "codebase", "--kube-version", KUBERNETES_VERSION]
    args += ["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"]
    if values is not None:
        args += ["-f", str(values)]
    for item in sets:
        args += ["--set", item]
    documents = yaml.safe_load_all(run_helm(*args).stdout)
    return [document for document in documents if document]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    specs = {}
    for o in objects:
        if o["kind"] in ("Deployment", "Job", "StatefulSet"):
            specs[o["metadata"]["name"]] = o["spec"]["template"]["spec"]
        elif o["kind"] == "Pod":
            specs[o["metadata"]["name"]] = o["spec"]
    return specs


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda path: path.name)
def test_every_value_set_lints_and_renders_valid_kubernetes_objects(values: Path) -> None:
    run_helm("lint", "--strict", str(CHART), "-f", str(values))
    objects = render(values)
    assert objects
    for item in objects:
        if item["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(item, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            raise AssertionError(f"{item['kind']} {item['metadata']['name']}: {error}") from None


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda path: path.name)
def test_every_pod_meets_the_restricted_pod_security_standard(values: Path) -> None:
    specs = pod_specs(render(values))
    assert specs
    for name, spec in specs.items():
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert "resources" in container, f"{name}: quota'd namespaces need requests"
        token = spec.get("automountServiceAccountToken")
        assert token is (name == "cbm-codebase-mcp-operator"), f"{name}: a token only where the API is used"


def test_the_operator_has_a_namespaced_role_with_exactly_its_rights() -> None:
    objects = render(DEFAULT)
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = by_kind(objects, "Role")["cbm-codebase-mcp-operator"]
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): r for r in role["rules"]}
    assert rules[(("batch",), ("jobs",))]["verbs"] == ["get", "list", "watch", "create", "delete"]
    assert rules[(("",), ("pods",))]["verbs"] == ["get", "list", "watch"]
    assert rules[(("", "events.k8s.io"), ("events",))]["verbs"] == ["create", "patch", "list", "watch"]
    configmaps = rules[(("",), ("configmaps",))]
    assert (configmaps["verbs"], configmaps["resourceNames"]) == (["get"], ["cbm-codebase-mcp-indexer-jobs"])
    assert len(rules) == 4, "nothing else: no secrets, no pods/create, no patching Jobs"
    [binding] = by_kind(objects, "RoleBinding").values()
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "cbm-codebase-mcp-operator", "namespace": "codebase"}
    ]


def test_the_operator_runs_alone_and_gives_its_jobs_what_they_need() -> None:
    objects = render(DEFAULT)
    operator = by_kind(objects, "Deployment")["cbm-codebase-mcp-operator"]
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}, "kopf: never two operators in a rollout"
    [container] = operator["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {item["name"]: item for item in container["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "cbm-codebase-mcp-database",
        "key": "DATABASE_URL",
    }
    assert env["INDEXER_DATABASE_SECRET"]["value"] == "cbm-codebase-mcp-database"
    assert env["INDEXER_JOB_OWNER"]["value"] == "cbm-codebase-mcp-indexer-jobs"
    assert env["INDEXER_IMAGE"]["value"] == container["image"], "indexer Jobs run the operator's own image"
    assert "cbm-codebase-mcp-indexer-jobs" in by_kind(objects, "ConfigMap"), "the Jobs' owner exists"


def test_migrations_run_as_a_hook_before_install_and_upgrade() -> None:
    objects = render(DEFAULT)
    job = by_kind(objects, "Job")["cbm-codebase-mcp-migrations"]
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["db", "upgrade"]
    # Hooks run before the release's objects exist: the URL comes from a hook Secret of its own.
    secret = by_kind(objects, "Secret")["cbm-codebase-mcp-migrations"]
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "cbm-codebase-mcp-migrations"


def test_the_gateway_is_probed_and_labelled_as_helm_users_expect() -> None:
    objects = render(DEFAULT)
    gateway = by_kind(objects, "Deployment")["cbm-codebase-mcp-gateway"]
    labels = gateway["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "codebase-mcp"
    assert labels["app.kubernetes.io/instance"] == "cbm"
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert labels["helm.sh/chart"] == "codebase-mcp-0.1.0"
    [container] = gateway["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    # Two gateways by default, spread across nodes, each client kept on one (its MCP session).
    assert gateway["spec"]["replicas"] == 2
    spread = gateway["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert by_kind(objects, "Service")["cbm-codebase-mcp-gateway"]["spec"]["sessionAffinity"] == "ClientIP"
    assert by_kind(objects, "PodDisruptionBudget")["cbm-codebase-mcp-gateway"]["spec"]["minAvailable"] == 1
    tests = by_kind(objects, "Pod")
    assert tests["cbm-codebase-mcp-test-mcp"]["metadata"]["annotations"]["helm.sh/hook"] == "test"


def test_the_optional_objects_render_when_asked() -> None:
    everything = render(CHART / "ci" / "everything-values.yaml")
    kinds = {o["kind"] for o in everything}
    assert {"Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"} <= kinds
    policies = by_kind(everything, "NetworkPolicy")
    indexer_egress = policies["cbm-codebase-mcp-indexer"]["spec"]["egress"]
    assert {"ipBlock": {"cidr": "10.1.2.3/32"}} in indexer_egress[1]["to"]
    operator = by_kind(everything, "Deployment")["cbm-codebase-mcp-operator"]["spec"]["template"]["spec"]
    env = {item["name"]: item.get("value") for item in operator["containers"][0]["env"]}
    assert json.loads(env["INDEXER_NODE_SELECTOR"]) == {"accelerator": "nvidia"}
    assert json.loads(env["INDEXER_TOLERATIONS"])[0]["key"] == "nvidia.com/gpu"
    assert json.loads(env["INDEXER_JOB_LABELS"]) == {"kueue.x-k8s.io/queue-name": "indexing"}
    assert "INDEXER_AFFINITY" not in env, "unset values are not passed"
    defaults = {o["kind"] for o in render(DEFAULT)}
    assert not defaults & {"Ingress", "HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor"}
    single = {o["kind"] for o in render(DEFAULT, "gateway.replicas=1")}
    assert "PodDisruptionBudget" not in single, "no budget for a single gateway: it would block every drain"


def test_existing_secrets_are_used_and_no_token_is_generated() -> None:
    objects = render(CHART / "ci" / "existing-secrets-values.yaml")
    assert "cbm-codebase-mcp-tokens" not in by_kind(objects, "Secret")
    assert "cbm-codebase-mcp-database" not in by_kind(objects, "Secret")
    assert "cbm-codebase-mcp-operator" not in by_kind(objects, "Deployment"), "operator.enabled=false"
    assert "cbm-codebase-mcp-operator" in by_kind(objects, "Role"), "its rights stay, for an operator run elsewhere"
    gateway = by_kind(objects, "Deployment")["cbm-codebase-mcp-gateway"]["spec"]["template"]["spec"]
    env = {item["name"]: item for item in gateway["containers"][0]["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "codebase-db", "key": "url"}
    assert env["ALLOWED_REPO_ROOTS"]["value"] == "/repositories"
    volumes = {v["name"]: v for v in gateway["volumes"]}
    assert volumes["tokens"]["secret"]["secretName"] == "codebase-tokens"


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("gateway.replicas=two", "gateway/replicas"),
        ("unknownKey=1", "additional properties 'unknownKey' not allowed"),
        ("image.pullPolicy=Sometimes", "image/pullPolicy"),
        ("indexer.memory=lots", "indexer/memory"),
    ],
)
def test_the_schema_rejects_bad_values(setting: str, complaint: str) -> None:
    result = run_helm("lint", "--strict", str(CHART), "-f", str(DEFAULT), "--set", setting, check=False)
    assert result.returncode != 0
    assert complaint in result.stdout + result.stderr


def test_a_release_without_a_database_says_what_to_set() -> None:
    result = run_helm("template", "cbm", str(CHART), check=False)
    assert result.returncode != 0
    assert "set database.url or database.existingSecret" in result.stderr


def test_the_bundled_postgresql_runs_our_image_and_the_migrations_wait_for_it() -> None:
    objects = render(CHART / "ci" / "bundled-postgresql-values.yaml")
    database = by_kind(objects, "StatefulSet")["cbm-codebase-mcp-postgresql"]
    [container] = database["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["db", "serve", "--port", "5432"]
    env = {item["name"]: item for item in container["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "cbm-codebase-mcp-postgresql",
        "key": "password",
    }
    [claim] = database["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    url = by_kind(objects, "Secret")["cbm-codebase-mcp-database"]["stringData"]["DATABASE_URL"]
    password = by_kind(objects, "Secret")["cbm-codebase-mcp-postgresql"]["stringData"]["password"]
    assert url == f"postgresql://postgres:{password}@cbm-codebase-mcp-postgresql:5432/codebase_mcp"
    # No server exists before the release's objects do: the migrations are an ordinary Job of the
    # revision (install --wait waits for it), retried until the server answers.
    migrations = by_kind(objects, "Job")["cbm-codebase-mcp-migrations-1"]
    assert "annotations" not in migrations["metadata"]
    assert migrations["spec"]["backoffLimit"] >= 6
    assert "cbm-codebase-mcp-migrations" not in by_kind(objects, "Secret")
    other = render(CHART / "ci" / "bundled-postgresql-values.yaml", "postgresql.image.repository=pgvector/pgvector",
                   "postgresql.image.tag=pg17")  # fmt: skip
    [theirs] = by_kind(other, "StatefulSet")["cbm-codebase-mcp-postgresql"]["spec"]["template"]["spec"]["containers"]
    assert theirs["image"] == "pgvector/pgvector:pg17"
    assert "args" not in theirs, "another image runs its own entrypoint"
