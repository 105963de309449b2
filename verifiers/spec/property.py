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

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

_MAX = Fraction(np.finfo(np.float64).max)


def round_down(value: Fraction) -> float:
    """The largest float64 that is <= value (-inf below the float range)."""
    if value < -_MAX:
        return -np.inf
    if value > _MAX:
        return float(_MAX)
    f = float(value)
    return f if Fraction(f) <= value else float(np.nextafter(f, -np.inf))


def round_up(value: Fraction) -> float:
    """The smallest float64 that is >= value (+inf above the float range)."""
    return -round_down(-value)


def nearest(value: Fraction) -> float:
    """The float64 nearest to value, saturating to +-inf outside the float range (a plain
    float() raises OverflowError there)."""
    if abs(value) > _MAX:
        return np.inf if value > 0 else -np.inf
    return float(value)


def _scale_exponent(coeffs: tuple[Fraction, ...]) -> int:
    """k = floor(log2(max |c|)): scaling a half-space by 2**-k keeps its set and brings its
    largest coefficient into [1, 2), so no coefficient overflows a float64 (tiny ones may
    become inexact, which `outward_matrix` accounts for)."""
    largest = max((abs(c) for c in coeffs), default=Fraction(0))
    if not largest:
        return 0
    k = largest.numerator.bit_length() - largest.denominator.bit_length()
    return k - 1 if Fraction(2) ** k > largest else k


@dataclass(frozen=True)
class HalfSpace:
    """The unsafe-side constraint ``sum(coeffs[i] * Y_i) <= rhs`` (``<`` when strict)."""

    coeffs: tuple[Fraction, ...]
    rhs: Fraction
    strict: bool = False

    @functools.cached_property
    def exponent(self) -> int:
        """k of the power of two 2**-k by which the float64 forms below are scaled (the
        same set; see _scale_exponent)."""
        return _scale_exponent(self.coeffs)

    @functools.cached_property
    def scale(self) -> Fraction:
        return Fraction(2) ** -self.exponent

    @property
    def coeffs_f64(self) -> np.ndarray:
        scale = self.scale
        return np.array([nearest(c * scale) for c in self.coeffs], dtype=np.float64)

    @property
    def rhs_f64(self) -> float:
        return nearest(self.rhs * self.scale)

    def slack(self, outputs: np.ndarray) -> float:
        """rhs - a.y in float64 (computed on the scaled form): > 0 well inside the unsafe
        side; +-inf where it overflows, never NaN for finite outputs."""
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = self.rhs_f64 - self.coeffs_f64 @ np.asarray(outputs, dtype=np.float64)
        if np.isnan(scaled):
            return -np.inf
        try:
            return math.ldexp(float(scaled), self.exponent)
        except OverflowError:
            return math.copysign(np.inf, float(scaled))

    def holds_exactly(self, outputs: list[float] | np.ndarray) -> bool:
        """Exact rational check of the constraint at a concrete output (no tolerance). A
        non-finite output is no real number, so it lies in no half-space."""
        if not all(np.isfinite(float(y)) for y in outputs):
            return False
        return self.holds_for([Fraction(float(y)) for y in outputs])

    def holds_for(self, outputs: list[Fraction]) -> bool:
        """The same check for exact outputs."""
        lhs = sum((c * y for c, y in zip(self.coeffs, outputs, strict=True)), Fraction(0))
        return lhs < self.rhs if self.strict else lhs <= self.rhs


@dataclass(frozen=True)
class Conjunction:
    """An unsafe polytope in output space: all half-spaces hold at once."""

    halfspaces: tuple[HalfSpace, ...]

    def holds_exactly(self, outputs: list[float] | np.ndarray) -> bool:
        """Exact check; a conjunction with no half-space holds at every finite output."""
        if not all(np.isfinite(float(y)) for y in outputs):
            return False
        return self.holds_for([Fraction(float(y)) for y in outputs])

    def holds_for(self, outputs: list[Fraction]) -> bool:
        return all(h.holds_for(outputs) for h in self.halfspaces)

    @property
    def constrains_outputs(self) -> bool:
        """False for a conjunction with no output atom: every output is unsafe there."""
        return bool(self.halfspaces)

    def margin(self, outputs: np.ndarray) -> float:
        """min over half-spaces of rhs - a.y: >= 0 when the output is unsafe; inf when no
        half-space constrains it."""
        return min(h.slack(outputs) for h in self.halfspaces) if self.halfspaces else np.inf

    def matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """(A, b) in float64 with the conjunction read as A y <= b (nearest floats: for
        searching, not for proofs; see `outward_matrix`). Needs at least one half-space."""
        if not self.halfspaces:
            raise ValueError("a conjunction without output constraints has no matrix")
        a = np.array([h.coeffs_f64 for h in self.halfspaces], dtype=np.float64)
        b = np.array([h.rhs_f64 for h in self.halfspaces], dtype=np.float64)
        return a.reshape(len(self.halfspaces), -1), b

    @property
    def coefficients_exact_in_float64(self) -> bool:
        return all(_exact_in_float64(h) for h in self.halfspaces)

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


