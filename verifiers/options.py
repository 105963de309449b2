"""Verification options: one frozen object, overlaid with partial changes."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass


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

    def overlay(self, **changes: object) -> Options:
        """A copy with the given fields changed; unknown names are an error."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def cache_key(self) -> dict[str, object]:
        """The options that can change a verdict (workers and tree recording cannot)."""
        return {"timeout_s": self.timeout_s, "seed": self.seed, "margin": self.margin}
