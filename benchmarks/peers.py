"""Running one instance in proofwell and in the reference peer Marabou, each in its own
process with wall-clock timing and peak memory."""

from __future__ import annotations

import compileall
import csv
import functools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timed(cmd: list[str], timeout: float) -> tuple[str, float, float, float]:
    """(stdout, wall seconds, CPU seconds, peak RSS MB) of a command; killed after `timeout` +
    grace. CPU time (user + system of the child) is what to compare on a shared machine."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    timer = threading.Timer(timeout + 15, proc.kill)
    timer.start()
    out = proc.stdout.read()
    # wait4 reaps this child alone, so the peak memory is this run's, not the maximum so far.
    _, _, usage = os.wait4(proc.pid, 0)
    timer.cancel()
    seconds = time.perf_counter() - start
    return out, seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


@functools.cache
def _compile_project() -> None:
    """The project's modules compiled to bytecode once, as an install compiles its packages:
    on a machine that sets PYTHONDONTWRITEBYTECODE (this one does), an editable checkout
    otherwise compiles them from source in every timed process (about 0.09 s of each ACAS Xu
    instance here: 0.64 against 0.55 s on a trivial one), a cost no installed copy has."""
    for package in ("verifiers", "service"):
        compileall.compile_dir(ROOT / package, quiet=1)


def run_proofwell(net: Path, prop: Path, timeout: float, workers: int) -> dict:
    _compile_project()
    exe = shutil.which("proofwell") or f"{sys.executable} -m service.cli"
    cmd = [
        *exe.split(),
        "verify",
        str(net),
        str(prop),
        "--json",
        "--timeout",
        str(timeout),
        "--workers",
        str(workers),
    ]
    out, seconds, cpu, rss = _timed(cmd, timeout)
    try:
        verdict = json.loads(out)["verdict"]
    except (json.JSONDecodeError, KeyError):
        verdict = "crashed"
    return {
        "proofwell_verdict": verdict,
        "proofwell_seconds": seconds,
        "proofwell_cpu_seconds": cpu,
        "proofwell_rss_mb": rss,
    }


def marabou_binary() -> str:
    found = shutil.which("Marabou")
    if found:
        return found
    import maraboupy  # noqa: F401  (the `bench` extra ships the binary beside the package)

    candidate = Path(maraboupy.__file__).parent / "Marabou"
    if candidate.exists():
        return str(candidate)
    raise SystemExit("Marabou is not installed: pip install -e '.[bench]'")


def run_marabou(net: Path, prop: Path, timeout: float, workers: int) -> dict:
    cmd = [marabou_binary(), str(net), str(prop), f"--timeout={int(timeout)}"]
    if workers > 1:
        cmd += ["--snc", f"--num-workers={workers}"]
    out, seconds, cpu, rss = _timed(cmd, timeout)
    lines = [line.strip().lower() for line in out.splitlines()]
    if "unsat" in lines:
        verdict = "holds"
    elif "sat" in lines:
        verdict = "violated"
    else:
        verdict = "unknown"
    return {
        "marabou_verdict": verdict,
        "marabou_seconds": seconds,
        "marabou_cpu_seconds": cpu,
        "marabou_rss_mb": rss,
    }


def write_csv(path: str | Path, rows: list[dict]) -> None:
    """One row per instance, columns from the first row."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
