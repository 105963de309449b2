"""`proofwell check-certificate`: re-validate a stored proof with the independent checker."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("check-certificate")(check_certificate_command)


def check_certificate_command(
    certificate: Annotated[Path, typer.Argument(help="CERT.json written by verify --certificate")],
    model: Annotated[Path, typer.Option(help="The model the certificate is for (ONNX)")],
    spec: Annotated[Path, typer.Option(help="The property (VNN-LIB or JSON preset)")],
    json_output: Annotated[bool, typer.Option("--json", help="Print only a JSON summary")] = False,
) -> None:
    """Re-check a certificate independently of the search. Exit 0 valid, 1 invalid, 3 error."""
    from verifiers.certify.checker import CHECKER_VERSION, check_model, is_graph
    from verifiers.errors import VerifierError

    try:
        document = json.loads(certificate.read_text())
        from verifiers.model import load_model
        from verifiers.spec import load_property

        loaded = load_model(model)
        prop = load_property(spec, n_inputs=loaded.n_inputs, n_outputs=loaded.n_outputs)
        if not is_graph(document):
            loaded.network  # noqa: B018  (the chain checker needs the chain normal form)
    except (OSError, ValueError, VerifierError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(3) from None
    live = sys.stderr.isatty() and not json_output
    if live:
        report = _with_progress(check_model, document, loaded, prop)
    else:
        report = check_model(document, loaded, prop)
    if json_output:
        print(
            json.dumps(
                {
                    "valid": report.valid,
                    "message": report.message,
                    "checker": CHECKER_VERSION,
                    "seconds": round(report.seconds, 3),
                    "leaves": report.leaves,
                    "regions": report.nodes,
                    "evidence": report.evidence,
                }
            )
        )
    else:
        print(("valid" if report.valid else "INVALID") + f" ({CHECKER_VERSION}): {report.message}")
    raise typer.Exit(0 if report.valid else 1)


def _with_progress(check, document, loaded, prop):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("checking"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("regions"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("check", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return check(document, loaded, prop, update)
