"""The `proofwell` command line (typer + rich): one app, commands from their own modules."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="proofwell",
    help="Formal verification of ONNX subnetworks and symbolic modules.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: typer's rich panels label every flag (even --help) with `<bool>`.
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        import verifiers

        print(f"proofwell {version('proofwell')} (engine {verifiers.__version__})")
        raise typer.Exit(0)


@app.callback()
def main(
    _version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit"
        ),
    ] = None,
) -> None:
    """Formal verification of ONNX subnetworks and symbolic modules."""


from service import cli_verify  # noqa: E402

cli_verify.register(app)

from service import cli_service  # noqa: E402

cli_service.register(app)

from service import cli_gate  # noqa: E402

cli_gate.register(app)

from service import cli_token  # noqa: E402

cli_token.register(app)

from service import cli_certificate  # noqa: E402

cli_certificate.register(app)
