"""An independent oracle for tiny ReLU networks: enumerate activation patterns, one LP each.

For a fixed pattern the network is affine, so the exact maximum of c.y over the box is the
maximum over feasible patterns of an LP (scipy's HiGHS). Nothing here shares code with the
engine's bounds, search or z3 encoding.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import linprog


def exact_maximum(weights, biases, c, lower, upper) -> tuple[float, np.ndarray]:
    """max of c . f(x) over the box, and an argmax, for f = dense ReLU net (last layer linear)."""
    hidden = [len(b) for b in biases[:-1]]
    best, best_x = -np.inf, None
    for pattern in itertools.product((0, 1), repeat=sum(hidden)):
        a_ub, b_ub = [], []
        lin_w, lin_b = np.eye(len(lower)), np.zeros(len(lower))
        offset = 0
        for w, b, size in zip(weights[:-1], biases[:-1], hidden, strict=True):
            pre_w, pre_b = w @ lin_w, w @ lin_b + b
            mask = np.array(pattern[offset : offset + size], dtype=float)
            offset += size
            for j in range(size):
                # active: pre >= 0  ->  -pre_w x <= pre_b ; inactive: pre <= 0
                sign = -1.0 if mask[j] else 1.0
                a_ub.append(sign * pre_w[j])
                b_ub.append(-sign * pre_b[j])
            lin_w, lin_b = pre_w * mask[:, None], pre_b * mask
        out_w = c @ (weights[-1] @ lin_w)
        out_b = c @ (weights[-1] @ lin_b + biases[-1])
        res = linprog(
            -out_w,
            A_ub=np.array(a_ub),
            b_ub=np.array(b_ub),
            bounds=list(zip(lower, upper, strict=True)),
            method="highs",
        )
        if res.status == 0 and -res.fun + out_b > best:
            best, best_x = -res.fun + out_b, res.x
    return float(best), best_x


def random_network(rng: np.random.Generator, sizes: list[int]):
    """float32-valued weights and biases of a dense ReLU network."""
    weights = [
        rng.normal(size=(b, a)).astype(np.float32).astype(np.float64)
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    biases = [
        rng.normal(scale=0.5, size=b).astype(np.float32).astype(np.float64) for b in sizes[1:]
    ]
    return weights, biases


# Small dense ReLU networks of a few layers, cycled by seed (the bound tests' instances).
SHAPES = [[3, 5, 5, 2], [2, 3, 3, 4, 3], [4, 6, 4, 1], [3, 4, 3, 3, 2]]


def random_instance(seed: int):
    """A network of SHAPES (by seed) and an input box: (weights, biases, lower, upper, rng),
    the rng left to draw anything else the test needs."""
    rng = np.random.default_rng(seed)
    sizes = SHAPES[seed % len(SHAPES)]
    weights, biases = random_network(rng, sizes)
    lower = rng.uniform(-1.0, 0.0, size=sizes[0])
    upper = lower + rng.uniform(0.2, 1.5, size=sizes[0])
    return weights, biases, lower, upper, rng
