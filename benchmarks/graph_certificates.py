"""Graph-engine certificates: size, time to produce, time to check, and whether the
independent graph checker accepts them, on generated networks (the tests' residual,
Sigmoid/Tanh, MaxPool CNN, mixed piecewise-linear and 12-input residual networks).

    python benchmarks/graph_certificates.py [--seeds 6] [--gaps 0.05,0.01] [--csv F]

Each instance is y0 - y1 >= max + gap * spread over a box (the maximum estimated by
sampling and gradient ascent, as in tests/unit/test_graph_verify.py): holds when the
estimate is right. Run from the repository root. Never run by the tests.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.onnx_builders import to_bytes  # noqa: E402
from tests.unit.test_graph_certificates import ALL, WIDTH  # noqa: E402
from tests.unit.test_graph_verify import at_least, sampled_range  # noqa: E402


def run(name: str, seed: int, gap: float, timeout: float) -> dict:
    from verifiers.certify.checker import check_model
    from verifiers.components import OnnxComponent
    from verifiers.model import load_model
    from verifiers.options import Options
    from verifiers.verify import verify

    rng = np.random.default_rng(seed)
    data = to_bytes(ALL[name](rng))
    model = load_model(data)
    lower = rng.uniform(-1, 0, size=model.n_inputs).astype(np.float32).astype(np.float64)
    upper = (lower + WIDTH[name]).astype(np.float32).astype(np.float64)
    low, high = sampled_range(model, lower, upper, rng)
    prop = at_least(high + gap * max(high - low, 1e-3), lower, upper)
    result = verify(OnnxComponent(data), prop, Options(timeout_s=timeout))
    row = {"net": name, "seed": seed, "gap": gap, "verdict": result.verdict.value}
    row["produce_s"] = round(result.stats.seconds, 3)
    if result.certificate is None:
        return row
    text = json.dumps(result.certificate, separators=(",", ":"))
    row["size_kb"] = round(len(text) / 1024, 1)
    row["leaves"] = sum(result.certificate["leaves"].values())
    started = time.monotonic()
    report = check_model(json.loads(text), model, prop)
    row["check_s"] = round(time.monotonic() - started, 3)
    row["valid"] = report.valid
    if not report.valid:
        row["message"] = report.message[:300]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default=",".join(ALL))
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--gaps", default="0.05,0.01")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args()
    rows = []
    for name in args.nets.split(","):
        for seed in range(args.seeds):
            for gap in map(float, args.gaps.split(",")):
                row = run(name, seed, gap, args.timeout)
                rows.append(row)
                print(json.dumps(row), flush=True)
    checked = [r for r in rows if "valid" in r]
    print(
        f"{len(rows)} instances, {len(checked)} holds, "
        f"{sum(r['valid'] for r in checked)} certificates valid, "
        f"produce {sum(r['produce_s'] for r in checked):.1f} s, "
        f"check {sum(r['check_s'] for r in checked):.1f} s"
    )
    if args.csv:
        keys = sorted({k for r in rows for k in r})
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, keys)
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
