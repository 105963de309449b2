"""IR evaluation in numpy float64, and the 2-D window kernels (Conv, AveragePool, MaxPool)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from verifiers.model.ir import Graph, Node


@dataclass(frozen=True)
class Window:
    """A 2-D sliding window over the last two axes, in ONNX terms."""

    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    dilations: tuple[int, int] = (1, 1)


def _windows(x: np.ndarray, window: Window, pad_value: float) -> np.ndarray:
    """(n, C, H, W) -> (n, C, Ho, Wo, kh, kw): every window, dilation and stride applied."""
    top, left, bottom, right = window.pads
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=pad_value)
    (kh, kw), (dh, dw), (sh, sw) = window.kernel, window.dilations, window.strides
    extent = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    views = sliding_window_view(padded, extent, axis=(2, 3))
    return views[:, :, ::sh, ::sw, ::dh, ::dw]


def _on_images(x: np.ndarray, kernel: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply an (n, C, H, W) kernel to (batch, *lead, C, H, W) by folding leading axes."""
    lead = x.shape[:-3]
    y = kernel(x.reshape(-1, *x.shape[-3:]))
    return y.reshape(*lead, *y.shape[1:])


def conv2d(x: np.ndarray, weight: np.ndarray, window: Window, group: int) -> np.ndarray:
    m, cg, kh, kw = weight.shape
    w = weight.reshape(group, m // group, cg, kh, kw)

    def kernel(images: np.ndarray) -> np.ndarray:
        views = _windows(images, window, 0.0)
        n, c, ho, wo = views.shape[:4]
        views = views.reshape(n, group, c // group, ho, wo, kh, kw)
        y = np.einsum("bgcxyij,gmcij->bgmxy", views, w, optimize=True)
        return y.reshape(n, m, ho, wo)

    return _on_images(x, kernel)


def average_pool(x: np.ndarray, window: Window, count_include_pad: bool) -> np.ndarray:
    def kernel(images: np.ndarray) -> np.ndarray:
        sums = _windows(images, window, 0.0).sum(axis=(-2, -1))
        if count_include_pad:
            return sums / float(np.prod(window.kernel))
        ones = np.ones((1, 1, *images.shape[2:]))
        return sums / _windows(ones, window, 0.0).sum(axis=(-2, -1))

    return _on_images(x, kernel)


def max_pool(x: np.ndarray, window: Window) -> np.ndarray:
    return _on_images(x, lambda images: _windows(images, window, -np.inf).max(axis=(-2, -1)))


def run_nodes(
    nodes: Iterable[Node],
    values: dict[str, np.ndarray],
    transform: Callable[[Any], Any] | None = None,
) -> dict[str, np.ndarray]:
    """Evaluate ``nodes`` in order, adding their outputs to ``values`` (which it returns).

    ``transform`` maps each op before evaluation (e.g. to its bias-free part)."""
    for node in nodes:
        op = node.op if transform is None else transform(node.op)
        values[node.output] = op.evaluate(*(values[name] for name in node.inputs))
    return values


def evaluate_graph(graph: Graph, x: np.ndarray) -> np.ndarray:
    """x: (batch, n_inputs) -> (batch, n_outputs), all in float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != graph.n_inputs:
        raise ValueError(f"expected an array of shape (batch, {graph.n_inputs}), got {x.shape}")
    start = {graph.input_name: x.reshape(x.shape[0], *graph.input_shape)}
    values = run_nodes(graph.nodes, start)
    return values[graph.output_name].reshape(x.shape[0], graph.n_outputs)
