"""Digits benchmark: L-inf robustness of small ReLU classifiers on 8x8 digits, optionally vs Marabou.

    python benchmarks/digits.py [--nets 64-32-32-10,784-256-256-10] [--epsilons 0.01,0.05] [--images 20]
                                [--timeout 60] [--workers 1] [--csv out.csv] [--vs-marabou]

Built offline from scikit-learn's bundled `load_digits` (64 features scaled to [0, 1]): each
network is trained with a fixed seed (sklearn MLPClassifier, ReLU), exported to ONNX (Gemm +
Relu, float32, input [1, 64]) and checked against sklearn in onnxruntime; networks and VNN-LIB
properties are cached in benchmarks/results/digits/. An instance is the L-inf ball of radius
epsilon (clipped to [0, 1]) around one of the first test images the network classifies
correctly; it is unsafe if some other class scores at least as high as the label. The
784-input networks (not run by default) see the images upsampled to 28x28, MNIST's size.

Each instance runs as its own `proofwell verify --json` process with the timeout; with
--vs-marabou, Marabou (the `bench` extra) runs the same instance right after, with the same core
count. There is no expected verdict: a decided instance on which the two tools disagree is
reported as a DISAGREEMENT, and the tool that claims `violated` is re-run so that its
counterexample can be replayed here in onnxruntime (box membership and the unsafe condition):
the verdict of that check says which tool is wrong.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import marabou_binary, run_marabou, run_proofwell, write_csv  # noqa: E402

CACHE = Path(__file__).resolve().parent / "results" / "digits"
SEED = 0
NETS = {
    "64-32-32-10": (32, 32),
    "64-100-100-10": (100, 100),
    # MNIST-sized (DESIGN section 7): the images upsampled to 28x28, 784 inputs.
    "784-256-256-10": (256, 256),
    "784-256-256-256-256-10": (256, 256, 256, 256),
}
DEFAULT_NETS = ("64-32-32-10", "64-100-100-10")
EPSILONS = (0.005, 0.01, 0.02, 0.05)
DECIDED = ("holds", "violated")


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test), features in [0, 1], a fixed stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).astype(np.float64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, data.target, test_size=0.25, random_state=SEED, stratify=data.target
    )
    return x_train, y_train, x_test, y_test


def upsampled(split: tuple) -> tuple:
    """The split with its 8x8 images zoomed (bilinear) to 28x28: MNIST's 784 inputs."""
    from scipy.ndimage import zoom

    def grow(x: np.ndarray) -> np.ndarray:
        images = [zoom(row.reshape(8, 8), 3.5, order=1).ravel() for row in x]
        return np.clip(np.stack(images), 0.0, 1.0)

    x_train, y_train, x_test, y_test = split
    return grow(x_train), y_train, grow(x_test), y_test


