"""The `codebase-mcp` console script.

One entry point, one subcommand group per concern. Each group is a function that adds its
parsers and points them at a handler; later components (dev, gateway, operator, indexer, index,
search, jobs) slot in the same way, importing their component lazily so `codebase-mcp db ...`
never pays for loading torch or fastmcp.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import asyncpg

from codebase_mcp.errors import UserError
from codebase_mcp.settings import ConfigError, Settings, load_settings

Handler = Callable[[argparse.Namespace, Settings], int]

# pg_ctl's convention: exit 3 means "not running".
EXIT_NOT_RUNNING = 3


class CommandError(UserError):
    """A failure to report to the user as one clear line, without a traceback."""


# -- db ---------------------------------------------------------------------------------------


def _db_start(args: argparse.Namespace, settings: Settings) -> int:
    from codebase_mcp.db.connect import embedded_server

    server = embedded_server(settings)
    was_running = server.status().running
    server.start()
    state = server.status()
    verb = "already running" if was_running else "started"
    print(f"Embedded PostgreSQL {verb} on 127.0.0.1:{state.port} (data: {state.data_dir})")
    print("DSN: run `codebase-mcp db url`")
    return 0


def _db_stop(args: argparse.Namespace, settings: Settings) -> int:
    from codebase_mcp.db.connect import embedded_server

    stopped = embedded_server(settings).stop()
    print("Embedded PostgreSQL stopped" if stopped else "Embedded PostgreSQL was not running")
    return 0


def _db_status(args: argparse.Namespace, settings: Settings) -> int:
    from codebase_mcp.db.connect import embedded_server

    state = embedded_server(settings).status()
    if settings.database_url:
        print("DATABASE_URL is set: the embedded server is not used by the other commands")
    if state.running:
        print(f"running on 127.0.0.1:{state.port} (pid {state.pid}, data: {state.data_dir})")
        return 0
    if state.initialized:
        print(f"stopped (data: {state.data_dir})")
    else:
        print(f"not set up yet under {settings.codebase_mcp_home} (run `codebase-mcp db start`)")
    return EXIT_NOT_RUNNING


def _db_serve(args: argparse.Namespace, settings: Settings) -> int:
    from codebase_mcp.db.embedded import serve_in_foreground

    data = os.environ.get("PGDATA")
    if not data:
        raise CommandError("set PGDATA: the directory the server keeps its data in (a volume)")
    serve_in_foreground(Path(data), args.port, os.environ.get("POSTGRES_PASSWORD", ""))
    return 0  # not reached: PostgreSQL has replaced this process


def _db_url(args: argparse.Namespace, settings: Settings) -> int:
    from codebase_mcp.db.connect import resolve_database_url

    print(resolve_database_url(settings))
    return 0


async def _probe(dsn: str) -> None:
    from codebase_mcp.db.connect import connect

    conn = await connect(dsn, vector=False)
    await conn.close()


def _migration_target(settings: Settings) -> str:
    from codebase_mcp.db.connect import describe_dsn, resolve_database_url

    dsn = resolve_database_url(settings, start_embedded=True)
    try:
        asyncio.run(_probe(dsn))
    except (OSError, asyncpg.PostgresError) as error:
        raise CommandError(f"cannot connect to the database at {describe_dsn(dsn)}: {error}") from None
    return dsn


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from codebase_mcp.db import migrations

    dsn = _migration_target(settings)
    migrations.upgrade(dsn, args.revision)
    print(f"Database at revision {migrations.current(dsn)} (head is {migrations.head_revision()})")
    return 0


def _db_downgrade(args: argparse.Namespace, settings: Settings) -> int:
    from codebase_mcp.db import migrations

    dsn = _migration_target(settings)
    migrations.downgrade(dsn, args.revision)
    print(f"Database at revision {migrations.current(dsn) or 'base (empty)'}")
    return 0


def _db_current(args: argparse.Namespace, settings: Settings) -> int:
    from codebase_mcp.db import migrations

    revision = migrations.current(_migration_target(settings))
    head = migrations.head_revision()
    state = "up to date" if revision == head else f"head is {head}: run `codebase-mcp db upgrade`"
    print(f"{revision or 'base (not migrated)'} ({state})")
    return 0


def _add_db(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser("db", help="the database: embedded server and migrations")
    actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")

    def add(name: str, handler: Handler, text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=text, description=text)
        parser.set_defaults(handler=handler)
        return parser

    add("start", _db_start, "start the embedded PostgreSQL (idempotent)")
    add("stop", _db_stop, "stop the embedded PostgreSQL cleanly")
    add("status", _db_status, "is the embedded PostgreSQL running? (exit 3 when not)")
    add("url", _db_url, "print the DSN: DATABASE_URL, else the running embedded server's")
    serve = add(
        "serve",
        _db_serve,
        "run PostgreSQL with pgvector in the foreground, for a container (PGDATA, POSTGRES_PASSWORD)",
    )
    serve.add_argument("--port", type=int, default=5432)
    upgrade = add("upgrade", _db_upgrade, "migrate to the latest schema (or to REVISION)")
    upgrade.add_argument("revision", nargs="?", default="head")
    downgrade = add("downgrade", _db_downgrade, "migrate down to REVISION ('base' empties the schema)")
    downgrade.add_argument("revision")
    add("current", _db_current, "print the database's schema revision")


# -- indexer ----------------------------------------------------------------------------------


def _indexer(args: argparse.Namespace, settings: Settings) -> int:
    import uuid

    from codebase_mcp.db.connect import resolve_database_url
    from codebase_mcp.logs import configure_logging
    from indexer_image.pipeline import run_job

    try:
        job_id = uuid.UUID(args.job_id)
    except ValueError:
        raise CommandError(f"--job-id must be a job id (a UUID), got {args.job_id!r}") from None
    configure_logging()
    return asyncio.run(run_job(job_id, settings, resolve_database_url(settings)))


def _add_indexer(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "run one indexing job (what a Kubernetes Job pod or the local executor starts)"
    parser = commands.add_parser("indexer", help=text, description=text + ". Exit 0: completed or cancelled; "
                                 "1: failed; 3: refused (the job is not pending).")  # fmt: skip
    parser.add_argument("--job-id", required=True, help="id of a pending indexing_jobs row")
    parser.set_defaults(handler=_indexer)


# -- gateway ----------------------------------------------------------------------------------


def _gateway(args: argparse.Namespace, settings: Settings) -> int:
    from codebase_mcp.db.connect import resolve_database_url
    from codebase_mcp.logs import configure_logging
    from mcp_gateway.serve import serve

    if settings.tokens_file is None:
        raise CommandError("set TOKENS_FILE: the gateway serves authenticated requests only (docs/configuration.md)")
    from mcp_gateway.auth import load_grants

    load_grants(settings.tokens_file)  # a bad tokens file is said before anything starts
    configure_logging()
    serve(settings, resolve_database_url(settings), args.host, args.port, local_executor=args.local_executor)
    return 0


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from codebase_mcp.db import migrations
    from codebase_mcp.db.connect import resolve_database_url
    from codebase_mcp.logs import configure_logging
    from mcp_gateway.serve import client_configuration, dev_token, serve

    home = settings.codebase_mcp_home
    dsn = resolve_database_url(settings, start_embedded=True)
    migrations.upgrade(dsn)
    token, tokens_file = dev_token(home)
    roots = settings.allowed_repo_roots or (Path.home(),)
    settings = settings.model_copy(update={"tokens_file": tokens_file, "allowed_repo_roots": roots})
    url = f"http://{args.host}:{args.port}/mcp"
    print(f"codebase-mcp is serving MCP at {url}")
    print(f"Token: {token}  (kept in {home / 'token'})")
    print(f"Local repositories may be indexed under: {', '.join(str(root) for root in roots)}")
    print("Connect a client:")
    print(client_configuration(url, home / "token"))
    print("Stop with Ctrl-C.", flush=True)
    configure_logging()
    serve(settings, dsn, args.host, args.port, local_executor=True)
    return 0


def _add_gateway(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "serve the MCP gateway (in a cluster: the operator runs the jobs)"
    gateway = commands.add_parser("gateway", help=text, description=text)
    gateway.add_argument("--host", default="0.0.0.0", help="interface to listen on (default 0.0.0.0)")  # noqa: S104
    gateway.add_argument("--port", type=int, default=8000)
    gateway.add_argument(
        "--local-executor", action="store_true", help="also run jobs here as subprocesses (no operator)"
    )
    gateway.set_defaults(handler=_gateway)
    text = "one machine: embedded database, migrations, gateway on 127.0.0.1 and a local executor"
    dev = commands.add_parser("dev", help=text, description=text)
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.set_defaults(handler=_dev)


# -- operator ---------------------------------------------------------------------------------


def _operator(args: argparse.Namespace, settings: Settings) -> int:
    from codebase_mcp.logs import configure_logging
    from codebase_operator.run import run_operator

    configure_logging()
    asyncio.run(run_operator(settings, health_port=args.health_port))
    return 0


def _add_operator(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "run pending indexing jobs as Kubernetes Jobs in this namespace (docs/kubernetes.md)"
    parser = commands.add_parser("operator", help=text, description=text)
    parser.add_argument("--health-port", type=int, default=8080, help="liveness probe at :PORT/healthz")
    parser.set_defaults(handler=_operator)


# -- index, search, jobs: clients of the gateway ------------------------------------------------


def _client(args: argparse.Namespace, settings: Settings) -> int:
    from mcp_gateway import client_cli

    where = client_cli.target(args.url, args.token, settings)
    if args.command == "index":
        source = client_cli.source_arguments(args.source, args.ref)
        return client_cli.run(client_cli.index(where, source, args.project, args.force, args.wait))
    if args.command == "search":
        options = {
            "project_id": args.project, "repository": args.repo, "language": args.lang, "path_glob": args.path,
            "limit": args.k,
        }  # fmt: skip
        return client_cli.run(client_cli.search(where, args.query, options, args.json))
    options = {"project_id": args.project}
    if args.action == "list":
        options |= {"status": args.status, "limit": args.limit}
    return client_cli.run(client_cli.jobs(where, args.action, getattr(args, "job_id", None), options, args.json))


def _add_clients(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="gateway MCP URL (CODEBASE_MCP_URL; default the local dev server)")
    common.add_argument("--token", help="bearer token (CODEBASE_MCP_TOKEN; default the dev server's token)")
    common.add_argument("--project", help="project id (default: the token's default project)")

    index = commands.add_parser("index", parents=[common], help="index a local directory or git URL")
    index.add_argument("source", metavar="PATH|URL")
    index.add_argument("--ref", help="branch, tag or commit of a git URL")
    index.add_argument("--force", action="store_true", help="re-embed every file")
    index.add_argument("--wait", action="store_true", help="show progress until the job ends (Ctrl-C offers to cancel)")
    index.set_defaults(handler=_client)

    search = commands.add_parser("search", parents=[common], help="search indexed code by meaning")
    search.add_argument("query")
    search.add_argument("--repo", help="repository name, source or id")
    search.add_argument("--lang", help="language, e.g. python")
    search.add_argument("--path", help="path glob, e.g. 'src/**/*.py'")
    search.add_argument("-k", type=int, default=10, help="number of results (1-50)")
    search.add_argument("--json", action="store_true", help="machine-readable results")
    search.set_defaults(handler=_client)

    jobs = commands.add_parser("jobs", help="list, inspect and cancel indexing jobs")
    actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="the project's jobs, newest first")
    listing.add_argument("--status", choices=["pending", "running", "completed", "failed", "cancelled"])
    listing.add_argument("--limit", type=int, default=20)
    for name, text in (("status", "one job's status"), ("cancel", "cancel a pending or running job")):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("job_id", metavar="ID")
    for parser in actions.choices.values():
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.set_defaults(handler=_client)


# -- entry point ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codebase-mcp",
        description="Semantic code search for AI coding agents, served over MCP.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_db(commands)
    _add_indexer(commands)
    _add_gateway(commands)
    _add_operator(commands)
    _add_clients(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        handler: Handler = args.handler
        return handler(args, settings)
    except ConfigError as error:
        print(f"codebase-mcp: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except (UserError, OSError) as error:
        # Expected failures carry a message written for people: said without a traceback.
        print(f"codebase-mcp: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
