"""The proofs of linear and LP leaves, from bounds the checker computes itself.

A `linear-bound` leaf names a row whose exact linear lower bound beats its half-space (with
a proof's optimised slopes and split multipliers, if it carries them); a
`linear-combination` leaf weighs rows and the region's phases; an `lp-phases` leaf splits
on more phases and gives each piece Lagrange multipliers (read by multipliers.py; the pieces
of one tree are bounded together, a row each). The certificate's numbers only
say which argument to make, never what a bound is (docs/certificate.md).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from verifiers.certify.checker import exact, multipliers, optimised, rows
from verifiers.certify.checker import lagrangian as lg


class Invalid(Exception):
    """The certificate does not prove the property; the message names where."""


def neuron(net: lg.ExactNetwork, node, name) -> tuple[int, int]:
    """A ReLU (layer, neuron) named by a split or a multiplier, checked in range."""
    k, j = node.get("layer"), node.get("neuron")
    if not (isinstance(k, int) and 0 <= k < len(net.sizes)):
        raise Invalid(f"{name}: ReLU split on no ReLU layer ({k!r})")
    if not (isinstance(j, int) and 0 <= j < net.sizes[k]):
        raise Invalid(f"{name}: ReLU split on no neuron ({j!r})")
    return k, j


class Prover:
    """Proves linear and LP leaves on a region, for one network and margin."""

    def __init__(self, net: lg.ExactNetwork, margin: Fraction, version: int = 3) -> None:
        self.net = net
        self.margin = margin
        self.version = version  # 3: an LP tree lists its ReLUs once (multipliers.py)

    def row_bound(self, coeffs, k, region, overrides=None, optimised=None):
        """Exact lower bound of coeffs . z_k as Fractions: (input coefficients, constant)."""
        ints, exps = rows.dyadic(coeffs)
        return lg.lower_linear(self.net, region, k, (ints, exps), overrides, optimised=optimised)

    def row(self, conjunction, proof, region, phases, name) -> bool:
        index = proof["row"]
        if not isinstance(index, int) or not 0 <= index < len(conjunction.halfspaces):
            raise Invalid(f"{name}: no half-space {index!r}")
        try:
            given = optimised.read(proof, self.net.sizes, self.net.alphas, phases)
        except optimised.BadNumbers as exc:
            raise Invalid(f"{name}: {exc}") from None
        target = rows.Target.of(conjunction.halfspaces[index], self.margin)
        last = len(self.net.layers) - 1
        # The search records a row's slopes whether or not they beat CROWN's (the warm
        # start's are kept where they did not): CROWN's are tried too.
        for numbers in (given, None) if given is not None else (None,):
            g, g_exps, c, c_exps = self.row_bound([target.coeffs], last, region, None, numbers)
            least, exps = lg.box_minimum(g, g_exps, c, c_exps, region.lower, region.upper)
            if target.beaten(int(least[0]), int(exps[0])):
                return True
        return False

    def combination(self, conjunction, proof, region, phases, name) -> bool:
        mu = _weights(proof.get("mu"), len(conjunction.halfspaces), name)
        terms = []  # (weight, input coefficients (Fractions), constant)
        scale = rows.scale([h.coeffs for h in conjunction.halfspaces])
        coeffs = [[c * scale for c in h.coeffs] for h in conjunction.halfspaces]
        last = len(self.net.layers) - 1
        g, g_exps, c, c_exps = self.row_bound(coeffs, last, region)
        given = self.row_numbers(proof, len(coeffs), phases, name)
        for i, h in enumerate(conjunction.halfspaces):
            gi, gi_exp, ci, ci_exp = g[i], g_exps[i], c[i], c_exps[i]
            if given[i] is not None:  # this row's own optimised slopes and multipliers
                og, og_exps, oc, oc_exps = self.row_bound([coeffs[i]], last, region, None, given[i])
                gi, gi_exp, ci, ci_exp = og[0], og_exps[0], oc[0], oc_exps[0]
            const = exact.to_fraction(int(ci), int(ci_exp)) - (h.rhs + self.margin) * scale
            terms.append((mu[i], _fractions(gi, gi_exp), const))
        for entry in proof.get("phase_mu") or []:
            if not (isinstance(entry, list) and len(entry) == 4):
                raise Invalid(f"{name}: a phase weight is not [layer, neuron, active, weight]")
            k, j, active, w = entry
            if (k, j, bool(active)) not in set(phases):
                raise Invalid(f"{name}: weighs in a phase ({k}, {j}) the region does not have")
            weight = _weights([w], 1, name)[0]
            size = self.net.sizes[k]
            row = [Fraction(0)] * size
            row[j] = Fraction(-1 if active else 1)
            pg, pg_exps, pc, pc_exps = self.row_bound([row], k, region)
            terms.append(
                (
                    weight,
                    _fractions(pg[0], pg_exps[0]),
                    exact.to_fraction(int(pc[0]), int(pc_exps[0])),
                )
            )
        return _combined_minimum(terms, region) > 0

    def row_numbers(self, proof, count: int, phases, name) -> list:
        """A combination's per-row slopes and split multipliers (None: CROWN's)."""
        slopes = proof.get("row_slopes") or [None] * count
        betas = proof.get("row_betas") or [None] * count
        if not (isinstance(slopes, list) and isinstance(betas, list)):
            raise Invalid(f"{name}: row_slopes and row_betas must be lists")
        if len(slopes) != count or len(betas) != count:
            raise Invalid(f"{name}: row_slopes and row_betas need one entry per half-space")
        out = []
        for s, b in zip(slopes, betas, strict=True):
            numbers = {k: v for k, v in (("slopes", s), ("betas", b)) if v is not None}
            try:
                out.append(optimised.read(numbers, self.net.sizes, self.net.alphas, phases))
            except optimised.BadNumbers as exc:
                raise Invalid(f"{name}: {exc}") from None
        return out

    # LP leaves

    def lp_tree(self, conjunction, tree, region, phases, name) -> bool:
        relus = None
        if self.version >= 3:
            try:
                relus = multipliers.Relus.read(tree.get("relus"), self.net.sizes)
            except multipliers.BadMultipliers as exc:
                raise Invalid(f"{name} lp: {exc}") from None
        pieces = []  # (piece, its region, its name): bounded together below
        stack = [(tree, region, name + " lp")]
        while stack:
            node, here, label = stack.pop()
            if not isinstance(node, dict):
                raise Invalid(f"{label}: a phase split is missing a case")
            if "split" in node:
                children = node.get("children")
                if not isinstance(children, list) or len(children) != 2:
                    raise Invalid(f"{label}: a phase split must have exactly its two cases")
                k, j = neuron(self.net, node, label)
                for child, active, tag in ((children[0], True, "+"), (children[1], False, "-")):
                    lo, hi = here.bounds[k]
                    lo, hi = lo.copy(), hi.copy()
                    if active:
                        lo[j] = max(lo[j], 0.0)
                    else:
                        hi[j] = min(hi[j], 0.0)
                    stack.append((child, here.with_bounds(k, lo, hi), label + tag))
                continue
            if node.get("empty") is True:
                if not here.crossed():
                    return False
                continue
            _weights(node.get("mu"), len(conjunction.halfspaces), label)
            if not here.crossed():  # a piece whose bounds cross holds no input
                pieces.append((node, here, label))
        return self.lp_pieces(conjunction, pieces, relus)

    def lp_pieces(self, conjunction, pieces, relus) -> bool:
        """Whether every piece's Lagrangian bound beats its combination of half-spaces: one
        exact back-substitution for them all (a row each, on its own region)."""
        if not pieces:
            return True
        halfspaces = conjunction.halfspaces
        coeffs, rhs, overrides = [], [], []
        for node, _, label in pieces:
            mu = [Fraction(w) for w in _weights(node.get("mu"), len(halfspaces), label)]
            combined = [
                sum((w * h.coeffs[i] for w, h in zip(mu, halfspaces, strict=True)), Fraction(0))
                for i in range(len(halfspaces[0].coeffs))
            ]
            scale = rows.scale([combined])
            coeffs.append([v * scale for v in combined])
            rhs.append(
                scale
                * sum(
                    (w * (h.rhs + self.margin) for w, h in zip(mu, halfspaces, strict=True)),
                    Fraction(0),
                )
            )
            try:
                if relus is None:
                    given = multipliers.triples(node.get("lambda"), self.net.sizes, float(scale))
                else:
                    given = relus.overrides(node.get("lambda"), float(scale))
            except multipliers.BadMultipliers as exc:
                raise Invalid(f"{label}: {exc}") from None
            overrides.append(given)
        regions = [region for _, region, _ in pieces]
        shared = _rows_of(overrides)
        if shared is None:  # version 2 pieces on different ReLUs: one at a time
            return all(
                self.beaten([coeffs[i]], [rhs[i]], [regions[i]], overrides[i])
                for i in range(len(pieces))
            )
        return self.beaten(coeffs, rhs, regions, shared)

    def beaten(self, coeffs, rhs, regions, overrides) -> bool:
        """Whether each row's exact lower bound on its region, with the given multipliers,
        is above its rhs."""
        batch = _stacked(regions)
        own = np.arange(len(regions))
        g, g_exps, c, c_exps = lg.lower_linear(
            self.net, batch, len(self.net.layers) - 1, rows.dyadic(coeffs), overrides, own
        )
        least, exps = lg.box_minimum(g, g_exps, c, c_exps, batch.lower, batch.upper, own)
        return all(
            exact.to_fraction(int(least[i]), int(exps[i])) > rhs[i] for i in range(len(regions))
        )


def _stacked(regions) -> lg.Region:
    """Single regions as one batch (a row each)."""
    errors = [
        None if regions[0].errors[k] is None else np.stack([r.errors[k] for r in regions])
        for k in range(len(regions[0].errors))
    ]
    bounds = [
        (np.stack([r.bounds[k][0] for r in regions]), np.stack([r.bounds[k][1] for r in regions]))
        for k in range(len(regions[0].bounds))
    ]
    lower = np.stack([r.lower for r in regions])
    return lg.Region(lower, np.stack([r.upper for r in regions]), bounds, errors)


def _rows_of(overrides: list[dict]) -> dict | None:
    """Per-piece overrides on the same neurons as one per layer: (neurons, a row each);
    None when the pieces' neurons differ (version 2 allows that)."""
    if len(overrides) == 1:
        return overrides[0]
    first = overrides[0]
    for given in overrides[1:]:
        if given.keys() != first.keys():
            return None
        if any(not np.array_equal(given[k][0], first[k][0]) for k in first):
            return None
    return {
        k: (neurons, np.stack([given[k][1] for given in overrides]))
        for k, (neurons, _) in first.items()
    }


def _weights(values, n: int, name) -> list[float]:
    if not isinstance(values, list) or len(values) != n:
        raise Invalid(f"{name}: expected {n} weights")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise Invalid(f"{name}: a weight is not a finite number >= 0")
    return [float(v) for v in values]


def _fractions(ints, exp) -> list[Fraction]:
    return [exact.to_fraction(int(v), int(exp)) for v in ints]


def _combined_minimum(terms, region) -> Fraction:
    """min over the box of sum_i w_i (g_i . x + c_i), exactly."""
    n = len(region.lower)
    g = [Fraction(0)] * n
    const = Fraction(0)
    for w, coeffs, c in terms:
        wf = Fraction(w)
        if wf == 0:
            continue
        const += wf * c
        for j in range(n):
            g[j] += wf * coeffs[j]
    lo = [Fraction(float(v)) for v in region.lower]
    hi = [Fraction(float(v)) for v in region.upper]
    return const + sum(
        (min(gj * a, gj * b) for gj, a, b in zip(g, lo, hi, strict=True)), Fraction(0)
    )
