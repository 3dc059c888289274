"""What the end-to-end suite (and bench/cluster.py) deploys on a cluster: a PostgreSQL its pods
reach, restricted namespaces, a volume of repositories, and the chart."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg

from codebase_mcp.db.embedded import EmbeddedPostgres, find_free_port
from tests.e2e import cluster

# The local cluster's node address (scripts/cluster/common.sh): pods reach host services there.
DATABASE_HOST = os.environ.get("E2E_DATABASE_HOST", "10.88.0.1")
IMAGE = os.environ.get("CODEBASE_MCP_IMAGE", "codebase-mcp:dev")
# A StorageClass that provisions volumes (kind's `standard`); unset: volumes are made by the suite.
STORAGE_CLASS = os.environ.get("E2E_STORAGE_CLASS")
RELEASE = "cbm"
FULLNAME = f"{RELEASE}-codebase-mcp"


@dataclass(frozen=True)
class Database:
    server: EmbeddedPostgres
    port: int

    def admin_url(self, host: str = "127.0.0.1") -> str:
        return f"postgresql://postgres:{quote(self.server.password(), safe='')}@{host}:{self.port}/postgres"

    def url(self, name: str, host: str = "127.0.0.1") -> str:
        return self.admin_url(host).rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def serve_postgres(home: Path) -> Iterator[Database]:
    """The embedded PostgreSQL with pgvector, listening where the cluster's pods can reach it."""
    port = find_free_port()
    server = EmbeddedPostgres(home, port=port)
    server.start()
    server.stop()
    conf = server.data_dir / "postgresql.conf"
    conf.write_text(conf.read_text() + f"\nlisten_addresses = '127.0.0.1,{DATABASE_HOST}'\n")
    hba = server.data_dir / "pg_hba.conf"
    hba.write_text(hba.read_text() + f"\nhost all all {DATABASE_HOST}/16 scram-sha-256\n")
    server.start()
    try:
        yield Database(server, port)
    finally:
        server.stop()


async def create_database(db: Database) -> str:
    name = f"e2e_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(db.admin_url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


@contextmanager
def repositories_directory() -> Iterator[Path]:
    """Where test repositories go: the node's hostPath volume, so traversable by the image's user."""
    root = Path(tempfile.mkdtemp(prefix="codebase-mcp-e2e-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def make_readable(path: Path) -> None:
    """Readable by the image's non-root user through the node's hostPath volume."""
    for item in [path, *path.rglob("*")]:
        mode = item.stat().st_mode
        item.chmod(mode | stat.S_IROTH | (stat.S_IXOTH if item.is_dir() else 0))


def create_namespace(name: str) -> None:
    """A namespace enforcing the restricted Pod Security Standard: every pod we make must pass it."""
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            },
        }
    )


def _host_path_volume(name: str, path: Path, access: str, namespace: str, claim: str) -> None:
    """A 1Gi PersistentVolume on a node directory, reserved for one claim (labelled for cleanup)."""
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name, "labels": {"codebase-mcp-e2e": namespace}},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": [access],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(path), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        }
    )


def create_repositories_claim(namespace: str, root: Path) -> str:
    """A PersistentVolume on the node's directory, bound to a claim in the namespace."""
    volume = f"{namespace}-repositories"
    _host_path_volume(volume, root, "ReadOnlyMany", namespace, "repositories")
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "repositories"},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        namespace=namespace,
    )
    return "repositories"


def create_database_volume(namespace: str, root: Path) -> None:
    """A PersistentVolume for the bundled PostgreSQL's claim, on the node's directory, where no
    StorageClass provisions one (the local cluster has none). hostPath volumes keep their owner,
    so the directory is the image user's."""
    if STORAGE_CLASS:
        return
    data = root / f".postgresql-{namespace}"
    data.mkdir(mode=0o700)
    os.chown(data, 10001, 10001)
    _host_path_volume(f"{namespace}-postgresql", data, "ReadWriteOnce", namespace, f"data-{FULLNAME}-postgresql-0")


def delete_namespace(name: str) -> None:
    cluster.kubectl("delete", "namespace", name, "--wait=true", "--timeout=120s", check=False)
    cluster.kubectl("delete", "persistentvolume", "-l", f"codebase-mcp-e2e={name}", "--wait=false", check=False)


@dataclass
class Release:
    namespace: str
    database_url: str | None  # as this machine reaches it; None: the chart's bundled PostgreSQL
    values: dict[str, Any]

    def install(self, *extra: str) -> str:
        return cluster.helm(
            "upgrade", "--install", RELEASE, str(cluster.CHART), "-n", self.namespace, "--wait", "--timeout", "5m",
            "-f", self._values_file(), *extra,
        )  # fmt: skip

    def _values_file(self) -> str:
        path = Path(f"/tmp/{self.namespace}-values.json")
        path.write_text(json.dumps(self.values))
        return str(path)

    def token(self) -> str:
        return cluster.secret_value(self.namespace, f"{FULLNAME}-tokens", "token")


