"""Service commands: ``serve``, ``worker``, ``submit`` and ``db upgrade``."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from rich.console import Console

    from service.config import Settings

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db", help="Database URL [default: $DATABASE_URL, then sqlite:///./proofwell.db]"
    ),
]


def _settings(db: str | None) -> Settings:
    # Imported here: `proofwell verify` should not pay for SQLAlchemy and Alembic at start-up.
    from service.config import Settings

    return Settings().with_database(db)


def _err() -> Console:
    # rich and multiprocessing are imported where used: every `proofwell` command imports
    # this module to build its help.
    from rich.console import Console

    return Console(stderr=True)


def _schema_error() -> type[Exception]:
    from service.store.migrate import SchemaError

    return SchemaError


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def run_worker(
    settings: Settings,
    concurrency: int,
    migrate: bool = True,
    runner: str | None = None,
    parent_pid: int | None = None,
    nice: int = 0,
    idle_jobs: bool = False,
) -> None:
    """A worker process's main: SIGTERM/SIGINT stop claiming and release running jobs.
    ``nice`` lowers its CPU priority (and its jobs'), below an API on the same machine;
    ``idle_jobs`` runs its jobs on idle CPU time only (``sandbox.run_on_idle_cpu``)."""
    from service.worker.main import Worker
    from service.worker.sandbox import DEFAULT_RUNNER

    _logging()
    if nice:
        os.nice(nice)
    worker = Worker(
        settings,
        concurrency,
        runner=runner or DEFAULT_RUNNER,
        parent_pid=parent_pid,
        idle_jobs=idle_jobs,
    )
    signal.signal(signal.SIGTERM, worker.request_stop)
    signal.signal(signal.SIGINT, worker.request_stop)
    worker.run(migrate=migrate)


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_auth(settings: Settings, host: str) -> Settings:
    """Open mode only for the local default: bound to loopback, and not asked for tokens."""
    local = _loopback(host)
    if settings.auth == "open" and not local:
        _err().print(
            f"[red]error:[/red] open mode (PROOFWELL_AUTH=open) is only allowed on a loopback "
            f"address, not {host}: create tokens with `proofwell token create`"
        )
        raise typer.Exit(3)
    open_mode = local and settings.auth != "tokens"
    if open_mode:
        _err().print(
            f"[yellow]open mode[/yellow]: no token needed, listening on {host} only "
            "(anyone on this machine can use the service; PROOFWELL_AUTH=tokens to require tokens)"
        )
    else:
        _err().print(
            f"tokens required: listening on {host}; API calls need 'Authorization: Bearer <token>'"
            " and the dashboard a login (`proofwell token create --project NAME`)"
        )
    return settings.model_copy(update={"open_mode": open_mode})


def serve(
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="Local worker processes (0: none)")] = 1,
    api_workers: Annotated[
        int, typer.Option(min=1, max=64, help="API processes (uvicorn workers)")
    ] = 1,
    access_log: Annotated[
        bool,
        typer.Option(
            help="Log every request (off behind a proxy that logs them: ~8% of a "
            "submission's API time)"
        ),
    ] = True,
) -> None:
    """Run the API (and dashboard) with N local worker processes."""
    import multiprocessing

    import uvicorn

    from service.app import create_app, freeze_start_up_heap

    _logging()
    settings = resolve_auth(_settings(db), host)
    try:
        app = create_app(settings)
    except _schema_error() as exc:
        _err().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(3) from None
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(
            target=run_worker,
            args=(settings, 1),
            kwargs={
                "migrate": False,
                "parent_pid": os.getpid(),
                "nice": settings.worker_nice,
                "idle_jobs": settings.worker_idle_jobs,
            },
            name=f"worker-{i}",
        )
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    # uvicorn re-raises SIGTERM/SIGINT once shut down; a no-op handler lets us reach the
    # `finally` that stops the workers (the default handler would orphan them).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _ignore)
    try:
        if api_workers > 1:  # each process builds its app from the environment
            os.environ["DATABASE_URL"] = settings.database_url
            os.environ["PROOFWELL_OPEN_MODE"] = "true" if settings.open_mode else "false"
            _serve_api_processes(host, port, api_workers, access_log)
        else:
            freeze_start_up_heap()
            uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log)
    finally:
        _stop(procs)


def _serve_api_processes(host: str, port: int, count: int, access_log: bool) -> None:
    """``count`` API processes: a listening socket each where Linux then spreads the
    connections over them (service/api_processes.py), else uvicorn's shared socket."""
    import uvicorn

    from service.api_processes import APP, BALANCED, ApiProcesses

    if not BALANCED:
        uvicorn.run(APP, factory=True, host=host, port=port, workers=count, access_log=access_log)
        return
    try:
        processes = ApiProcesses(host, port, count, access_log)
    except OSError as exc:
        _err().print(f"[red]error:[/red] cannot listen on {host}:{port}: {exc.strerror or exc}")
        raise typer.Exit(1) from None
    _err().print(f"API: {count} processes on http://{host}:{port}")
    processes.run()


def _ignore(*_: object) -> None:
    return None


def _stop(procs: list[BaseProcess]) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.terminate()  # SIGTERM: the worker releases its running jobs
    for proc in procs:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()


def worker(
    db: DbOpt = None,
    concurrency: Annotated[int, typer.Option(help="Jobs run at once")] = 1,
    runner: Annotated[str | None, typer.Option(hidden=True, help="module:function")] = None,
) -> None:
    """Claim and run jobs from the database until SIGTERM."""
    try:
        run_worker(_settings(db), concurrency, runner=runner)
    except _schema_error() as exc:
        _err().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(3) from None


def db_upgrade(db: DbOpt = None) -> None:
    """Create or migrate the database schema to the newest revision."""
    from service.store.migrate import upgrade

    settings = _settings(db)
    upgrade(settings.database_url)
    _err().print(f"database at the newest schema: {_redact(settings.database_url)}")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def submit(
    model: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, metavar="MODEL", help="ONNX, module or SYSTEM.json"
        ),
    ],
    spec: Annotated[
        Path | None,
        typer.Argument(
            exists=True,
            dir_okay=False,
            metavar="SPEC",
            help="Property file (none for a system)",
        ),
    ] = None,
    server: Annotated[str, typer.Option(help="Service URL")] = "http://127.0.0.1:8000",
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job to its verdict")] = False,
    timeout: Annotated[float | None, typer.Option(help="Verification timeout (s)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the job as JSON")] = False,
) -> None:
    """Upload MODEL, submit SPEC (a SYSTEM.json: upload the files it names, submit it); with
    --wait exit with the verdict's exit code."""
    from service.api.client import run_submit

    raise typer.Exit(run_submit(server, model, spec, wait=wait, timeout=timeout, json_out=json_out))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("worker")(worker)
    app.command("submit")(submit)
    db = typer.Typer(help="Database schema commands.", no_args_is_help=True)
    db.command("upgrade")(db_upgrade)
    app.add_typer(db, name="db")
