"""The `proofwell` command line (typer + rich): one app, commands from their own modules."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="proofwell",
    help="Formal verification of ONNX subnetworks and symbolic modules.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """Formal verification of ONNX subnetworks and symbolic modules."""


from service import cli_verify  # noqa: E402

cli_verify.register(app)

from service import cli_service  # noqa: E402

cli_service.register(app)

from service import cli_gate  # noqa: E402

cli_gate.register(app)

from service import cli_certificate  # noqa: E402

cli_certificate.register(app)
