"""Fixtures of the end-to-end suite: a real cluster (KUBECONFIG), PostgreSQL that its pods reach,
namespaces under the restricted Pod Security Standard, and the chart installed in them.

`make e2e` brings the local cluster up (scripts/cluster/) and loads the image where KUBECONFIG
names no cluster. The test PostgreSQL runs on this machine and listens on the address its pods
reach it at (E2E_DATABASE_HOST: the local cluster's node address by default), which is also the
production shape: an external PostgreSQL that the chart is given by URL.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.e2e import cluster
from tests.e2e.deploy import (
    RELEASE,
    Database,
    Release,
    chart_values,
    create_database_volume,
    create_git_server,
    create_namespace,
    create_repositories_claim,
    delete_namespace,
    git_server_host,
    repositories_directory,
    serve_postgres,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    path = os.environ.get("KUBECONFIG")
    if not path:
        pytest.fail("KUBECONFIG must name the cluster to test (make e2e brings up a local one)")
    cluster.kubectl("get", "--raw", "/readyz")
    return path


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory, kubeconfig: str) -> Iterator[Database]:
    with serve_postgres(tmp_path_factory.mktemp("e2e-pg")) as database:
        yield database


@pytest.fixture(scope="session")
def repositories_root() -> Iterator[Path]:
    """Repositories the pods read through a PersistentVolume (hostPath on the node)."""
    with repositories_directory() as root:
        yield root


@pytest.fixture(scope="module")
async def release(kubeconfig: str, repositories_root: Path) -> AsyncIterator[Release]:
    """The chart as a quick start installs it, with its bundled PostgreSQL, in a fresh namespace
    under the restricted Pod Security Standard."""
    namespace = f"e2e-{secrets.token_hex(3)}"
    create_namespace(namespace)
    claim = create_repositories_claim(namespace, repositories_root)
    create_database_volume(namespace, repositories_root)
    with tempfile.TemporaryDirectory() as work:
        create_git_server(namespace, claim, Path(work))
    # Indexer pods trust the suite's git server's CA, and git URLs may name only that host.
    git = {"gitCASecret": "git-ca", "allowedGitHosts": git_server_host(namespace)}
    installed = Release(namespace, None, chart_values(None, claim=claim, indexer=git))
    try:
        installed.install()
        yield installed
    finally:
        cluster.run(cluster.HELM, "uninstall", RELEASE, "-n", namespace, "--wait", check=False)
        delete_namespace(namespace)
