"""A stand-in for the few Kubernetes API endpoints the operator uses, over real HTTP.

No Kubernetes API server can run on these machines (../shared/ENVIRONMENT.md), so the operator's
process test points its kubeconfig here: discovery (/api, /apis, /apis/batch/v1), Jobs in one
namespace (list, watch as a stream of JSON lines, create, delete) and events. It answers as the API
server does for those calls (status codes, Status bodies, resourceVersions, watch events), keeps
what it was asked, and lets a test change a Job's status the way the Job controller would.
Everything else gets 404, so an unexpected call shows up as an error in the operator's log.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

JOB_RESOURCES = {
    "kind": "APIResourceList",
    "groupVersion": "batch/v1",
    "resources": [
        {"name": "jobs", "singularName": "job", "namespaced": True, "kind": "Job", "categories": ["all"],
         "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]},
        {"name": "jobs/status", "singularName": "", "namespaced": True, "kind": "Job", "verbs": ["get", "patch"]},
    ],
}  # fmt: skip
CORE_RESOURCES = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {"name": "events", "singularName": "event", "namespaced": True, "kind": "Event",
         "verbs": ["create", "get", "list", "watch"]},
        {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
         "verbs": ["get", "list", "watch"]},
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
         "verbs": ["get", "list", "watch"]},
    ],
}  # fmt: skip
GROUPS = {
    "kind": "APIGroupList",
    "groups": [
        {"name": "batch", "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}},
    ],
}  # fmt: skip

DISCOVERY: dict[str, dict[str, Any]] = {
    "/version": {"major": "1", "minor": "32", "gitVersion": "v1.32.0"},
    "/api": {"kind": "APIVersions", "versions": ["v1"]},
    "/api/v1": CORE_RESOURCES,
    "/apis": GROUPS,
    "/apis/batch/v1": JOB_RESOURCES,
}


class KubeApiStub:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.jobs: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every call, in order
        self.deleted: list[str] = []
        self._version = 100
        self._lock = threading.Lock()
        self._watchers: list[queue.Queue[dict[str, Any] | None]] = []
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> KubeApiStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        for watcher in list(self._watchers):
            watcher.put(None)
        self._server.shutdown()
        self._server.server_close()

    def kubeconfig(self) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "stub", "cluster": {"server": self.url}}],
                "users": [{"name": "operator", "user": {"token": "stub-token"}}],
                "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "operator"}}],
                "current-context": "stub",
            }
        )

    def set_conditions(self, name: str, *conditions: dict[str, str]) -> None:
        """What the Job controller does when a Job ends: conditions on its status, a MODIFIED event."""
        with self._lock:
            job = self.jobs[name]
            job["status"] = {"conditions": [{"status": "True", **condition} for condition in conditions]}
            self._publish("MODIFIED", job)

    def wait_for(self, check: Any, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"not seen in {seconds} s; calls so far: {self.requests}")
            time.sleep(0.05)

    def _publish(self, kind: str, job: dict[str, Any]) -> None:
        self._version += 1
        job["metadata"]["resourceVersion"] = str(self._version)
        for watcher in self._watchers:
            watcher.put({"type": kind, "object": json.loads(json.dumps(job))})

    def _jobs_path(self) -> str:
        return f"/apis/batch/v1/namespaces/{self.namespace}/jobs"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # the test's output stays readable
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                                  "reason": reason, "code": code})  # fmt: skip

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                parsed: dict[str, Any] = json.loads(self.rfile.read(length) or b"{}")
                return parsed

            def do_GET(self) -> None:  # the name http.server calls
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                stub.requests.append(("GET", url.path))
                if url.path in DISCOVERY:
                    self._send(200, DISCOVERY[url.path])
                elif url.path == stub._jobs_path() and query.get("watch") == ["true"]:
                    self._watch(float(query.get("timeoutSeconds", ["60"])[0]))
                elif url.path == f"/api/v1/namespaces/{stub.namespace}/pods" and query.get("watch") == ["true"]:
                    self._idle_watch(float(query.get("timeoutSeconds", ["60"])[0]))
                elif url.path in (f"/api/v1/namespaces/{stub.namespace}/{kind}" for kind in ("pods", "events")):
                    # No pod ever runs here, and the stub posts no events of its own.
                    self._send(200, {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                                     "items": []})  # fmt: skip
                elif url.path == stub._jobs_path():
                    with stub._lock:
                        items = [json.loads(json.dumps(job)) for job in stub.jobs.values()]
                        version = str(stub._version)
                    self._send(200, {"kind": "JobList", "apiVersion": "batch/v1",
                                     "metadata": {"resourceVersion": version}, "items": items})  # fmt: skip
                else:
                    self._status(404, "NotFound", f"the server could not find the requested resource ({url.path})")

            def _watch(self, timeout: float) -> None:
                events: queue.Queue[dict[str, Any] | None] = queue.Queue()
                stub._watchers.append(events)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()  # no length: the stream ends when the connection closes
                deadline = time.monotonic() + timeout
                try:
                    while time.monotonic() < deadline:
                        try:
                            event = events.get(timeout=0.2)
                        except queue.Empty:
                            continue
                        if event is None:
                            break
                        self.wfile.write(json.dumps(event).encode() + b"\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    stub._watchers.remove(events)
                    self.close_connection = True

            def _idle_watch(self, timeout: float) -> None:
                """A watch on which nothing happens: open until its timeout or the stub stops."""
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline and not stub._stopping.is_set():
                    time.sleep(0.2)
                self.close_connection = True

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                stub.requests.append(("POST", url.path))
                body = self._body()
                if url.path == f"/api/v1/namespaces/{stub.namespace}/events":
                    self._send(201, body)
                    return
                if url.path != stub._jobs_path():
                    self._status(404, "NotFound", f"the server could not find the requested resource ({url.path})")
                    return
                name = body["metadata"]["name"]
                with stub._lock:
                    if name in stub.jobs:
                        self._status(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
                        return
                    body["metadata"].update({"uid": f"uid-{name}", "creationTimestamp": "2026-11-24T00:00:00Z"})
                    body["status"] = {}
                    stub.jobs[name] = body
                    stub._publish("ADDED", body)
                self._send(201, body)

            def do_DELETE(self) -> None:
                url = urlsplit(self.path)
                stub.requests.append(("DELETE", url.path))
                name = url.path.rsplit("/", 1)[-1]
                with stub._lock:
                    job = stub.jobs.pop(name, None) if url.path.startswith(stub._jobs_path() + "/") else None
                    if job is None:
                        self._status(404, "NotFound", f'jobs.batch "{name}" not found')
                        return
                    stub.deleted.append(name)
                    stub._publish("DELETED", job)
                self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

        return Handler
