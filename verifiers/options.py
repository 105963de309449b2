"""Verification options: one frozen object, overlaid with partial changes."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

from verifiers.errors import OptionsError

# Seeds are stored in BIGINT columns and fed to numpy and z3: non-negative 63-bit integers.
MAX_SEED = 2**63 - 1
MAX_WORKERS = 1024


def _check_number(name: str, value: object, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OptionsError(f"must be a number, not {value!r}", field=name)
    if not math.isfinite(value):
        raise OptionsError(f"must be finite, not {value!r}", field=name)
    if value < minimum:
        raise OptionsError(f"must be >= {minimum:g}, not {value!r}", field=name)


def _check_integer(name: str, value: object, minimum: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionsError(f"must be an integer, not {value!r}", field=name)
    if not minimum <= value <= maximum:
        raise OptionsError(f"must be between {minimum} and {maximum}, not {value!r}", field=name)


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Options:
    timeout_s: float = 60.0
    # Worker processes for the branch-and-bound search; 1 runs in this process.
    workers: int = 1
    seed: int = 0
    # Prove the property with this much room: every unsafe constraint a.y <= b is
    # checked as a.y <= b + margin, absorbing float32 rounding of a deployed network.
    margin: float = 0.0
    # Keep the branch-and-bound tree (regions, splits, leaf evidence) in the certificate.
    record_tree: bool = True
    # Optimised slopes and split multipliers (alpha/beta-CROWN) where ReLUs are split. A
    # leaf's certificate carries its objective row's slopes and multipliers (format v2).
    optimise_bounds: bool = True
    # Optimise the root's intermediate bounds too. Their slopes are not in the certificate
    # (one set per neuron), so the checker cannot re-derive what rests on them: off where
    # certificates are re-checked (the service's workers). The graph engine's optimised
    # slopes (not in its certificate either) follow this too.
    optimise_intermediate: bool = True

    def __post_init__(self) -> None:
        """One rule for every caller (CLI, API, gate, Python): a negative margin would prove
        a shrunken property, and NaN or inf make no sense for any of these."""
        _check_number("timeout_s", self.timeout_s, minimum=0.0)
        _check_number("margin", self.margin, minimum=0.0)
        _check_integer("workers", self.workers, 1, MAX_WORKERS)
        _check_integer("seed", self.seed, 0, MAX_SEED)

    def overlay(self, **changes: object) -> Options:
        """A copy with the given fields changed; unknown names are an error."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def cache_key(self) -> dict[str, object]:
        """The options that can change a verdict (workers and tree recording cannot)."""
        return {"timeout_s": self.timeout_s, "seed": self.seed, "margin": self.margin}
