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
from dataclasses import dataclass
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
        # The certificate's multipliers are for the half-space as written: the target's row
        # is it times target.factor.
        given = optimised.scaled(given, target.factor)
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
                numbers = optimised.scaled(given[i], scale)
                og, og_exps, oc, oc_exps = self.row_bound([coeffs[i]], last, region, None, numbers)
                gi, gi_exp, ci, ci_exp = og[0], og_exps[0], oc[0], oc_exps[0]
            const = exact.to_fraction(int(ci), int(ci_exp)) - (h.rhs + self.margin) * scale
            # mu weighs the half-space as written; the row bounded is it times `scale`.
            terms.append((Fraction(mu[i]) / scale, _fractions(gi, gi_exp), const))
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

    # LP leaves: every piece of every tree is a row, bounded on its own region; the rows of
    # a whole level's leaves are bounded together (lp_leaves), which is where time goes.

    def lp_tree(self, conjunction, tree, region, phases, name) -> bool:
        """Whether an lp-phases proof holds on one region."""
        batch = region.as_batch()
        pieces = self.lp_rows(conjunction, tree, batch, 0, name)
        return pieces is not None and all(self.lp_beaten(batch, pieces))

    def lp_leaves(self, batch: lg.Region, leaves, case) -> set[int]:
        """Of the lp-phases leaves (tree, region i of `batch`, name), the i of those whose
        proofs hold on their regions as they are; malformed ones are left to the
        one-by-one check (check.py), which says what is wrong and tightens before failing."""
        pieces, candidates = [], set()
        for tree, i, name in leaves:
            proofs = tree.get("proofs")
            if tree.get("leaf") != "lp-phases" or not isinstance(proofs, list):
                continue
            if len(proofs) != len(case.unsafe):
                continue
            try:
                mine = [
                    self.lp_rows(conjunction, proof, batch, i, name)
                    for conjunction, proof in zip(case.unsafe, proofs, strict=True)
                    if isinstance(proof, dict) and "row" not in proof
                ]
            except Invalid:
                continue
            if len(mine) == len(proofs) and None not in mine:
                candidates.add(i)
                pieces += [piece for rows_ in mine for piece in rows_]
        beaten = self.lp_beaten(batch, pieces)
        return candidates - {p.owner for p, ok in zip(pieces, beaten, strict=True) if not ok}

    def lp_rows(self, conjunction, tree, batch: lg.Region, owner: int, name):
        """An LP tree's pieces that may hold input, as rows to bound on region `owner` of
        `batch`; None when a piece it calls empty is not (its bounds do not cross)."""
        relus = None
        if self.version >= 3:
            try:
                relus = multipliers.Relus.read(tree.get("relus"), self.net.sizes)
            except multipliers.BadMultipliers as exc:
                raise Invalid(f"{name} lp: {exc}") from None
        bounds = [(lo[owner], hi[owner]) for lo, hi in batch.bounds]
        crossed = any(bool(np.any(lo > hi)) for lo, hi in bounds)  # the region holds no input
        pieces = []
        stack = [(tree, (), name + " lp")]
        while stack:
            node, added, label = stack.pop()
            if not isinstance(node, dict):
                raise Invalid(f"{label}: a phase split is missing a case")
            if "split" in node:
                children = node.get("children")
                if not isinstance(children, list) or len(children) != 2:
                    raise Invalid(f"{label}: a phase split must have exactly its two cases")
                k, j = neuron(self.net, node, label)
                stack.append((children[0], (*added, (k, j, True)), label + "+"))
                stack.append((children[1], (*added, (k, j, False)), label + "-"))
                continue
            if node.get("empty") is True:
                if not (crossed or _crosses(bounds, added)):
                    return None
                continue
            _weights(node.get("mu"), len(conjunction.halfspaces), label)
            if not (crossed or _crosses(bounds, added)):  # no input: needs no proof
                pieces.append(self._piece(conjunction, node, owner, added, relus, label))
        return pieces

    def _piece(self, conjunction, node, owner, added, relus, label) -> Piece:
        """A piece's row: its multipliers' combination of half-spaces, scaled to dyadic."""
        halfspaces = conjunction.halfspaces
        mu = [Fraction(w) for w in _weights(node.get("mu"), len(halfspaces), label)]
        combined = [
            sum((w * h.coeffs[i] for w, h in zip(mu, halfspaces, strict=True)), Fraction(0))
            for i in range(len(halfspaces[0].coeffs))
        ]
        scale = rows.scale([combined])
        rhs = sum(
            (w * (h.rhs + self.margin) for w, h in zip(mu, halfspaces, strict=True)), Fraction(0)
        )
        try:
            if relus is None:
                given = multipliers.triples(node.get("lambda"), self.net.sizes, float(scale))
            else:
                given = relus.overrides(node.get("lambda"), float(scale))
        except multipliers.BadMultipliers as exc:
            raise Invalid(f"{label}: {exc}") from None
        return Piece(owner, added, [v * scale for v in combined], scale * rhs, given)

    def lp_beaten(self, batch: lg.Region, pieces: list[Piece]) -> list[bool]:
        """Whether each piece's exact lower bound, with its multipliers, on its region
        (the batch's region narrowed by the piece's phases) is above its rhs."""
        out = []
        for start in range(0, len(pieces), CHUNK):
            chunk = pieces[start : start + CHUNK]
            region, overrides = _narrowed(batch, chunk, self.net.sizes)
            own = np.arange(len(chunk))
            g, g_exps, c, c_exps = lg.lower_linear(
                self.net,
                region,
                len(self.net.layers) - 1,
                rows.dyadic([p.coeffs for p in chunk]),
                overrides,
                own,
            )
            least, exps = lg.box_minimum(g, g_exps, c, c_exps, region.lower, region.upper, own)
            out += [
                exact.to_fraction(int(least[i]), int(exps[i])) > p.rhs for i, p in enumerate(chunk)
            ]
        return out