def export_onnx(weights: list[np.ndarray], biases: list[np.ndarray], path: Path) -> None:
    """Gemm (transB=1, as exported by PyTorch) + Relu between layers; logits out."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    current = "input"
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        inits.append(numpy_helper.from_array(w.T.astype(np.float32), f"W{i}"))
        inits.append(numpy_helper.from_array(b.astype(np.float32), f"B{i}"))
        last = i == len(weights) - 1
        out = "output" if last else f"gemm{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"B{i}"], [out], transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"relu{i}"]))
            out = f"relu{i}"
        current = out
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, weights[0].shape[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, weights[-1].shape[1]])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="proofwell-digits"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def onnx_logits(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate(
        [sess.run(None, {"input": row[None, :].astype(np.float32)})[0] for row in x]
    )


def train(name: str, hidden: tuple[int, ...], split: tuple) -> Path:
    """Train (or reuse) the network `name`, checked against sklearn in onnxruntime."""
    path = CACHE / f"{name}.onnx"
    if path.exists():
        return path
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x_train, y_train, x_test, y_test = split
    clf = MLPClassifier(
        hidden_layer_sizes=hidden, activation="relu", max_iter=300, random_state=SEED, tol=1e-5
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, y_train)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    export_onnx(clf.coefs_, clf.intercepts_, tmp)
    logits = onnx_logits(tmp, x_test)
    # sklearn's softmax output vs onnxruntime's logits through the same softmax.
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    gap = np.abs(probs - clf.predict_proba(x_test)).max()
    agree = np.mean(logits.argmax(axis=1) == clf.predict(x_test))
    if gap > 1e-4 or agree < 1.0:
        tmp.unlink()
        raise SystemExit(f"{name}: ONNX export disagrees with sklearn (gap {gap:.2g})")
    tmp.rename(path)
    print(
        f"trained {name}: train accuracy {clf.score(x_train, y_train):.3f}, test accuracy "
        f"{clf.score(x_test, y_test):.3f}, ONNX matches sklearn (max prob gap {gap:.1e})"
    )
    return path


def write_vnnlib(path: Path, image: np.ndarray, label: int, eps: float, classes: int) -> None:
    lines = [f"; L-inf ball of radius {eps} around a digits test image of class {label}"]
    lines += [f"(declare-const X_{i} Real)" for i in range(len(image))]
    lines += [f"(declare-const Y_{j} Real)" for j in range(classes)]
    for i, pixel in enumerate(image):
        lo, hi = float(max(0.0, pixel - eps)), float(min(1.0, pixel + eps))
        lines += [f"(assert (>= X_{i} {lo!r}))", f"(assert (<= X_{i} {hi!r}))"]
    others = " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(classes) if j != label)
    lines.append(f"; unsafe if another class scores at least as high as {label}")
    lines.append(f"(assert (or {others}))")
    path.write_text("\n".join(lines) + "\n")


def instances(nets: list[str], epsilons: list[float], n_images: int) -> list[dict]:
    small = digits_split()
    out = []
    for name in nets:
        split = upsampled(small) if name.startswith("784-") else small
        _, _, x_test, y_test = split
        net = train(name, NETS[name], split)
        logits = onnx_logits(net, x_test)
        correct = np.flatnonzero(logits.argmax(axis=1) == y_test)[:n_images]
        for eps in epsilons:
            for idx in correct:
                prop = CACHE / f"{name}_img{idx}_eps{eps}.vnnlib"
                if not prop.exists():
                    write_vnnlib(prop, x_test[idx], int(y_test[idx]), eps, logits.shape[1])
                out.append(
                    {
                        "instance": prop.stem,
                        "net": name,
                        "epsilon": eps,
                        "image": int(idx),
                        "label": int(y_test[idx]),
                        "_net": net,
                        "_prop": prop,
                        "_x": x_test[idx],
                    }
                )
    return out


def counterexample(tool: str, net: Path, prop: Path, timeout: float) -> np.ndarray | None:
    """The input point of `tool`'s `violated` verdict, from a second run of the tool."""
    if tool == "proofwell":
        exe = shutil.which("proofwell") or f"{sys.executable} -m service.cli"
        cmd = [*exe.split(), "verify", str(net), str(prop), "--json", "--workers", "1"]
        cmd += ["--timeout", str(timeout)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30).stdout
        try:
            return np.array(json.loads(out)["counterexample"]["inputs"], dtype=np.float64)
        except (json.JSONDecodeError, KeyError, TypeError):
            return None
    cmd = [marabou_binary(), str(net), str(prop), f"--timeout={int(timeout)}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30).stdout
    found = dict(re.findall(r"^\s*x(\d+) = (\S+)$", out, re.MULTILINE))
    if not found:
        return None
    return np.array([float(found.get(str(i), "nan")) for i in range(len(found))])


def referee(row: dict, net: Path, prop: Path, image: np.ndarray, timeout: float) -> str:
    """Decide a disagreement: replay the `violated` tool's counterexample in onnxruntime."""
    tool = "proofwell" if row["proofwell_verdict"] == "violated" else "marabou"
    other = "marabou" if tool == "proofwell" else "proofwell"
    try:
        x = counterexample(tool, net, prop, timeout)
    except subprocess.TimeoutExpired:
        x = None
    if x is None or x.shape != image.shape:
        return f"{tool}'s counterexample could not be recovered"
    eps, label = row["epsilon"], row["label"]
    slack = 1e-5  # Marabou prints 6 decimals
    lo, hi = np.maximum(0.0, image - eps), np.minimum(1.0, image + eps)
    outside = float(max((lo - x).max(), (x - hi).max(), 0.0))
    logits = onnx_logits(net, x[None, :])[0]
    gap = float(np.delete(logits, label).max() - logits[label])
    if outside <= slack and gap >= 0:
        return (
            f"{tool}'s counterexample checks in onnxruntime (class {int(logits.argmax())} "
            f"beats {label} by {gap:.3g}): {other.upper()} IS WRONG"
        )
    return (
        f"{tool}'s counterexample does NOT check (outside the box by {outside:.2g}, "
        f"margin {gap:.3g}): {tool.upper()} IS WRONG"
    )


def summarise(tool: str, rows: list[dict]) -> None:
    verdicts = [r[f"{tool}_verdict"] for r in rows]
    decided = sum(v in DECIDED for v in verdicts)
    times = [r[f"{tool}_seconds"] for r in rows]
    print(
        f"{tool}: {len(rows)} instances, decided {decided}, holds {verdicts.count('holds')}, "
        f"violated {verdicts.count('violated')}, unknown {len(rows) - decided}, "
        f"total {sum(times):.1f} s, median {statistics.median(times):.2f} s, "
        f"peak memory {max(r[f'{tool}_rss_mb'] for r in rows):.0f} MB"
    )


def compare(rows: list[dict]) -> None:
    for key in sorted({(r["net"], r["epsilon"]) for r in rows}):
        group = [r for r in rows if (r["net"], r["epsilon"]) == key]
        cells = []
        for tool in ("proofwell", "marabou"):
            v = [r[f"{tool}_verdict"] for r in group]
            t = sum(r[f"{tool}_seconds"] for r in group)
            cells.append(
                f"{tool} {v.count('holds')}H/{v.count('violated')}V/"
                f"{len(v) - v.count('holds') - v.count('violated')}U {t:.1f} s"
            )
        print(f"  {key[0]} eps {key[1]}: " + ", ".join(cells))
    ours = sum(r["proofwell_seconds"] for r in rows)
    theirs = sum(r["marabou_seconds"] for r in rows)
    print(f"  total: proofwell {ours:.1f} s, Marabou {theirs:.1f} s, ratio {ours / theirs:.2f}")
    only_ours = [
        r for r in rows if r["proofwell_verdict"] in DECIDED and r["marabou_verdict"] not in DECIDED
    ]
    only_theirs = [
        r for r in rows if r["marabou_verdict"] in DECIDED and r["proofwell_verdict"] not in DECIDED
    ]
    print(f"  decided by proofwell only: {len(only_ours)}, by Marabou only: {len(only_theirs)}")
    for r in only_theirs:
        print(f"    Marabou only: {r['instance']} ({r['marabou_verdict']})")
    clashes = [
        r
        for r in rows
        if r["proofwell_verdict"] in DECIDED
        and r["marabou_verdict"] in DECIDED
        and r["proofwell_verdict"] != r["marabou_verdict"]
    ]
    for r in clashes:
        print(
            f"  !!! DISAGREEMENT {r['instance']}: proofwell {r['proofwell_verdict']}, "
            f"Marabou {r['marabou_verdict']}; {r['referee']} !!!"
        )
    print(f"  disagreements on decided instances: {len(clashes)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", help=f"comma-separated networks among {', '.join(NETS)}")
    parser.add_argument("--epsilons", help="comma-separated L-inf radii, e.g. 0.01,0.05")
    parser.add_argument("--images", type=int, default=20, help="first N correct test images")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per instance")
    parser.add_argument("--csv", default="benchmarks/results/digits.csv")
    parser.add_argument("--workers", type=int, default=1, help="search processes per instance")
    parser.add_argument("--vs-marabou", action="store_true")
    args = parser.parse_args()
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("skipped: scikit-learn is not installed (pip install -e '.[bench]')")
        return 0
    nets = args.nets.split(",") if args.nets else list(DEFAULT_NETS)
    unknown = [n for n in nets if n not in NETS]
    if unknown:
        parser.error(f"unknown network(s) {', '.join(unknown)}; choose among {', '.join(NETS)}")
    epsilons = [float(e) for e in args.epsilons.split(",")] if args.epsilons else list(EPSILONS)
    rows = []
    for inst in instances(nets, epsilons, args.images):
        net, prop, image = inst.pop("_net"), inst.pop("_prop"), inst.pop("_x")
        row = {**inst, "timeout": args.timeout}
        row.update(run_proofwell(net, prop, args.timeout, args.workers))
        if args.vs_marabou:
            row.update(run_marabou(net, prop, args.timeout, args.workers))
        rows.append(row)
        clash = (
            args.vs_marabou
            and row["proofwell_verdict"] in DECIDED
            and row["marabou_verdict"] in DECIDED
            and row["proofwell_verdict"] != row["marabou_verdict"]
        )
        if args.vs_marabou:
            row["referee"] = referee(row, net, prop, image, args.timeout) if clash else ""
        print(
            f"{row['instance']}: proofwell {row['proofwell_verdict']} "
            f"{row['proofwell_seconds']:.2f} s"
            + (
                f", Marabou {row['marabou_verdict']} {row['marabou_seconds']:.2f} s"
                if args.vs_marabou
                else ""
            )
            + (f"\n  !!! DISAGREEMENT: {row['referee']} !!!" if clash else ""),
            flush=True,
        )
    if not rows:
        print("no instances selected")
        return 0
    write_csv(args.csv, rows)
    summarise("proofwell", rows)
    if args.vs_marabou:
        summarise("marabou", rows)
        compare(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
