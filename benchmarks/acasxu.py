"""ACAS Xu benchmark: every instance of ../shared/benchmarks/acasxu, optionally vs Marabou.

    python benchmarks/acasxu.py [--props 1,2] [--nets 1_1,1_2] [--csv out.csv] [--vs-marabou]
                                [--shuffle SEED]

Each instance runs as its own `proofwell verify --json` process (start-up included, as in
VNN-COMP) with the instance's timeout. With --vs-marabou, Marabou (the `bench` extra) runs
the same instance right after, with the same core count, and ratios are printed. The CSV is
rewritten after every instance, so a run cut short still leaves its rows; --shuffle orders the
instances randomly so that any prefix of a run is a fair sample of all properties.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import run_marabou, run_proofwell, write_csv  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "acasxu"


def instances(props: set[str] | None, nets: set[str] | None) -> list[tuple[str, str, float, str]]:
    expected = {}
    with open(SHARED / "expected.csv") as f:
        for row in csv.DictReader(f):
            expected[(row["onnx"], row["vnnlib"])] = row["expected"]
    out = []
    with open(SHARED / "acasxu_instances.csv") as f:
        for onnx_name, vnnlib, timeout in csv.reader(f):
            net = onnx_name.split("_")[2] + "_" + onnx_name.split("_")[3]
            prop = vnnlib.removeprefix("prop_").removesuffix(".vnnlib")
            if (props and prop not in props) or (nets and net not in nets):
                continue
            out.append((onnx_name, vnnlib, float(timeout), expected[(onnx_name, vnnlib)]))
    return out


def summarise(tool: str, rows: list[dict]) -> None:
    verdicts = [r[f"{tool}_verdict"] for r in rows]
    decided = [r for r, v in zip(rows, verdicts, strict=True) if v in ("holds", "violated")]
    wrong = [r for r in decided if r[f"{tool}_verdict"] != r["expected"]]
    times = [r[f"{tool}_seconds"] for r in rows]
    cpu = [r[f"{tool}_cpu_seconds"] for r in rows]
    print(
        f"{tool}: {len(rows)} instances, decided {len(decided)}, correct "
        f"{len(decided) - len(wrong)}, wrong {len(wrong)}, unknown {len(rows) - len(decided)}, "
        f"total {sum(times):.1f} s, median {statistics.median(times):.2f} s, "
        f"CPU total {sum(cpu):.1f} s, median {statistics.median(cpu):.2f} s, "
        f"peak memory {max(r[f'{tool}_rss_mb'] for r in rows):.0f} MB"
    )
    for r in wrong:
        print(
            f"  WRONG {r['onnx']} {r['vnnlib']}: expected {r['expected']}, got {r[f'{tool}_verdict']}"
        )


def ratios(rows: list[dict]) -> None:
    by_prop: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_prop[r["vnnlib"]].append(r)
    for prop, group in sorted(by_prop.items(), key=lambda kv: int(kv[0][5:-7])):
        ours = sum(r["proofwell_seconds"] for r in group)
        theirs = sum(r["marabou_seconds"] for r in group)
        print(
            f"  {prop}: proofwell {ours:.1f} s, Marabou {theirs:.1f} s, ratio {ours / theirs:.2f}"
        )
    ours = sum(r["proofwell_seconds"] for r in rows)
    theirs = sum(r["marabou_seconds"] for r in rows)
    print(f"  total: proofwell {ours:.1f} s, Marabou {theirs:.1f} s, ratio {ours / theirs:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--props", help="comma-separated property numbers, e.g. 1,2,3,4")
    parser.add_argument("--nets", help="comma-separated networks, e.g. 1_1,1_2")
    parser.add_argument("--csv", default="benchmarks/results/acasxu.csv")
    parser.add_argument("--workers", type=int, default=1, help="search processes per instance")
    parser.add_argument("--vs-marabou", action="store_true")
    parser.add_argument("--shuffle", type=int, metavar="SEED", help="random instance order")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"skipped: {SHARED} is absent")
        return 0
    chosen = instances(
        set(args.props.split(",")) if args.props else None,
        set(args.nets.split(",")) if args.nets else None,
    )
    if args.shuffle is not None:
        random.Random(args.shuffle).shuffle(chosen)
    rows = []
    for onnx_name, vnnlib, timeout, expected in chosen:
        row = {"onnx": onnx_name, "vnnlib": vnnlib, "expected": expected, "timeout": timeout}
        net, prop = SHARED / onnx_name, SHARED / vnnlib
        row.update(run_proofwell(net, prop, timeout, args.workers))
        if args.vs_marabou:
            row.update(run_marabou(net, prop, timeout, args.workers))
        rows.append(row)
        print(
            f"{onnx_name} {vnnlib}: expected {expected}, proofwell {row['proofwell_verdict']} "
            f"{row['proofwell_seconds']:.2f} s"
            + (
                f", Marabou {row['marabou_verdict']} {row['marabou_seconds']:.2f} s"
                if args.vs_marabou
                else ""
            ),
            flush=True,
        )
        write_csv(args.csv, rows)
    summarise("proofwell", rows)
    if args.vs_marabou:
        summarise("marabou", rows)
        ratios(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
