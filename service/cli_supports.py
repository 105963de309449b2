"""`proofwell supports MODEL.onnx`: each node as exact / relaxed / conditional / unsupported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from verifiers.model.support import support_report


def register(app: typer.Typer) -> None:
    app.command("supports")(supports_command)


def supports_command(
    model: Annotated[Path, typer.Argument(help="MODEL.onnx")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List what each node of a model gets. Exit 0 when the model can be verified, 3 if not."""
    report = support_report(model)
    if json_output:
        data = {
            "engine": report.engine,
            "error": report.error,
            "nodes": [
                {"name": n.name, "op_type": n.op_type, "level": n.level.value, "note": n.note}
                for n in report.nodes
            ],
        }
        typer.echo(json.dumps(data))
    else:
        table = Table("node", "op", "support", "note")
        for n in report.nodes:
            table.add_row(n.name, n.op_type, n.level.value, n.note)
        console = Console()
        console.print(table)
        engine = {"chain": "Affine/ReLU chain (fast path)", "graph": "graph engine"}
        console.print(f"engine: {engine.get(report.engine, 'none')}")
        if report.error:
            console.print(f"error: {report.error}", markup=False)
    raise typer.Exit(0 if report.supported else 3)
