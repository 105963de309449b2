"""Converters of the sliding-window ops (Conv, AveragePool, MaxPool) and their attributes.

Every attribute either shapes the `Window` or is refused with the reason: a variant whose
meaning onnxruntime and the ONNX spec disagree on, or that onnxruntime cannot run, is never
modelled one way and replayed the other.
"""

from __future__ import annotations

import numpy as np

from verifiers.model import ops
from verifiers.model.evaluate import Window, _windows
from verifiers.model.ir import Op, Shape
from verifiers.model.node_context import NodeContext

AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


def _window(ctx: NodeContext, kernel: tuple[int, int]) -> Window:
    if ctx.attr("ceil_mode", 0):
        raise ctx.unsupported("ceil_mode=1 is not supported")
    strides = tuple(int(s) for s in ctx.attr("strides", (1, 1)))
    dilations = tuple(int(d) for d in ctx.attr("dilations", (1, 1)))
    pads = tuple(int(p) for p in ctx.attr("pads", (0, 0, 0, 0)))
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad not in AUTO_PADS:
        raise ctx.unsupported(f"auto_pad '{auto_pad}' is not one of {', '.join(AUTO_PADS)}")
    if auto_pad.startswith("SAME") and dilations != (1, 1):
        # onnxruntime sizes the output without the dilation (the spec with it), or refuses.
        raise ctx.unsupported(f"auto_pad={auto_pad} with dilations {list(dilations)}")
    if auto_pad == "VALID":
        pads = (0, 0, 0, 0)
    elif auto_pad != "NOTSET":
        pads = _same_pads(ctx.shape(0)[-2:], kernel, strides, dilations, auto_pad == "SAME_UPPER")
    size = ctx.shape(0)[-2:]
    for axis in range(2):
        extent = (kernel[axis] - 1) * dilations[axis] + 1
        if extent > size[axis] + pads[axis] + pads[axis + 2]:
            raise ctx.unsupported(f"the kernel spans {extent} > the padded input on axis {axis}")
    return Window(kernel, strides, pads, dilations)  # type: ignore[arg-type]


def _same_pads(
    size: Shape, kernel: tuple[int, int], strides: tuple, dilations: tuple, upper: bool
) -> tuple[int, int, int, int]:
    begins, ends = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations, strict=True):
        total = max(0, (-(-n // s) - 1) * s + (k - 1) * d + 1 - n)
        small, large = total // 2, total - total // 2
        begins.append(small if upper else large)
        ends.append(large if upper else small)
    return (begins[0], begins[1], ends[0], ends[1])


def _pool_window(ctx: NodeContext) -> Window:
    kernel = tuple(int(k) for k in ctx.attr("kernel_shape"))
    if len(kernel) != 2:
        raise ctx.unsupported("only 2-D pooling is supported")
    window = _window(ctx, kernel)  # type: ignore[arg-type]
    if any(p >= k for p, k in zip(window.pads, kernel * 2, strict=True)):
        # onnxruntime refuses it; a window could then lie wholly in the padding.
        raise ctx.unsupported(f"pads {list(window.pads)} not smaller than the kernel {kernel}")
    counts = _windows(np.ones((1, 1, *ctx.shape(0)[-2:])), window, 0.0).sum(axis=(-2, -1))
    if counts.size and counts.min() == 0:
        raise ctx.unsupported("a pooling window lies wholly in the padding")
    return window


def conv(ctx: NodeContext) -> Op:
    weight = ctx.required_const(1, "the weight")
    if weight.ndim != 4:
        raise ctx.unsupported("only 2-D convolutions are supported")
    kernel = (weight.shape[2], weight.shape[3])
    if ctx.has_attr("kernel_shape") and tuple(ctx.attr("kernel_shape")) != kernel:
        raise ctx.unsupported(
            f"kernel_shape {list(ctx.attr('kernel_shape'))} differs from the weight's {kernel}"
        )
    if ctx.attr("auto_pad", "NOTSET") != "NOTSET" and ctx.has_attr("pads"):
        raise ctx.unsupported("pads given together with auto_pad (onnxruntime refuses it)")
    group = int(ctx.attr("group", 1))
    channels = ctx.shape(0)[-3]
    if group < 1 or weight.shape[0] % group or weight.shape[1] * group != channels:
        raise ctx.unsupported(
            f"group={group} does not fit the weight {weight.shape} and {channels} input channels"
        )
    bias = ctx.required_const(2, "the bias") if ctx.has_input(2) else None
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ctx.unsupported(f"the bias has shape {bias.shape}, not ({weight.shape[0]},)")
    return ops.Conv(weight=weight, bias=bias, window=_window(ctx, kernel), group=group)


def average_pool(ctx: NodeContext) -> Op:
    window = _pool_window(ctx)
    return ops.AveragePool(window=window, count_include_pad=bool(ctx.attr("count_include_pad", 0)))


def max_pool(ctx: NodeContext) -> Op:
    # storage_order only orders the Indices output, which the loader never models.
    return ops.MaxPool(window=_pool_window(ctx))
