"""A leaf's proof numbers (chain or graph) restated in the property's own half-spaces.

The search bounds each unsafe half-space a.y <= b as s (a.y - b), s the power of two that
brings its largest |coefficient| into [1, 2) (HalfSpace.scale: no coefficient overflows).
Its numbers are for s (a.y - b); the certificate states them for the half-space as written
(docs/certificate.md): a weight of the row (a combination's or an LP piece's `mu`) is
multiplied by s, a multiplier inside the row's own bound (its split multipliers: a chain
row's `betas`, a graph leaf's `gammas`; they scale with the row) divided by it. Both are
exact in float64 but for overflow or underflow, which only makes a proof fail to check,
never a wrong one pass. What is no
number of a row stays: a combination's phase weights and an LP piece's lambda are terms of
their own (the combined row is the same function), lower slopes are per ReLU.
"""

from __future__ import annotations

from typing import Any

from verifiers.spec.property import Case


def in_property_units(proofs: list[dict] | None, case: Case) -> list[dict] | None:
    """Per conjunction of `case`, its proof with the row multipliers restated."""
    if proofs is None:
        return None
    out = []
    for g, proof in enumerate(proofs):
        if g >= len(case.unsafe):  # one proof for all of them (z3's query): no multipliers
            out.append(proof)
            continue
        scales = [float(h.scale) for h in case.unsafe[g].halfspaces]
        out.append(_restated(proof, scales))
    return out


def _restated(proof: dict[str, Any], scales: list[float]) -> dict[str, Any]:
    entry = dict(proof)
    if "row" in proof and "betas" in proof:
        s = scales[proof["row"]]
        entry["betas"] = [[k, j, b / s] for k, j, b in proof["betas"]]
    if "row" in proof and "gammas" in proof:  # a graph leaf's split multipliers: the same
        s = scales[proof["row"]]
        entry["gammas"] = [[t, j, g / s] for t, j, g in proof["gammas"]]
    if "mu" in proof:
        entry["mu"] = [w * s for w, s in zip(proof["mu"], scales, strict=True)]
    if proof.get("row_betas") is not None:
        entry["row_betas"] = [
            None if betas is None else [[k, j, b / s] for k, j, b in betas]
            for betas, s in zip(proof["row_betas"], scales, strict=True)
        ]
    if "children" in proof:  # an LP tree: its pieces' mu
        entry["children"] = [_restated(child, scales) for child in proof["children"]]
    return entry
