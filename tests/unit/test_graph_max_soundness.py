"""The graph engine's max-case splits against an exact oracle.

Networks y = w3 . max(W1 x + b1, W2 x + b2) + b3 with 20 inputs: too many for input
splitting, so branch and bound splits the cases of the max (which candidate is the
largest). For a fixed choice of candidates the network is affine, so the exact maximum of
y over the box is the largest of one LP per choice (scipy's HiGHS), independent of the
engine. A `holds` for a threshold below that maximum would be a wrong proof: the search
once closed a max case as empty by dropping the other outputs' candidates.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from onnx import helper
from scipy.optimize import linprog

from tests.onnx_builders import make_model, to_bytes
from verifiers.components import OnnxComponent
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.spec import parse_vnnlib
from verifiers.verify import verify

N_IN, N_MAX = 20, 3


def float32_normal(rng: np.random.Generator):
    """Draws of normal numbers scaled by ``scale``, as float32 weights (held in float64)."""

    def draw(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (rng.normal(size=shape) * scale).astype(np.float32).astype(np.float64)

    return draw


def network(seed: int):
    f32 = float32_normal(np.random.default_rng(seed))
    return (
        f32(N_MAX, N_IN),
        f32(N_MAX, scale=0.3),
        f32(N_MAX, N_IN),
        f32(N_MAX, scale=0.3),
        f32(N_MAX),
        f32(1),
    )


def onnx_bytes(w1, b1, w2, b2, w3, b3) -> bytes:
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["a"], transB=1),
        helper.make_node("Gemm", ["x", "w2", "b2"], ["b"], transB=1),
        helper.make_node("Max", ["a", "b"], ["m"]),
        helper.make_node("Gemm", ["m", "w3", "b3"], ["y"], transB=1),
    ]
    inits = {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "w3": w3[None, :], "b3": b3}
    return to_bytes(make_model(nodes, input_shape=[1, N_IN], initializers=inits))


def exact_maximum(w1, b1, w2, b2, w3, b3, lower, upper) -> float:
    """max of y over the box: one LP per choice of the larger candidate in each max."""
    best = -np.inf
    for choice in itertools.product((0, 1), repeat=N_MAX):
        pick = np.array(choice)[:, None]
        win_w, win_b = np.where(pick, w2, w1), np.where(pick[:, 0], b2, b1)
        lose_w, lose_b = np.where(pick, w1, w2), np.where(pick[:, 0], b1, b2)
        # The chosen candidate is the max: lose . x + lose_b <= win . x + win_b.
        res = linprog(
            -(w3 @ win_w),
            A_ub=lose_w - win_w,
            b_ub=win_b - lose_b,
            bounds=list(zip(lower, upper, strict=True)),
            method="highs",
        )
        if res.status == 0:
            best = max(best, -res.fun + float(w3 @ win_b + b3[0]))
    return best


def prop_text(lower, upper, threshold: float) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(N_IN)] + ["(declare-const Y_0 Real)"]
    for i in range(N_IN):
        lines += [
            f"(assert (>= X_{i} {float(lower[i])!r}))",
            f"(assert (<= X_{i} {float(upper[i])!r}))",
        ]
    return "\n".join([*lines, f"(assert (>= Y_0 {float(threshold)!r}))"]) + "\n"


def assert_no_wrong_verdict(component, lower, upper, top: float, seed: int) -> None:
    """Just below the exact maximum `top` the property is violated (never `holds`); just
    above it, it holds (never `violated`)."""
    for threshold, may_hold in (
        (top - 1e-3 * (1 + abs(top)), False),
        (top + 1e-3 * (1 + abs(top)), True),
    ):
        prop = parse_vnnlib(prop_text(lower, upper, threshold))
        result = verify(component, prop, Options(timeout_s=1.0, seed=seed))
        assert result.verdict is not Verdict.ERROR, result.reason
        assert may_hold or result.verdict is not Verdict.HOLDS, (seed, threshold, top)
        if result.verdict is Verdict.VIOLATED:
            assert not may_hold, (seed, threshold, top)


@pytest.mark.parametrize("seed", range(8))
def test_max_case_splits_never_prove_a_reachable_output(seed: int) -> None:
    params = network(seed)
    lower, upper = np.full(N_IN, -0.05), np.full(N_IN, 0.05)
    top = exact_maximum(*params, lower, upper)
    component = OnnxComponent(onnx_bytes(*params))
    assert_no_wrong_verdict(component, lower, upper, top, seed)


N_HIDDEN = 4


def residual(seed: int):
    f32 = float32_normal(np.random.default_rng(1000 + seed))
    return (
        f32(N_HIDDEN, N_IN),
        f32(N_HIDDEN, scale=0.1),
        f32(N_HIDDEN),
        f32(N_IN, scale=0.3),
        f32(1),
    )


def residual_bytes(w1, b1, w2, u, b2) -> bytes:
    """y = w2 . relu(W1 x + b1) + u . x + b2: a ReLU branch joined to a skip connection."""
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["a"], transB=1),
        helper.make_node("Relu", ["a"], ["h"]),
        helper.make_node("Gemm", ["h", "w2", "b2"], ["branch"], transB=1),
        helper.make_node("Gemm", ["x", "u", "zero"], ["skip"], transB=1),
        helper.make_node("Add", ["branch", "skip"], ["y"]),
    ]
    inits = {"w1": w1, "b1": b1, "w2": w2[None, :], "b2": b2, "u": u[None, :], "zero": [0.0]}
    return to_bytes(make_model(nodes, input_shape=[1, N_IN], initializers=inits))


def residual_maximum(w1, b1, w2, u, b2, lower, upper) -> float:
    """max of y over the box: one LP per ReLU activation pattern."""
    best = -np.inf
    for pattern in itertools.product((0, 1), repeat=N_HIDDEN):
        on = np.array(pattern, dtype=float)
        sign = np.where(on, -1.0, 1.0)  # active: pre >= 0; inactive: pre <= 0
        res = linprog(
            -((w2 * on) @ w1 + u),
            A_ub=sign[:, None] * w1,
            b_ub=-sign * b1,
            bounds=list(zip(lower, upper, strict=True)),
            method="highs",
        )
        if res.status == 0:
            best = max(best, -res.fun + float((w2 * on) @ b1 + b2[0]))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_element_splits_on_a_residual_join_never_prove_a_reachable_output(seed: int) -> None:
    params = residual(seed)
    lower, upper = np.full(N_IN, -0.1), np.full(N_IN, 0.1)
    top = residual_maximum(*params, lower, upper)
    component = OnnxComponent(residual_bytes(*params))
    assert_no_wrong_verdict(component, lower, upper, top, seed)
