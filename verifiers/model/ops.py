"""One small frozen dataclass per supported ONNX op type, named after it.

Ops hold their constant operands as float64 arrays (exact copies of the float32 weights) and
evaluate batched arrays of shape ``(batch, *onnx_shape)`` (see ``ir.py``). Linear ops also
give their bias-free part, their magnitude |L| and their rounding depth, which is all the
normal form needs to collapse them with a rigorous rounding bound (``normalize.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from verifiers.model.evaluate import Window, average_pool, conv2d, max_pool
from verifiers.model.ir import OpKind, Shape


def lift(x: np.ndarray, rank: int) -> np.ndarray:
    """Insert unit axes after the batch axis so ``x`` has ONNX rank ``rank``: numpy then
    broadcasts it against constants exactly as ONNX does (right-aligned)."""
    missing = rank - (x.ndim - 1)
    return x.reshape(x.shape[:1] + (1,) * missing + x.shape[1:]) if missing > 0 else x


class _Linear:
    """Defaults for linear ops without additive constants or rounding (data movement)."""

    kind: ClassVar[OpKind] = OpKind.LINEAR

    def without_bias(self) -> _Linear:
        return self

    def magnitude(self) -> _Linear:
        return self

    def rounding_depth(self) -> int:
        return 0


# --- data movement ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reshaping(_Linear):
    shape: Shape  # the ONNX output shape, computed by the converter from attributes/inputs

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return x.reshape((x.shape[0], *self.shape))


class Flatten(_Reshaping):
    pass


class Reshape(_Reshaping):
    pass


class Squeeze(_Reshaping):
    pass


class Unsqueeze(_Reshaping):
    pass


@dataclass(frozen=True)
class Identity(_Linear):
    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return x


@dataclass(frozen=True)
class Transpose(_Linear):
    perm: tuple[int, ...]  # ONNX axes

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return x.transpose((0, *(p + 1 for p in self.perm)))


@dataclass(frozen=True, eq=False)
class Concat(_Linear):
    axis: int  # non-negative ONNX axis
    parts: tuple[np.ndarray | None, ...]  # a constant, or None for the next variable input

    def evaluate(self, *xs: np.ndarray) -> np.ndarray:
        batch = xs[0].shape[0]
        variables = iter(xs)
        arrays = [
            next(variables) if part is None else np.broadcast_to(part, (batch, *part.shape))
            for part in self.parts
        ]
        return np.concatenate(arrays, axis=self.axis + 1)

    def without_bias(self) -> Concat:
        return replace(self, parts=tuple(_zero_or_none(p) for p in self.parts))

    def magnitude(self) -> Concat:
        return replace(self, parts=tuple(_abs_or_none(p) for p in self.parts))


def _zero_or_none(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else np.zeros_like(a)


def _abs_or_none(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else np.abs(a)


# --- elementwise arithmetic -----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Add(_Linear):
    """x + c, or x + y for two variable inputs."""

    rank: int  # ONNX rank of the output, for broadcasting
    const: np.ndarray | None = None

    def evaluate(self, *xs: np.ndarray) -> np.ndarray:
        if self.const is None:
            return lift(xs[0], self.rank) + lift(xs[1], self.rank)
        return lift(xs[0], self.rank) + self.const

    def without_bias(self) -> Add:
        return replace(self, const=_zero_or_none(self.const))

    def magnitude(self) -> Add:
        return replace(self, const=_abs_or_none(self.const))

    def rounding_depth(self) -> int:
        return 1


@dataclass(frozen=True, eq=False)
class Sub(_Linear):
    """x - c, c - x (``const_first``), or x - y for two variable inputs."""

    rank: int
    const: np.ndarray | None = None
    const_first: bool = False

    def evaluate(self, *xs: np.ndarray) -> np.ndarray:
        x = lift(xs[0], self.rank)
        if self.const is None:
            return x - lift(xs[1], self.rank)
        return self.const - x if self.const_first else x - self.const

    def without_bias(self) -> Sub:
        return replace(self, const=_zero_or_none(self.const))

    def magnitude(self) -> Add:
        # |c - x| <= |c| + |x| and |x - y| <= |x| + |y|: the magnitude of a difference adds.
        return Add(rank=self.rank, const=_abs_or_none(self.const))

    def rounding_depth(self) -> int:
        return 1


@dataclass(frozen=True, eq=False)
class Mul(_Linear):
    rank: int
    const: np.ndarray

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return lift(x, self.rank) * self.const

    def magnitude(self) -> Mul:
        return replace(self, const=np.abs(self.const))

    def rounding_depth(self) -> int:
        return 1


@dataclass(frozen=True, eq=False)
class Div(_Linear):
    """x / c. The exact map divides by the float32 c; float64 division rounds once."""

    rank: int
    const: np.ndarray

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return lift(x, self.rank) / self.const

    def magnitude(self) -> Div:
        return replace(self, const=np.abs(self.const))

    def rounding_depth(self) -> int:
        return 1


# --- dense and convolutional layers -----------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MatMul(_Linear):
    """x @ W, or W @ x when ``const_left``; ranks follow numpy/ONNX matmul rules."""

    const: np.ndarray
    const_left: bool
    var_rank: int  # ONNX rank of the variable operand

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        w = self.const
        if self.var_rank == 1 and w.ndim == 1:
            return x @ w  # a dot product: (batch, K) -> (batch,)
        if self.var_rank == 1:
            # ONNX makes the 1-D operand a matrix (K, 1) on the right, (1, K) on the left,
            # and drops that axis again; the batch axis must not be taken for a matrix axis.
            units = (1,) * (w.ndim - 2)
            if self.const_left:
                return (w @ x.reshape(len(x), *units, -1, 1))[..., 0]
            return (x.reshape(len(x), *units, 1, -1) @ w)[..., 0, :]
        x = lift(x, max(self.var_rank, w.ndim))
        return w @ x if self.const_left else x @ w

    def magnitude(self) -> MatMul:
        return replace(self, const=np.abs(self.const))

    def rounding_depth(self) -> int:
        # A dot product of length n is within gamma_n of the exact sum of products.
        w = self.const
        inner = w.shape[-1] if self.const_left or w.ndim == 1 else w.shape[-2]
        return int(inner)


@dataclass(frozen=True, eq=False)
class Gemm(_Linear):
    """alpha * A' @ B' + beta * C with A the variable operand, B and C constants."""

    b: np.ndarray
    c: np.ndarray | None
    alpha: float
    beta: float
    trans_a: bool
    trans_b: bool

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        a = x.swapaxes(-1, -2) if self.trans_a else x
        y = self.alpha * (a @ (self.b.T if self.trans_b else self.b))
        return y if self.c is None else y + self.beta * self.c

    def without_bias(self) -> Gemm:
        return replace(self, c=None)

    def magnitude(self) -> Gemm:
        return replace(
            self,
            b=np.abs(self.b),
            c=_abs_or_none(self.c),
            alpha=abs(self.alpha),
            beta=abs(self.beta),
        )

    def rounding_depth(self) -> int:
        # dot product (K) + alpha product + beta product + final addition
        return int(self.b.shape[1 if self.trans_b else 0]) + 3


@dataclass(frozen=True, eq=False)
class Conv(_Linear):
    weight: np.ndarray  # (M, C / group, kh, kw)
    bias: np.ndarray | None
    window: Window
    group: int

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        y = conv2d(x, self.weight, self.window, self.group)
        return y if self.bias is None else y + self.bias[:, None, None]

    def without_bias(self) -> Conv:
        return replace(self, bias=None)

    def magnitude(self) -> Conv:
        return replace(self, weight=np.abs(self.weight), bias=_abs_or_none(self.bias))

    def rounding_depth(self) -> int:
        return int(np.prod(self.weight.shape[1:])) + 1


@dataclass(frozen=True, eq=False)
class BatchNormalization(_Linear):
    """Inference mode: (x - mean) / sqrt(var + eps) * scale + bias, on ONNX axis 1."""

    scale: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    epsilon: float

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        tail = (1,) * (x.ndim - 3)  # axes after the channel axis
        std = np.sqrt(self.var + self.epsilon).reshape(-1, *tail)
        centred = x - self.mean.reshape(-1, *tail)
        return centred / std * self.scale.reshape(-1, *tail) + self.bias.reshape(-1, *tail)

    def without_bias(self) -> BatchNormalization:
        return replace(self, mean=np.zeros_like(self.mean), bias=np.zeros_like(self.bias))

    def magnitude(self) -> BatchNormalization:
        # (x + |mean|) / std * |scale| + |bias| = |L|(x) for x >= 0.
        return replace(
            self, scale=np.abs(self.scale), mean=-np.abs(self.mean), bias=np.abs(self.bias)
        )

    def rounding_depth(self) -> int:
        # var+eps, sqrt, x-mean, division, product, addition: 6 roundings; 8 to be generous.
        return 8


@dataclass(frozen=True)
class AveragePool(_Linear):
    window: Window
    count_include_pad: bool

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return average_pool(x, self.window, self.count_include_pad)

    def rounding_depth(self) -> int:
        # a sum of kh*kw terms, then one division
        return int(np.prod(self.window.kernel)) + 1


# --- activations and non-linear ops ------------------------------------------------------------


@dataclass(frozen=True)
class Relu:
    kind: ClassVar[OpKind] = OpKind.ACTIVATION

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0)


@dataclass(frozen=True)
class LeakyRelu:
    kind: ClassVar[OpKind] = OpKind.ACTIVATION
    alpha: float = 0.01

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return np.where(x >= 0, x, self.alpha * x)


@dataclass(frozen=True)
class Sigmoid:
    kind: ClassVar[OpKind] = OpKind.NONLINEAR

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        # 0.5 * (1 + tanh(x / 2)) never overflows, unlike 1 / (1 + exp(-x)).
        return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass(frozen=True)
class Tanh:
    kind: ClassVar[OpKind] = OpKind.NONLINEAR

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)


@dataclass(frozen=True)
class MaxPool:
    kind: ClassVar[OpKind] = OpKind.NONLINEAR
    window: Window

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return max_pool(x, self.window)