def _exact_in_float64(h: HalfSpace) -> bool:
    return all(Fraction(float(c * h.scale)) == c * h.scale for c in h.coeffs)


def _outward_rhs(h: HalfSpace, margin: Fraction, output_magnitude: np.ndarray | None) -> float:
    """round_up(s (rhs + margin) + a bound on |s a.y - fl(s a).y|, i.e. sum |s a_i -
    fl(s a_i)| |y_i|), for the half-space's power-of-two scale s (see HalfSpace.scale)."""
    scale = h.scale
    errors = [abs(c * scale - Fraction(float(c * scale))) for c in h.coeffs]
    if not any(errors):
        return round_up((h.rhs + margin) * scale)
    if output_magnitude is None:
        raise ValueError("inexact coefficients need the output magnitude")
    if not np.all(np.isfinite(output_magnitude)):
        return np.inf  # unbounded outputs: this half-space can refute nothing
    moved = sum(
        (e * Fraction(float(m)) for e, m in zip(errors, output_magnitude, strict=True)),
        Fraction(0),
    )
    return round_up((h.rhs + margin) * scale + moved)


@dataclass(frozen=True)
class Case:
    """One input box with the unsafe output set that applies on it (a DNF).

    A bound may be strict (``(> X_0 0)``): the input set is then not closed. Proofs may use
    the closed float box (`lower`, `upper`: it only adds boundary points, so `holds` stays
    sound); a counterexample must satisfy every bound exactly, strict ones strictly.
    Empty strictness tuples mean every bound is closed."""

    lower_exact: tuple[Fraction, ...]
    upper_exact: tuple[Fraction, ...]
    unsafe: tuple[Conjunction, ...]
    lower_strict: tuple[bool, ...] = ()
    upper_strict: tuple[bool, ...] = ()

    @property
    def lower(self) -> np.ndarray:
        return np.array([round_down(v) for v in self.lower_exact], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        return np.array([round_up(v) for v in self.upper_exact], dtype=np.float64)

    def strict_at(self, i: int) -> tuple[bool, bool]:
        """Whether input i's lower and upper bounds are strict."""
        return (
            bool(self.lower_strict) and self.lower_strict[i],
            bool(self.upper_strict) and self.upper_strict[i],
        )

    @property
    def has_strict_bounds(self) -> bool:
        return any(self.lower_strict) or any(self.upper_strict)

    def contains_exactly(self, inputs: list[float] | np.ndarray) -> bool:
        """Exact check of a float point (non-finite values lie in no box)."""
        if not all(np.isfinite(float(x)) for x in inputs):
            return False
        return self.contains_fractions([Fraction(float(x)) for x in inputs])

    def contains_fractions(self, inputs: list[Fraction]) -> bool:
        for i, (lo, hi, x) in enumerate(
            zip(self.lower_exact, self.upper_exact, inputs, strict=True)
        ):
            strict_lo, strict_hi = self.strict_at(i)
            if x < lo or x > hi or (strict_lo and x == lo) or (strict_hi and x == hi):
                return False
        return True

    def is_empty(self) -> bool:
        for i, (lo, hi) in enumerate(zip(self.lower_exact, self.upper_exact, strict=True)):
            if lo > hi or (lo == hi and any(self.strict_at(i))):
                return True
        return False

    @property
    def constrains_outputs(self) -> bool:
        """False when some conjunction has no output atom (every output is unsafe there)."""
        return all(c.constrains_outputs for c in self.unsafe)

    def box_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "lower": [str(v) for v in self.lower_exact],
            "upper": [str(v) for v in self.upper_exact],
        }
        # Only when present: properties without strict bounds keep the hashes they had.
        if self.has_strict_bounds:
            data["lower_strict"] = [self.strict_at(i)[0] for i in range(len(self.lower_exact))]
            data["upper_strict"] = [self.strict_at(i)[1] for i in range(len(self.upper_exact))]
        return data


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
                    **case.box_json(),
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

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "") -> Property:
        """The property ``to_json`` wrote (numbers exact, as they were)."""
        return cls(
            int(data["n_inputs"]),
            int(data["n_outputs"]),
            tuple(_case_from_json(case) for case in data["cases"]),
            source,
        )

    def sha256(self) -> str:
        """A hash of the structure (not of the source text): equal properties hash equal."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _case_from_json(data: dict[str, Any]) -> Case:
    unsafe = tuple(
        Conjunction(
            tuple(
                HalfSpace(
                    tuple(Fraction(c) for c in h["coeffs"]), Fraction(h["rhs"]), bool(h["strict"])
                )
                for h in conjunction
            )
        )
        for conjunction in data["unsafe"]
    )
    return Case(
        tuple(Fraction(v) for v in data["lower"]),
        tuple(Fraction(v) for v in data["upper"]),
        unsafe,
        tuple(data.get("lower_strict", ())),
        tuple(data.get("upper_strict", ())),
    )
