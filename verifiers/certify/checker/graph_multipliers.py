"""A graph leaf's split multipliers (`gammas`, docs/certificate.md), read and weighed.

Any element z of any tensor lies in its region box [lo, hi] (the checker's own bounds, which
hold an interval split's constraint), so for every real gamma

    gamma z - max(gamma lo, gamma hi) <= 0  on the region,

and a lower bound of `row . y + sum gamma z` minus the sum of the maxima is a lower bound of
`row . y` (beta-CROWN's argument, as the search makes it: search/graph_beta.py). This holds
for any numbers: the certificate's only choose which bound the checker computes. They are
stated for the half-space as written; the checker bounds it times `factor` (rows.scale), so
they are multiplied by it, exactly.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from verifiers.certify.checker import exact
from verifiers.certify.checker.graph_net import Net
from verifiers.certify.checker.rows import dyadic


class BadGammas(ValueError):
    """A malformed `gammas` entry (the message says which)."""


Gammas = list[tuple[str, int, Fraction]]


def read(proof: dict, net: Net) -> Gammas:
    """The proof's multipliers as (tensor, element, exact value): each on an element of a
    tensor that the network computes no later than its output (or of its input)."""
    entries = proof.get("gammas", [])
    if not isinstance(entries, list):
        raise BadGammas("gammas is not a list")
    last = net.producer(net.output)
    out = []
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 3):
            raise BadGammas("a multiplier is not [tensor, index, gamma]")
        tensor, j, gamma = entry
        if not isinstance(tensor, str) or tensor not in net.sizes:
            raise BadGammas(f"a multiplier on no tensor of the model ({tensor!r})")
        if tensor != net.input_name and not 0 <= net.producer(tensor) <= last:
            raise BadGammas(f"a multiplier on {tensor}, which the output does not follow")
        if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < net.sizes[tensor]:
            raise BadGammas(f"a multiplier on no element of {tensor} ({j!r})")
        if not exact.is_number(gamma):
            raise BadGammas(f"a multiplier {gamma!r} is not a finite number")
        out.append((tensor, j, Fraction(gamma)))
    return out


def weigh(gammas: Gammas, factor: int, net: Net, boxes) -> tuple[dict, Fraction] | None:
    """The seeds of the multipliers times `factor` (per tensor, one exact row) and the
    constant sum max(g lo, g hi) they cost on the region's `boxes`; None when an element
    with a nonzero multiplier is unbounded there (nothing to weigh it against)."""
    rows: dict[str, list[Fraction]] = {}
    cost = Fraction(0)
    for tensor, j, gamma in gammas:
        g = gamma * factor
        if g == 0:
            continue
        lo, hi = boxes[tensor][0][j], boxes[tensor][1][j]
        end = hi if g > 0 else lo
        if not np.isfinite(end):
            return None
        cost += g * Fraction(float(end))
        row = rows.setdefault(tensor, [Fraction(0)] * net.sizes[tensor])
        row[j] += g
    return {name: dyadic([row]) for name, row in rows.items()}, cost
