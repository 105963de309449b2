"""Helpers of the gate tests: a temporary copy of examples/gate and an in-process CLI run."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from service.cli import app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gate"

VIOLATED_CHECK = """
[[check]]
name = "clear-on-top"
model = "models/advisory.onnx"
properties = ["properties/clear_always_top.vnnlib"]
timeout = 30
"""


@dataclass(frozen=True)
class Run:
    code: int
    output: str


def make_repo(tmp_path: Path, extra: str = "") -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".proofwell-cache"))
    if extra:
        with (repo / "proofwell.toml").open("a") as fh:
            fh.write(extra)
    return repo


def gate(repo: Path, *args: str, jobs: str = "1") -> Run:
    result = CliRunner().invoke(
        app,
        [
            "gate",
            "--local",
            "--config",
            str(repo / "proofwell.toml"),
            "--cache-dir",
            str(repo / ".proofwell-cache"),
            "--jobs",
            jobs,
            *args,
        ],
    )
    return Run(result.exit_code, result.output)
