"""`proofwell gate`: run the checks of proofwell.toml and decide whether a change may merge.

Exit 0 when every check meets its expectation, 1 when a decided verdict misses it, 2 when a
verdict is unknown (``--unknown=warn`` lets that pass), 3 on errors (configuration included).
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from service.gate.progress import GateProgress
    from service.gate.summary import GateSummary
    from service.gate.tasks import Outcome, Task

TOKEN_ENV = "PROOFWELL_TOKEN"


class UnknownPolicy(StrEnum):
    FAIL = "fail"
    WARN = "warn"


def register(app: typer.Typer) -> None:
    app.command("gate")(gate_command)


def gate_command(
    local: Annotated[bool, typer.Option("--local", help="Run the engine here (default)")] = False,
    server: Annotated[
        str | None, typer.Option(help=f"Run on a proofwell server; token from ${TOKEN_ENV}")
    ] = None,
    config: Annotated[Path, typer.Option(help="The gate configuration")] = Path("proofwell.toml"),
    junit: Annotated[Path | None, typer.Option(help="Write a JUnit XML report")] = None,
    sarif: Annotated[Path | None, typer.Option(help="Write a SARIF 2.1.0 report")] = None,
    summary: Annotated[
        Path | None, typer.Option(help="Append a Markdown summary (e.g. $GITHUB_STEP_SUMMARY)")
    ] = None,
    unknown: Annotated[
        UnknownPolicy, typer.Option(help="Whether an unknown verdict fails the gate")
    ] = UnknownPolicy.FAIL,
    baseline: Annotated[
        Path | None, typer.Option(help="Fail only on changes from this earlier run")
    ] = None,
    write_baseline_to: Annotated[
        Path | None, typer.Option("--write-baseline", help="Record this run as a baseline")
    ] = None,
    jobs: Annotated[int, typer.Option(help="Parallel checks (local; default: all cores)")] = 0,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Local result cache [default: .proofwell-cache/]")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Ignore the local cache")] = False,
) -> None:
    """Run every check of proofwell.toml. Exit 0 pass, 1 violated, 2 unknown, 3 error."""
    # The gate modules (rich.progress, tomllib, ...) are imported here, not at module level:
    # every `proofwell` command imports this module to build its help.
    from service.gate.baseline import BaselineError, compare, read_baseline, write_baseline
    from service.gate.cache import ResultCache
    from service.gate.config import ConfigError, load_config
    from service.gate.progress import GateProgress
    from service.gate.reports import write_reports
    from service.gate.summary import GateSummary
    from service.gate.tasks import expand

    if local and server:
        _fail("give either --local or --server URL, not both")
    try:
        gate_config = load_config(config)
        previous = read_baseline(baseline) if baseline is not None else None
    except (ConfigError, BaselineError) as exc:
        _fail(str(exc))
    tasks = expand(gate_config)
    with GateProgress(len(tasks)) as progress:
        if server:
            outcomes = _run_server(tasks, server, progress)
        else:
            cache = None if no_cache else ResultCache(cache_dir or Path(".proofwell-cache"))
            outcomes = _run_local(tasks, jobs, cache, progress)
    result = GateSummary(tuple(outcomes), unknown_fails=unknown is UnknownPolicy.FAIL)
    if previous is not None:
        comparison = compare(previous, outcomes, result.failing)
        result = GateSummary(result.outcomes, result.unknown_fails, comparison)
    try:
        write_reports(result, gate_config, junit=junit, sarif_path=sarif, summary_path=summary)
        if write_baseline_to is not None:
            write_baseline(write_baseline_to, outcomes)
    except OSError as exc:
        _fail(f"{exc.filename}: cannot write the report: {exc.strerror}")
    _print_end(result)
    raise typer.Exit(result.exit_code)


def _run_local(tasks: list[Task], jobs: int, cache, progress: GateProgress) -> list[Outcome]:
    from service.gate.runner import run_local

    return run_local(tasks, jobs=jobs, cache=cache, on_start=progress.start, on_done=progress.done)


def _run_server(tasks: list[Task], server: str, progress: GateProgress) -> list[Outcome]:
    from service.gate.remote import run_server

    token = os.environ.get(TOKEN_ENV) or None
    return run_server(tasks, server, token=token, on_start=progress.start, on_done=progress.done)


def _print_end(result: GateSummary) -> None:
    comparison = result.comparison
    if comparison is not None:
        for title, ids in (
            ("regression", comparison.regressions),
            ("new failure", comparison.new_failures),
            ("known failure", comparison.known_failures),
            ("fixed", comparison.fixed),
        ):
            for task_id in ids:
                print(f"baseline: {title}: {task_id}", file=sys.stderr)
    print(result.headline())


def _fail(message: str) -> NoReturn:
    # One plain line: rich would wrap it at the terminal width.
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(3)
