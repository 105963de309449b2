"""Digits benchmark, general networks: Sigmoid and Tanh MLPs, a CNN with MaxPool and a small
residual CNN (two residual blocks), L-inf robustness on 8x8 digits, optionally vs Marabou.

    python benchmarks/digits_graph.py [--nets sigmoid,tanh,cnn-maxpool,resnet2]
        [--epsilons 0.01,0.03] [--images 10] [--timeout 30] [--vs-marabou] [--csv out.csv]

Built offline from scikit-learn's bundled digits (as benchmarks/digits.py, whose split,
properties and runners it reuses). The MLPs (64-32-32-10) are trained end to end by
sklearn's MLPClassifier (activation logistic / tanh) and exported as Gemm + Sigmoid/Tanh.
The CNNs use fixed random convolutions (He-scaled, seeded; the residual blocks' second
convolution scaled by 0.5) and a softmax readout trained here on their features (sklearn
LogisticRegression): trained networks, though not trained end to end. Every export is
checked against the numpy reference in onnxruntime. Input [1, 64], reshaped to [1, 1, 8, 8]
inside the CNNs. Networks and properties are cached in benchmarks/results/digits_graph/.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import digits  # noqa: E402
from peers import run_marabou, run_proofwell, write_csv  # noqa: E402

CACHE = Path(__file__).resolve().parent / "results" / "digits_graph"
NETS = ("sigmoid", "tanh", "cnn-maxpool", "resnet2")
EPSILONS = (0.01, 0.03)
CHANNELS = 4


def _graph(nodes, inits, path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(np.asarray(v, dtype=v.dtype), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _mlp(activation: str, split, path: Path) -> None:
    from onnx import helper
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x_train, y_train, x_test, y_test = split
    sk = {"Sigmoid": "logistic", "Tanh": "tanh"}[activation]
    clf = MLPClassifier((32, 32), activation=sk, max_iter=400, random_state=0, tol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, y_train)
    nodes, inits, current = [], {}, "input"
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_, strict=True)):
        inits[f"W{i}"], inits[f"B{i}"] = w.T.astype(np.float32), b.astype(np.float32)
        last = i == len(clf.coefs_) - 1
        out = "output" if last else f"gemm{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"B{i}"], [out], transB=1))
        if not last:
            nodes.append(helper.make_node(activation, [out], [f"act{i}"]))
            out = f"act{i}"
        current = out
    _graph(nodes, inits, path)
    print(f"trained {path.stem}: test accuracy {clf.score(x_test, y_test):.3f}")


def _conv(rng, c_in: int, scale: float = 1.0) -> np.ndarray:
    w = rng.normal(size=(CHANNELS, c_in, 3, 3)) * np.sqrt(2.0 / (9 * c_in)) * scale
    return w.astype(np.float32)


def _cnn(residual: bool, split, path: Path) -> None:
    import onnxruntime as ort
    from onnx import helper
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    conv = lambda x, w, y: helper.make_node("Conv", [x, w], [y], pads=[1, 1, 1, 1])  # noqa: E731
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["image"])]
    inits = {"shape": np.array([1, 1, 8, 8], dtype=np.int64), "K0": _conv(rng, 1)}
    nodes += [conv("image", "K0", "c0"), helper.make_node("Relu", ["c0"], ["r0"])]
    current = "r0"
    for block in range(2 if residual else 0):
        a, b = f"Ka{block}", f"Kb{block}"
        inits[a], inits[b] = _conv(rng, CHANNELS), _conv(rng, CHANNELS, 0.5)
        nodes += [
            conv(current, a, f"ca{block}"),
            helper.make_node("Relu", [f"ca{block}"], [f"ra{block}"]),
            conv(f"ra{block}", b, f"cb{block}"),
            helper.make_node("Add", [f"cb{block}", current], [f"sum{block}"]),
            helper.make_node("Relu", [f"sum{block}"], [f"out{block}"]),
        ]
        current = f"out{block}"
    nodes += [
        helper.make_node("MaxPool", [current], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["features"]),
    ]
    x_train, y_train, x_test, y_test = split
    feature_path = path.with_suffix(".features.onnx")
    inits_f = dict(inits)
    _graph_features(nodes, inits_f, feature_path)
    sess = ort.InferenceSession(str(feature_path), providers=["CPUExecutionProvider"])
    feats = lambda x: np.concatenate(  # noqa: E731
        [sess.run(None, {"input": r[None].astype(np.float32)})[0] for r in x]
    )
    f_train, f_test = feats(x_train), feats(x_test)
    feature_path.unlink()
    clf = LogisticRegression(C=10.0, max_iter=2000).fit(f_train, y_train)
    inits["W"], inits["B"] = clf.coef_.astype(np.float32), clf.intercept_.astype(np.float32)
    nodes.append(helper.make_node("Gemm", ["features", "W", "B"], ["output"], transB=1))
    _graph(nodes, inits, path)
    print(f"trained {path.stem}: test accuracy {clf.score(f_test, y_test):.3f}")


def _graph_features(nodes, inits, path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "features",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def network(name: str, split) -> Path:
    path = CACHE / f"{name}.onnx"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        if name in ("sigmoid", "tanh"):
            _mlp(name.capitalize(), split, path)
        else:
            _cnn(name == "resnet2", split, path)
    return path


def instances(nets: list[str], epsilons: list[float], n_images: int) -> list[dict]:
    split = digits.digits_split()
    _, _, x_test, y_test = split
    out = []
    for name in nets:
        net = network(name, split)
        logits = digits.onnx_logits(net, x_test)
        correct = np.flatnonzero(logits.argmax(axis=1) == y_test)[:n_images]
        for eps in epsilons:
            for idx in correct:
                prop = CACHE / f"{name}_img{idx}_eps{eps}.vnnlib"
                if not prop.exists():
                    digits.write_vnnlib(prop, x_test[idx], int(y_test[idx]), eps, 10)
                out.append(
                    {"instance": prop.stem, "net": name, "epsilon": eps, "image": int(idx),
                     "label": int(y_test[idx]), "_net": net, "_prop": prop}
                )  # fmt: skip
    return out


def summarise(rows: list[dict], tools: list[str]) -> None:
    for name in sorted({r["net"] for r in rows}):
        group = [r for r in rows if r["net"] == name]
        for tool in tools:
            v = [r[f"{tool}_verdict"] for r in group]
            t = [r[f"{tool}_seconds"] for r in group]
            decided = v.count("holds") + v.count("violated")
            print(
                f"{name:12s} {tool:9s} n={len(v)} decided {decided} holds {v.count('holds')} "
                f"violated {v.count('violated')} unknown {len(v) - decided - v.count('error')} "
                f"error {v.count('error')} total {sum(t):.1f} s median {statistics.median(t):.2f} s "
                f"peak {max(r[f'{tool}_rss_mb'] for r in group):.0f} MB"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--epsilons", default=",".join(map(str, EPSILONS)))
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--csv", default="benchmarks/results/digits_graph.csv")
    parser.add_argument("--vs-marabou", action="store_true")
    args = parser.parse_args()
    nets = args.nets.split(",")
    epsilons = [float(e) for e in args.epsilons.split(",")]
    rows = []
    for inst in instances(nets, epsilons, args.images):
        net, prop = inst.pop("_net"), inst.pop("_prop")
        row = {**inst, **run_proofwell(net, prop, args.timeout, 1)}
        if args.vs_marabou:
            row.update(run_marabou(net, prop, args.timeout, 1))
        rows.append(row)
        extra = f", marabou {row['marabou_verdict']}" if args.vs_marabou else ""
        print(f"{row['instance']}: {row['proofwell_verdict']} {row['proofwell_seconds']:.2f} s{extra}",
              flush=True)  # fmt: skip
        clash = args.vs_marabou and {row["proofwell_verdict"], row["marabou_verdict"]} == {
            "holds",
            "violated",
        }
        if clash:
            print(f"  !!! DISAGREEMENT on {row['instance']} !!!")
    write_csv(args.csv, rows)
    summarise(rows, ["proofwell", "marabou"] if args.vs_marabou else ["proofwell"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