def chart_values(database_url: str | None, *, claim: str, **overrides: Any) -> dict[str, Any]:
    """The chart's values for a test release: an external PostgreSQL at database_url (as the pods
    reach it), or None for the bundled one (on the StorageClass E2E_STORAGE_CLASS names, else on a
    PersistentVolume made beforehand: create_database_volume)."""
    repository, _, tag = IMAGE.rpartition(":")
    database: dict[str, Any] = (
        {"database": {"url": database_url}}
        if database_url
        else {"postgresql": {"enabled": True, "storageSize": "1Gi", "storageClassName": STORAGE_CLASS or "-"}}
    )
    values: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag},
        **database,
        "indexer": {"repositoriesClaim": claim, "cpu": "250m", "memory": "2Gi"},
        "gateway": {"resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}},
        "operator": {
            "extraEnv": [
                {"name": "CANCELLATION_CHECK_INTERVAL_SECONDS", "value": "1"},
                {"name": "PROGRESS_UPDATE_INTERVAL_SECONDS", "value": "0.5"},
            ]
        },
    }
    for key, value in overrides.items():
        values[key] = {**values.get(key, {}), **value}
    return values


# A git server for the suite, inside the cluster: git's own smart-HTTP backend behind Python's
# HTTPS server, serving the repositories volume read-only. CGI without fork, so the TLS socket
# stays in the server process; git trusts the volume's repositories whoever owns them.
GIT_SERVER = """
import http.server, pathlib, ssl
root = pathlib.Path("/tmp/srv")
(root / "cgi-bin").mkdir(parents=True, exist_ok=True)
pathlib.Path("/tmp/gitconfig").write_text("[safe]\\n\\tdirectory = *\\n")
# A Python CGI script (run by the server's interpreter: /tmp may be mounted noexec).
(root / "cgi-bin" / "git.py").write_text(
    "import os\\n"
    "os.environ.update(GIT_PROJECT_ROOT='/repositories', GIT_HTTP_EXPORT_ALL='1',"
    " GIT_CONFIG_GLOBAL='/tmp/gitconfig')\\n"
    "os.execv('/usr/lib/git-core/git-http-backend', ['git-http-backend'])\\n"
)
class Handler(http.server.CGIHTTPRequestHandler):
    have_fork = False
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=str(root), **kwargs)
    def finish(self):
        # The CGI reply ends at end of stream: end TLS properly (close_notify), or git's TLS
        # library takes the close for a truncation.
        super().finish()
        try:
            self.connection.unwrap()
        except (OSError, ValueError):
            pass
server = http.server.ThreadingHTTPServer(("", 8443), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/tls/tls.crt", "/tls/tls.key")
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def git_server_host(namespace: str) -> str:
    return f"git.{namespace}.svc.cluster.local"


def create_git_server(namespace: str, claim: str, work: Path) -> None:
    """Service `git` (https, a CA of the suite's own in Secret `git-ca`) serving `claim` at
    https://git.<namespace>.svc.cluster.local/cgi-bin/git.py/<repository>."""
    host = git_server_host(namespace)
    ca_key, ca_crt, key, csr, crt = (work / n for n in ("ca.key", "ca.crt", "tls.key", "tls.csr", "tls.crt"))
    cluster.run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=e2e git CA",
                "-keyout", str(ca_key), "-out", str(ca_crt))  # fmt: skip
    cluster.run("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}",
                "-keyout", str(key), "-out", str(csr))  # fmt: skip
    extensions = work / "san.cnf"
    extensions.write_text(f"subjectAltName=DNS:{host},DNS:git.{namespace}.svc,DNS:git\n")
    cluster.run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
                "-CAcreateserial", "-days", "1", "-extfile", str(extensions), "-out", str(crt))  # fmt: skip
    cluster.kubectl("create", "secret", "tls", "git-tls", f"--cert={crt}", f"--key={key}", namespace=namespace)
    cluster.kubectl("create", "secret", "generic", "git-ca", f"--from-file=ca.crt={ca_crt}", namespace=namespace)
    labels = {"app.kubernetes.io/name": "e2e-git-server"}
    restricted = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "git", "labels": labels},
            "spec": {
                "securityContext": {
                    "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "git",
                        "image": IMAGE,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["python3", "-c", GIT_SERVER],
                        "ports": [{"containerPort": 8443}],
                        "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1},
                        "securityContext": restricted,
                        "volumeMounts": [
                            {"name": "repositories", "mountPath": "/repositories", "readOnly": True},
                            {"name": "tls", "mountPath": "/tls", "readOnly": True},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "repositories", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}},
                    {"name": "tls", "secret": {"secretName": "git-tls"}},
                    {"name": "tmp", "emptyDir": {}},
                ],
            },
        },
        namespace=namespace,
    )  # fmt: skip
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "git"},
            "spec": {"selector": labels, "ports": [{"port": 443, "targetPort": 8443}]},
        },
        namespace=namespace,
    )
    cluster.kubectl("wait", "--for=condition=Ready", "pod/git", "--timeout=120s", namespace=namespace)