CHUNK = 1024  # LP pieces bounded at once (the exact products' memory stays small)


@dataclass(frozen=True)
class Piece:
    """An LP piece as a row: bounded on region `owner` of a batch with the phases `added`."""

    owner: int
    added: tuple  # (layer, neuron, active) each
    coeffs: list  # its combination of half-spaces, dyadic
    rhs: Fraction  # what the row's lower bound must be above
    overrides: multipliers.Overrides  # its Lagrange multipliers (scaled as the row)


def _crosses(bounds, added) -> bool:
    """Whether a region's bounds (one region, per layer), narrowed by the phases `added`,
    cross at one of those neurons."""
    narrowed = {}
    for k, j, active in added:
        lo, hi = narrowed.get((k, j), (bounds[k][0][j], bounds[k][1][j]))
        narrowed[k, j] = (max(lo, 0.0), hi) if active else (lo, min(hi, 0.0))
    return any(lo > hi for lo, hi in narrowed.values())


def _narrowed(batch: lg.Region, pieces: list[Piece], sizes: list[int]):
    """The pieces' regions as one batch (a row each), and their multipliers as
    lagrangian's overrides (per layer: which neurons each row gives, the values)."""
    own = np.array([p.owner for p in pieces], dtype=np.int64)
    bounds = [(lo[own], hi[own]) for lo, hi in batch.bounds]  # copies
    for i, piece in enumerate(pieces):
        for k, j, active in piece.added:
            lo, hi = bounds[k]
            if active:
                lo[i, j] = max(lo[i, j], 0.0)
            else:
                hi[i, j] = min(hi[i, j], 0.0)
    errors = [None if e is None else e[own] for e in batch.errors]
    region = lg.Region(batch.lower[own], batch.upper[own], bounds, errors)
    overrides = {}
    for k in sorted({k for p in pieces for k in p.overrides}):
        mask = np.zeros((len(pieces), sizes[k]), dtype=bool)
        values = np.zeros((len(pieces), sizes[k]))
        for i, piece in enumerate(pieces):
            if k in piece.overrides:
                neurons, given = piece.overrides[k]
                mask[i, neurons], values[i, neurons] = True, given
        overrides[k] = (mask, values)
    return region, overrides


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
