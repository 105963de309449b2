"""The typed answer of a z3 query, importable without z3.

The search imports this at start-up; z3 itself (~30-45 ms to import) is loaded only when a
query is made, which most instances never do.
"""

from __future__ import annotations

from enum import StrEnum


class SatOutcome(StrEnum):
    SAT = "sat"
    UNSAT = "unsat"
    UNKNOWN = "unknown"
