"""A property over a component: input boxes and an unsafe output set in DNF.

VNN-LIB semantics: the property describes the *unsafe* set. The component is safe (the
property `holds`) when no input of any case's box maps to an output satisfying one of that
case's unsafe conjunctions.

Numbers are kept exactly (``Fraction``) for replay with zero tolerance, and as float64 for
the bound engines: input boxes are rounded *outward* so the float box always contains the
exact one, and the unsafe half-spaces that proofs refute are widened outward
(`Conjunction.outward_matrix`): their right-hand sides rounded up, and raised by what rounding
the coefficients can move a.y.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np


def round_down(value: Fraction) -> float:
    """The largest float64 that is <= value."""
    f = float(value)
    return f if Fraction(f) <= value else float(np.nextafter(f, -np.inf))


def round_up(value: Fraction) -> float:
    """The smallest float64 that is >= value."""
    f = float(value)
    return f if Fraction(f) >= value else float(np.nextafter(f, np.inf))


@dataclass(frozen=True)
class HalfSpace:
    """The unsafe-side constraint ``sum(coeffs[i] * Y_i) <= rhs`` (``<`` when strict)."""

    coeffs: tuple[Fraction, ...]
    rhs: Fraction
    strict: bool = False

    @property
    def coeffs_f64(self) -> np.ndarray:
        return np.array([float(c) for c in self.coeffs], dtype=np.float64)

    @property
    def rhs_f64(self) -> float:
        return float(self.rhs)

    def slack(self, outputs: np.ndarray) -> float:
        """rhs - a.y in float64: > 0 well inside the unsafe side."""
        return float(self.rhs_f64 - self.coeffs_f64 @ np.asarray(outputs, dtype=np.float64))

    def holds_exactly(self, outputs: list[float] | np.ndarray) -> bool:
        """Exact rational check of the constraint at a concrete output (no tolerance)."""
        lhs = sum(
            (c * Fraction(float(y)) for c, y in zip(self.coeffs, outputs, strict=True)), Fraction(0)
        )
        return lhs < self.rhs if self.strict else lhs <= self.rhs


@dataclass(frozen=True)
class Conjunction:
    """An unsafe polytope in output space: all half-spaces hold at once."""

    halfspaces: tuple[HalfSpace, ...]

    def holds_exactly(self, outputs: list[float] | np.ndarray) -> bool:
        return all(h.holds_exactly(outputs) for h in self.halfspaces)

    def margin(self, outputs: np.ndarray) -> float:
        """min over half-spaces of rhs - a.y: >= 0 when the output is unsafe."""
        return min(h.slack(outputs) for h in self.halfspaces) if self.halfspaces else np.inf

    def matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """(A, b) in float64 with the conjunction read as A y <= b (nearest floats: for
        searching, not for proofs; see `outward_matrix`)."""
        a = np.array([h.coeffs_f64 for h in self.halfspaces], dtype=np.float64)
        b = np.array([h.rhs_f64 for h in self.halfspaces], dtype=np.float64)
        return a.reshape(len(self.halfspaces), -1), b

    @property
    def coefficients_exact_in_float64(self) -> bool:
        return all(Fraction(float(c)) == c for h in self.halfspaces for c in h.coeffs)

    def outward_matrix(
        self, margin: Fraction, output_magnitude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(A, b) in float64 whose set A y <= b contains every y of the exact widened set
        a.y <= rhs + margin (with |y_i| <= output_magnitude_i): b is rounded up, and raised by
        what rounding the coefficients can move a.y. A proof that no output meets A y <= b
        is then a proof for the exact set. `output_magnitude` is needed only when some
        coefficient is not a float64 (see `coefficients_exact_in_float64`)."""
        a, _ = self.matrix()
        b = [_outward_rhs(h, margin, output_magnitude) for h in self.halfspaces]
        return a, np.array(b, dtype=np.float64)


def _outward_rhs(h: HalfSpace, margin: Fraction, output_magnitude: np.ndarray | None) -> float:
    """round_up(rhs + margin + a bound on |a.y - fl(a).y|, i.e. sum |a_i - fl(a_i)| |y_i|)."""
    errors = [abs(c - Fraction(float(c))) for c in h.coeffs]
    if not any(errors):
        return round_up(h.rhs + margin)
    if output_magnitude is None:
        raise ValueError("inexact coefficients need the output magnitude")
    if not np.all(np.isfinite(output_magnitude)):
        return np.inf  # unbounded outputs: this half-space can refute nothing
    moved = sum(
        (e * Fraction(float(m)) for e, m in zip(errors, output_magnitude, strict=True)),
        Fraction(0),
    )
    return round_up(h.rhs + margin + moved)


@dataclass(frozen=True)
class Case:
    """One input box with the unsafe output set that applies on it (a DNF)."""

    lower_exact: tuple[Fraction, ...]
    upper_exact: tuple[Fraction, ...]
    unsafe: tuple[Conjunction, ...]

    @property
    def lower(self) -> np.ndarray:
        return np.array([round_down(v) for v in self.lower_exact], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        return np.array([round_up(v) for v in self.upper_exact], dtype=np.float64)

    def contains_exactly(self, inputs: list[float] | np.ndarray) -> bool:
        return all(
            lo <= Fraction(float(x)) <= hi
            for lo, hi, x in zip(self.lower_exact, self.upper_exact, inputs, strict=True)
        )

    def is_empty(self) -> bool:
        return any(lo > hi for lo, hi in zip(self.lower_exact, self.upper_exact, strict=True))


@dataclass(frozen=True)
class Property:
    n_inputs: int
    n_outputs: int
    cases: tuple[Case, ...]
    # The text or JSON it came from, for display and hashing.
    source: str = ""

    def is_violated_by(self, inputs: np.ndarray, outputs: np.ndarray) -> bool:
        """Exact check: the input lies in some case's box and the output in its unsafe set."""
        return any(
            case.contains_exactly(inputs) and any(c.holds_exactly(outputs) for c in case.unsafe)
            for case in self.cases
        )

    def to_json(self) -> dict[str, Any]:
        """The structure as JSON-ready data with exact numbers as strings (``"3/5"``,
        ``"-1/3"``); ``source`` is left out."""
        return {
            "n_inputs": self.n_inputs,
            "n_outputs": self.n_outputs,
            "cases": [
                {
                    "lower": [str(v) for v in case.lower_exact],
                    "upper": [str(v) for v in case.upper_exact],
                    "unsafe": [
                        [
                            {
                                "coeffs": [str(c) for c in h.coeffs],
                                "rhs": str(h.rhs),
                                "strict": h.strict,
                            }
                            for h in conjunction.halfspaces
                        ]
                        for conjunction in case.unsafe
                    ],
                }
                for case in self.cases
            ],
        }

    def sha256(self) -> str:
        """A hash of the structure (not of the source text): equal properties hash equal."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()
