"""Certificates on ACAS Xu: size, time to produce, time to check (issue 14's targets).

    python benchmarks/certificates.py [--props 3,4] [--nets 1_1,2_7] [--limit N] [--csv F]
                                      [--shuffle SEED] [--timeout S]

Every `holds` instance of ../shared/benchmarks/acasxu (expected.csv) is verified in this
process with one worker, its certificate written to JSON (the size is that of the text), then
re-checked in this process by the independent checker (verifiers/certify/checker). Both
sides are timed alike, in-process and without interpreter start-up: production is the
search's own seconds (from the model's bytes and the parsed property: loading the model
counts), checking is parsing the JSON, loading the model from its bytes and the check. CPU
seconds of both are reported too (steadier on a loaded machine). Instances that produce in
under 10 s are timed as the fastest of 3 runs of each side (alternating). Targets: every
certificate under 10 MB, checking no slower than producing. Never run by the tests.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

from verifiers.model import load_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "acasxu"


def holding(props: set[str] | None, nets: set[str] | None) -> list[tuple[str, str]]:
    out = []
    with open(SHARED / "expected.csv") as f:
        for row in csv.DictReader(f):
            net = "_".join(row["onnx"].split("_")[2:4])
            prop = row["vnnlib"].removeprefix("prop_").removesuffix(".vnnlib")
            if row["expected"] != "holds":
                continue
            if (props and prop not in props) or (nets and net not in nets):
                continue
            out.append((row["onnx"], row["vnnlib"]))
    return out


# Instances of a few seconds are timed as the fastest of a few runs of each side, the two
# alternating: on a shared machine a single run swings by tens of percent (up to 3x in
# wall time under a load of 7) with the other processes' work, not with the code.
SHORT_S = 10.0
REPEATS = 3


def run(onnx_name: str, vnnlib: str, timeout: float) -> dict:
    from verifiers.spec import load_property

    source = (SHARED / onnx_name).read_bytes()
    prop = load_property(SHARED / vnnlib)
    row = {"onnx": onnx_name, "vnnlib": vnnlib}
    result, produce_s, produce_cpu = produce(source, prop, timeout)
    row["verdict"] = result.verdict.value
    if result.certificate is None:
        return row
    text = json.dumps(result.certificate, separators=(",", ":"))
    row["size_kb"] = round(len(text) / 1024, 1)
    row["leaves"] = sum(result.certificate["leaves"].values())
    report, check_s, check_cpu = check_once(text, source, prop)
    if produce_s < SHORT_S:
        for _ in range(REPEATS - 1):
            _, again_s, again_cpu = produce(source, prop, timeout)
            produce_s, produce_cpu = min(produce_s, again_s), min(produce_cpu, again_cpu)
            _, again_s, again_cpu = check_once(text, source, prop)
            check_s, check_cpu = min(check_s, again_s), min(check_cpu, again_cpu)
    row["produce_s"], row["produce_cpu_s"] = round(produce_s, 3), round(produce_cpu, 3)
    row["check_s"], row["check_cpu_s"] = round(check_s, 3), round(check_cpu, 3)
    row["valid"] = report.valid
    row["ratio"] = round(check_s / max(produce_s, 1e-3), 2)
    # CPU seconds too: on a shared machine wall time swings with the other processes' load
    row["cpu_ratio"] = round(check_cpu / max(produce_cpu, 1e-3), 2)
    if not report.valid:
        row["message"] = report.message
    return row


def produce(source: bytes, prop, timeout: float):
    """The verdict with its certificate, the search's own seconds and the CPU seconds."""
    from verifiers.components import OnnxComponent
    from verifiers.options import Options
    from verifiers.verify import verify

    cpu = time.process_time()
    result = verify(OnnxComponent(source), prop, Options(timeout_s=timeout, workers=1))
    return result, result.stats.seconds, time.process_time() - cpu


def check_once(text: str, source: bytes, prop):
    """The checker's report on the certificate's JSON text, wall and CPU seconds: like the
    search's seconds, from the model's bytes (loaded here) and the parsed property."""
    from verifiers.certify.checker import check_model

    started, cpu = time.monotonic(), time.process_time()
    report = check_model(json.loads(text), load_model(source), prop)
    return report, time.monotonic() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--props", type=lambda s: set(s.split(",")))
    parser.add_argument("--nets", type=lambda s: set(s.split(",")))
    parser.add_argument("--limit", type=int)
    parser.add_argument("--shuffle", type=int)
    parser.add_argument("--timeout", type=float, default=116.0)
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args()
    todo = holding(args.props, args.nets)
    if args.shuffle is not None:
        random.Random(args.shuffle).shuffle(todo)
    todo = todo[: args.limit] if args.limit else todo
    rows = []
    for onnx_name, vnnlib in todo:
        row = run(onnx_name, vnnlib, args.timeout)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.csv:
            keys = sorted({k for r in rows for k in r})
            with open(args.csv, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(rows)
    checked = [r for r in rows if "check_s" in r]
    if checked:
        print(
            f"{len(checked)} certificates: largest {max(r['size_kb'] for r in checked):.0f} KB, "
            f"all valid: {all(r['valid'] for r in checked)}, "
            f"check/produce: median {sorted(r['ratio'] for r in checked)[len(checked) // 2]}, "
            f"max {max(r['ratio'] for r in checked)}; in CPU seconds: median "
            f"{sorted(r['cpu_ratio'] for r in checked)[len(checked) // 2]}, "
            f"max {max(r['cpu_ratio'] for r in checked)}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
