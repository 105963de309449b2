"""Row proofs: a linear lower bound of one output half-space's row beats its bound.

The checker proves most leaves so (`linear-bound`, `{"row": i}` per conjunction); the rows
of all leaves of a batch of regions are bounded together here, exactly
(lagrangian.lower_linear, a row per leaf and conjunction). A leaf not proved here is
checked on its own (check.py), which also reports what is malformed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from verifiers.certify.checker import exact
from verifiers.certify.checker import lagrangian as lg


@dataclass(frozen=True)
class Target:
    """A half-space's row scaled to dyadic coefficients, and what its bound must beat."""

    coeffs: list
    bound: Fraction
    strict: bool
    factor: int = 1  # the half-space's coefficients times this are coeffs

    @classmethod
    def of(cls, halfspace, margin: Fraction) -> Target:
        factor = scale([halfspace.coeffs])
        coeffs = [c * factor for c in halfspace.coeffs]
        return cls(coeffs, (halfspace.rhs + margin) * factor, halfspace.strict, factor)

    def beaten(self, least: int, exp: int) -> bool:
        """Whether the exact lower bound least * 2**exp proves the row's half-space empty:
        at least the bound for a strict half-space, above it otherwise."""
        value = exact.to_fraction(least, exp)
        return value >= self.bound if self.strict else value > self.bound


def proved_by_rows(net, batch, trees, indices, case, margin) -> set[int]:
    """Of the leaves `trees` (regions `indices` of the batch), those whose row proofs hold;
    malformed ones are left to the one-by-one check."""
    targets, owners, which = [], [], {}  # which: half-space -> its target's index
    for tree, i in zip(trees, indices, strict=True):
        wanted = _rows(tree, case)
        if wanted is not None:
            for h in wanted:
                if id(h) not in which:
                    which[id(h)] = len(which)
                    targets.append(Target.of(h, margin))
            owners += [(i, which[id(h)]) for h in wanted]
    if not owners:
        return set()
    own, row = (np.array(column) for column in zip(*owners, strict=True))
    last = len(net.layers) - 1
    ints, exps = dyadic([t.coeffs for t in targets])
    g, g_exps, h, h_exps = lg.lower_linear(net, batch, last, (ints[row], exps[row]), own=own)
    least, exps = lg.box_minimum(g, g_exps, h, h_exps, batch.lower, batch.upper, own)
    failed = {
        i for r, (i, t) in enumerate(owners) if not targets[t].beaten(int(least[r]), int(exps[r]))
    }
    return set(own.tolist()) - failed


def _rows(tree, case):
    """The half-spaces a well-formed linear-bound leaf names, one per conjunction."""
    proofs = tree.get("proofs")
    if tree.get("leaf") != "linear-bound" or not isinstance(proofs, list):
        return None
    if len(proofs) != len(case.unsafe):
        return None
    out = []
    for conjunction, proof in zip(case.unsafe, proofs, strict=True):
        if not isinstance(proof, dict) or "slopes" in proof or "betas" in proof:
            return None  # optimised slopes: checked one by one
        index = proof.get("row")
        if not isinstance(index, int) or isinstance(index, bool):
            return None
        if not 0 <= index < len(conjunction.halfspaces):
            return None
        out.append(conjunction.halfspaces[index])
    return out


def scale(rows) -> int:
    """A positive integer making every coefficient a dyadic rational (ints over 2**k)."""
    scale = 1
    for row in rows:
        for c in row:
            d = Fraction(c).denominator
            while d % 2 == 0:
                d //= 2
            scale = math.lcm(scale, d)
    return scale


def dyadic(rows) -> tuple[np.ndarray, np.ndarray]:
    """Dyadic rationals exactly, one exponent per row."""
    out = np.zeros((len(rows), len(rows[0])), dtype=object)
    small = True
    exps = np.zeros(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        fractions = [Fraction(v) for v in row]
        k = max((f.denominator.bit_length() - 1 for f in fractions), default=0)
        for j, f in enumerate(fractions):
            assert (f.denominator & (f.denominator - 1)) == 0, "not dyadic"
            out[i, j] = f.numerator << (k - (f.denominator.bit_length() - 1))
        exps[i] = -k
        small = small and all(abs(v).bit_length() < 62 for v in out[i])
    return (out.astype(np.int64) if small else out), exps
