"""Components of a system: ONNX networks and module functions, seen as maps on flat vectors.

Each component has three readings: z3 terms (networks through `smt.encode_network`, modules
through `to_z3`), exact evaluation in Fractions (used to replay counterexamples) and, for
networks, the float32 replay in onnxruntime that a deployment would compute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import z3

from verifiers.errors import SpecError
from verifiers.model.network import AffineLayer, PiecewiseLinearNetwork
from verifiers.smt.encode_network import encode_network
from verifiers.symbolic import evaluate, ir, to_z3
from verifiers.symbolic.ir import Scalar, TupleType
from verifiers.symbolic.parser import parse_module


@dataclass(frozen=True, eq=False)
class NetworkComponent:
    name: str
    model: Any  # verifiers.model.Model

    @property
    def n_inputs(self) -> int:
        return int(self.model.n_inputs)

    @property
    def n_outputs(self) -> int:
        return int(self.model.n_outputs)

    @property
    def network(self) -> PiecewiseLinearNetwork:
        return self.model.network

    @property
    def exact(self) -> bool:
        return all(layer.exact for layer in self.network.affine_layers)

    def terms(
        self, args: Sequence[Any], solver: z3.Solver, prefix: str, box: Any = None
    ) -> list[Any]:
        """`box`, a (lower, upper) pair of float arrays soundly containing the inputs, lets
        stable ReLUs be encoded linearly (sound bounds with outward rounding)."""
        inputs = [_real(a) for a in args]
        bounds = None
        if box is not None:
            from verifiers.bounds.linear import linear_bounds

            lower, upper = (np.asarray(b, dtype=np.float64)[None, :] for b in box)
            layers = linear_bounds(self.network, lower, upper).layers
            bounds = [(lo[0], hi[0]) for lo, hi in layers]
        input_box = None if box is None else tuple(np.asarray(b, dtype=np.float64) for b in box)
        return encode_network(self.network, inputs, solver, prefix, bounds, input_box)

    def output_box(self, args: Sequence[Any], box: Any) -> list[tuple[Fraction, Fraction]]:
        """Sound bounds of the outputs over the float input box (lower, upper)."""
        del args
        from verifiers.bounds.linear import linear_bounds

        lower, upper = (np.asarray(b, dtype=np.float64)[None, :] for b in box)
        lo, hi = linear_bounds(self.network, lower, upper).layers[-1]
        return [(Fraction(float(a)), Fraction(float(b))) for a, b in zip(lo[0], hi[0], strict=True)]

    @cached_property
    def _exact_layers(self) -> list[Any]:
        layers: list[Any] = []
        for layer in self.network.layers:
            if isinstance(layer, AffineLayer):
                weight = [[Fraction(float(w)) for w in row] for row in layer.weight]
                layers.append((weight, [Fraction(float(b)) for b in layer.bias]))
            else:
                layers.append(Fraction(float(layer.alpha)))
        return layers

    def evaluate(self, args: Sequence[Fraction]) -> list[Fraction]:
        """The network's piecewise-linear form evaluated in exact rationals."""
        values = [Fraction(a) for a in args]
        for layer in self._exact_layers:
            if isinstance(layer, tuple):
                weight, bias = layer
                values = [
                    sum((w * v for w, v in zip(row, values, strict=True) if w), b)
                    for row, b in zip(weight, bias, strict=True)
                ]
            else:
                values = [v if v >= 0 else layer * v for v in values]
        return values

    def run_onnxruntime(self, args: Sequence[Fraction]) -> list[float]:
        x = np.array([[float(a) for a in args]], dtype=np.float64)
        return [float(v) for v in self.model.run_onnxruntime(x)[0]]


@dataclass(frozen=True, eq=False)
class ModuleComponent:
    name: str
    module: ir.Module
    function: ir.Function

    @property
    def n_inputs(self) -> int:
        return len(self.function.params)

    @property
    def n_outputs(self) -> int:
        return len(ir.flatten_type(self.function.return_type))

    def terms(
        self, args: Sequence[Any], solver: z3.Solver, prefix: str, box: Any = None
    ) -> list[Any]:
        del solver, prefix, box
        result = to_z3.call(self.module, self.function.name, list(args))
        return [_real(t) for t in (result if isinstance(result, tuple) else (result,))]

    def output_box(self, args: Sequence[Any], box: Any) -> list[tuple[Fraction, Fraction]] | None:
        del box
        from verifiers.symbolic import intervals

        result = intervals.call(self.module, self.function.name, list(args))
        if result is None:
            return None
        return list(result) if isinstance(result[0], tuple) else [result]

    def evaluate(self, args: Sequence[Fraction]) -> list[Fraction]:
        result = evaluate.call(self.module, self.function.name, list(args))
        return [Fraction(v) for v in (result if isinstance(result, tuple) else (result,))]


Component = NetworkComponent | ModuleComponent


def _real(term: Any) -> Any:
    return z3.ToReal(term) if z3.is_int(term) else term


def load_component(name: str, raw: object, base_dir: Path, field: str) -> Component:
    """`{"onnx": path, "inputs"?: [...], "outputs"?: [...]}` or `{"module": path, "function": f}`
    (a bare string path is read by its extension)."""
    if isinstance(raw, str):
        raw = {"onnx": raw} if raw.endswith(".onnx") else {"module": raw}
    if not isinstance(raw, Mapping):
        raise SpecError('a component is {"onnx": path} or {"module": path, ...}', field=field)
    if "onnx" in raw:
        from verifiers.model import load_model

        path = _path(raw["onnx"], base_dir, f"{field}.onnx")
        model = load_model(path, inputs=raw.get("inputs"), outputs=raw.get("outputs"))
        return NetworkComponent(name, model)
    if "module" in raw:
        path = _path(raw["module"], base_dir, f"{field}.module")
        module = parse_module(path.read_text(encoding="utf-8"), filename=str(path))
        function = raw.get("function")
        if function is None and len(module.functions) == 1:
            function = next(iter(module.functions))
        fn = module.function(function) if isinstance(function, str) else None
        if fn is None:
            raise SpecError(f"no function {function!r} in {path.name}", field=f"{field}.function")
        for p in fn.params:
            if p.type != Scalar.REAL:
                raise SpecError(
                    f"parameter '{p.name}' is {p.type}; system signals are Real",
                    field=f"{field}.function",
                )
        if isinstance(fn.return_type, TupleType) and Scalar.BOOL in fn.return_type.elems:
            raise SpecError("a component must return numbers", field=f"{field}.function")
        if fn.return_type == Scalar.BOOL:
            raise SpecError("a component must return numbers", field=f"{field}.function")
        return ModuleComponent(name, module, fn)
    raise SpecError("a component needs an 'onnx' or a 'module' path", field=field)


def _path(raw: object, base_dir: Path, field: str) -> Path:
    if not isinstance(raw, str):
        raise SpecError("expected a file path", field=field)
    path = (base_dir / raw).resolve()
    if not path.is_file():
        raise SpecError(f"no such file: {raw}", field=field)
    return path
