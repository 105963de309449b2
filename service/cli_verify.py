"""`proofwell verify`: decide one component against one property, no server needed."""

from __future__ import annotations

import atexit
import functools
import gc
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from service.progress_text import ProgressLines, describe
from service.run_files import is_symbolic, verify_files
from verifiers.errors import OptionsError, VerifierError
from verifiers.options import Options, default_workers
from verifiers.result import Progress, Result, Stats, Verdict, internal_error


def register(app: typer.Typer) -> None:
    app.command("verify")(verify_command)


def verify_command(
    model: Annotated[
        Path, typer.Argument(metavar="MODEL", help="MODEL.onnx, MODULE.py or SYSTEM.json")
    ],
    spec: Annotated[
        Path | None,
        typer.Argument(metavar="SPEC", help="SPEC.vnnlib, a JSON preset, or a module SPEC.json"),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds before the verdict is unknown")] = 60.0,
    workers: Annotated[int, typer.Option(help="Search processes (default: all cores)")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print only the JSON result")] = False,
    vnncomp_result: Annotated[
        Path | None, typer.Option(help="Write a VNN-COMP result file here")
    ] = None,
    margin: Annotated[float, typer.Option(help="Prove with this much room to spare")] = 0.0,
    input_names: Annotated[
        list[str] | None,
        typer.Option("--input", metavar="NAME", help="Subnetwork input tensor name"),
    ] = None,
    output_names: Annotated[
        list[str] | None,
        typer.Option("--output", metavar="NAME", help="Subnetwork output tensor name"),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the search")] = 0,
    certificate: Annotated[
        Path | None,
        typer.Option(help="Write the proof certificate of a holds here (JSON)"),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress lines on stderr")
    ] = False,
) -> None:
    """Verify a component against a property. Exit 0 holds, 1 violated, 2 unknown, 3 error."""
    started = process_started()
    live = sys.stderr.isatty() and not json_output
    try:
        options = Options(
            timeout_s=timeout,
            workers=workers or default_workers(),
            seed=seed,
            margin=margin,
            # A certificate must check: the checker follows plain CROWN bounds always, but
            # not every leaf of the optimised search (docs/certificate.md, "Optimised bounds").
            optimise_bounds=certificate is None,
        )
        result = _run(model, spec, options, input_names, output_names, live, quiet, started)
    except OptionsError as exc:
        result = Result(Verdict.ERROR, Stats(), reason=f"--{_flag(exc.field)}: {exc.message}")
    except VerifierError as exc:
        result = Result(Verdict.ERROR, Stats(), reason=str(exc))
    except OSError as exc:
        result = Result(Verdict.ERROR, Stats(), reason=f"{exc.filename}: {exc.strerror}")
    except Exception as exc:  # a bug: exit 3 with a message, never 1 (violated)
        logging.getLogger(__name__).debug("internal error", exc_info=True)
        result = internal_error(exc)
    if vnncomp_result is not None:
        vnncomp_result.write_text(vnncomp_text(result))
    if certificate is not None and result.certificate is not None:
        certificate.write_text(json.dumps(result.certificate, separators=(",", ":")))
    if json_output:
        print(json.dumps(result.to_json(), allow_nan=False))
    else:
        _print_human(result, model, spec, input_names, output_names)
    _skip_collections_at_exit()
    raise typer.Exit(result.verdict.exit_code)


# A process older than this at the command's start is not a fresh `proofwell verify` (e.g.
# a test runner invoking the command in-process): its timeout counts from the command.
FRESH_PROCESS_S = 10.0


def process_started() -> float:
    """time.monotonic() at this process's start (Linux /proc), so that `--timeout` covers
    the interpreter's start-up, the imports and parsing: a 60 s timeout ends the process
    within a second of 60 s. Now, where unknown or the process is not fresh."""
    now = time.monotonic()
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        age = uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return now
    return now - age if 0.0 <= age <= FRESH_PROCESS_S else now


def _flag(field: str | None) -> str:
    return {"timeout_s": "timeout"}.get(field or "", field or "option")


def _skip_collections_at_exit() -> None:
    """Spare the interpreter's exit its full garbage collections.

    They walk the ~50,000 objects that numpy, onnx, typer and pydantic leave behind and cost
    ~35 ms of every run, with nothing left to do: the result is printed and files are closed.
    atexit handlers (multiprocessing's clean-up among them) and the flushing of stdout and
    stderr still run. Frozen at exit, not now: a caller that runs the command in-process (a
    CliRunner) keeps its collector until its own exit.
    """
    atexit.unregister(gc.freeze)  # registered once, however often the command runs
    atexit.register(gc.freeze)


def _run(
    model: Path,
    spec: Path | None,
    options: Options,
    input_names: list[str] | None,
    output_names: list[str] | None,
    live: bool,
    quiet: bool,
    started: float,
) -> Result:
    """Verify, reporting progress on stderr: a status line on a terminal, else a plain line
    every few seconds (elapsed, rate, estimate) unless ``quiet``."""
    if is_symbolic(model, spec):
        return verify_files(model, spec, options)
    run = functools.partial(
        verify_files,
        model,
        spec,
        options,
        inputs=tuple(input_names) if input_names else None,
        outputs=tuple(output_names) if output_names else None,
        started=started,
    )
    if not live:
        return run(on_progress=None if quiet else ProgressLines(options.timeout_s))
    # rich is imported where it is used: a `--json` run never needs it.
    from rich.console import Console

    with Console(stderr=True).status("verifying...") as status:
        return run(on_progress=_status_updater(status, options.timeout_s))


def _status_updater(status, timeout: float):
    def update(progress: Progress) -> None:
        status.update(f"verifying: {describe(progress, timeout)}")

    return update


def vnncomp_text(result: Result) -> str:
    """The VNN-COMP result file: unsat | sat + assignment | timeout | unknown | error."""
    if result.verdict is Verdict.VIOLATED and result.counterexample is not None:
        cex = result.counterexample
        outputs = cex.onnxruntime_outputs or cex.outputs
        pairs = [f"(X_{i} {v!r})" for i, v in enumerate(cex.inputs)]
        pairs += [f"(Y_{i} {v!r})" for i, v in enumerate(outputs)]
        return "sat\n(" + "\n ".join(pairs) + ")\n"
    if result.verdict is Verdict.UNKNOWN and (result.reason or "").startswith("timeout"):
        return "timeout\n"
    return result.verdict.vnncomp + "\n"


def _print_human(
    result: Result,
    model: Path,
    spec: Path | None,
    input_names: list[str] | None,
    output_names: list[str] | None,
) -> None:
    from service import cli_report

    names = None
    cex = result.counterexample
    if cex is not None and not is_symbolic(model, spec):
        inputs = tuple(input_names) if input_names else None
        outputs = tuple(output_names) if output_names else None
        n_out = len(cex.outputs)
        names = cli_report.onnx_names(model, spec, len(cex.inputs), n_out, inputs, outputs)
    cli_report.print_result(result, names, cli_report.context_of(model, spec))
