"""The end-to-end suite's hands on a real cluster: kubectl, helm, and the kubernetes client.

Everything here works on any cluster KUBECONFIG names (the local one of scripts/cluster/, or kind);
the tools come from KUBECTL and HELM (default: on PATH).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

KUBECTL = os.environ.get("KUBECTL", "kubectl")
HELM = os.environ.get("HELM", "helm")
CHART = Path(__file__).resolve().parents[2] / "charts" / "codebase-mcp"
T = TypeVar("T")


def run(*command: str, check: bool = True, timeout: float = 300, stdin: str | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, input=stdin, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def kubectl(*args: str, namespace: str | None = None, check: bool = True, stdin: str | None = None) -> str:
    return run(KUBECTL, *(["-n", namespace] if namespace else []), *args, check=check, stdin=stdin)


def kubectl_json(*args: str, namespace: str | None = None) -> Any:
    return json.loads(kubectl(*args, "-o", "json", namespace=namespace))


def apply(manifest: dict[str, Any], namespace: str | None = None) -> None:
    kubectl("apply", "-f", "-", namespace=namespace, stdin=json.dumps(manifest))


def helm(*args: str, timeout: float = 600) -> str:
    return run(HELM, *args, timeout=timeout)


def eventually(check: Callable[[], T | None], seconds: float, what: str, interval: float = 0.5) -> T:
    """The first truthy value of check() within the time; fails saying what was awaited."""
    deadline = time.monotonic() + seconds
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"not within {seconds} s: {what} (last: {last!r})")


def secret_value(namespace: str, name: str, key: str) -> str:
    data = kubectl_json("get", "secret", name, namespace=namespace)["data"]
    return base64.b64decode(data[key]).decode()


def pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json("get", "pods", "-l", selector, namespace=namespace)["items"]
    return items


def jobs(namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json("get", "jobs", "-l", selector, namespace=namespace)["items"]
    return items


@contextmanager
def port_forward(namespace: str, target: str, port: int) -> Iterator[str]:
    """`kubectl port-forward` to a Service: the base URL on 127.0.0.1, for the test's duration."""
    process = subprocess.Popen(
        [KUBECTL, "-n", namespace, "port-forward", target, f":{port}", "--address", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert found, f"kubectl port-forward said: {line}{process.stdout.read() if process.poll() is not None else ''}"
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        process.terminate()
        process.wait(timeout=10)


class PodWatch:
    """Every indexer pod that ever existed in a namespace and how many ran at once, from a watch
    stream (`kubectl get pods --watch`, read by a thread as it comes), not from samples that could
    miss a short-lived pod."""

    def __init__(self, namespace: str, selector: str) -> None:
        self.process = subprocess.Popen(
            [KUBECTL, "-n", namespace, "get", "pods", "-l", selector, "--watch", "--output-watch-events", "-o",
             "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        self.seen: set[str] = set()
        self.max_active = 0
        self._active: set[str] = set()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        decoder = json.JSONDecoder()
        buffer = ""
        for line in self.process.stdout:  # pretty-printed objects, one after another
            buffer += line
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except ValueError:
                continue
            buffer = buffer.lstrip()[end:]
            self._record(event)

    def _record(self, event: dict[str, Any]) -> None:
        pod = event["object"]
        name = pod["metadata"]["name"]
        phase = pod.get("status", {}).get("phase")
        with self._lock:
            self.seen.add(name)
            if event["type"] == "DELETED" or phase in ("Succeeded", "Failed"):
                self._active.discard(name)
            else:
                self._active.add(name)
            self.max_active = max(self.max_active, len(self._active))

    def poll(self) -> None:
        """Lets the reader catch up with what the API server has already sent."""
        time.sleep(1)

    def close(self) -> None:
        self.poll()
        self.process.terminate()
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)
