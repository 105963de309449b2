"""A refuted LP piece's multipliers as the certificate states them, short where they still
prove it.

The LP's dual gives, per piece, weights mu of the unsafe half-spaces and a multiplier
lambda per unstable ReLU's pre-activation (phase_lp.dual_evidence). Any mu >= 0 and any
lambda give a valid Lagrangian bound (docs/certificate.md), so the certificate may carry
them rounded to a few significant digits: that costs only tightness. The rounded numbers
(3, 4 or 5 digits, the fewest that do) are kept only where their bound, evaluated here
over the piece's own bounds, keeps most of the full numbers' clearance; elsewhere the full
float64 numbers go in. The checker
re-derives the bound exactly either way: this evaluation only decides what to write.
"""

from __future__ import annotations

import numpy as np

# Significant digits of the short multipliers (about 8 to 10 characters each in JSON), tried
# in turn: 3 digits lose too much of a thin proof's clearance on some pieces.
DIGITS = (3, 4, 5)
# The share of the full multipliers' clearance that the short ones must keep: the checker's
# own bounds of a region can be looser than the search's, so a short proof keeps room.
KEEP = 0.75


def short(values: np.ndarray, digits: int) -> list[float | int]:
    """Each value rounded to `digits` significant digits; zeros (and -0.0) as integer 0."""
    return [float(f"{v:.{digits}g}") if v != 0.0 else 0 for v in values.tolist()]


def full(values: np.ndarray) -> list[float | int]:
    return [v if v != 0.0 else 0 for v in values.tolist()]


def lagrangian_bound(search, unsafe, mu, lam, low, high) -> float:
    """A lower bound (in float64, not rounded outward: for choosing, not proving) of
    mu . (a y - b) on the piece, from the identity over the restricted network
    v = [inputs; unstable ReLU outputs], z = pre v + const (+- err):

        mu . (a y - b) >= (q + lam pre) . v + q0 + lam . const - |lam| . err - lam . z

    minimised over the box for the inputs and, per ReLU, over its triangle (at a vertex)."""
    rows, consts, _ = unsafe
    q = -(mu @ rows)  # rows: -(a . output) over v; consts: b - a . const + |a| err
    g = q + lam @ search.pre
    const = -(mu @ consts) + lam @ search.const - np.abs(lam) @ search.err
    n_in, alpha = search.n_in, search.alpha
    gx, nu = g[:n_in], g[n_in:]
    box = np.minimum(gx * search.box_lower, gx * search.box_upper).sum()
    s_lo = np.where(low >= 0.0, 1.0, alpha)
    s_hi = np.where(high >= 0.0, 1.0, alpha)
    vertex = np.minimum((nu * s_lo - lam) * low, (nu * s_hi - lam) * high)
    return float(box + np.minimum(vertex, 0.0).sum() + const)


def evidence(search, unsafe, mu: np.ndarray, lam: np.ndarray, low, high) -> dict:
    """{"mu": [...], "lambda": [...]} (lambda in the order of search.where), as short as
    keeps KEEP of the full numbers' clearance, else in full."""
    clearance = lagrangian_bound(search, unsafe, mu, lam, low, high)
    if clearance > 0.0 and np.isfinite(clearance):
        for digits in DIGITS:
            mu_short, lam_short = short(mu, digits), short(lam, digits)
            kept = lagrangian_bound(
                search, unsafe, np.array(mu_short, float), np.array(lam_short, float), low, high
            )
            if kept >= KEEP * clearance:
                return {"mu": mu_short, "lambda": lam_short}
    return {"mu": full(mu), "lambda": full(lam)}
