"""Where the shared benchmarks live, and a skip marker for when they are absent."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
VNNCOMP_TEST = SHARED / "vnncomp-test"
ACASXU = SHARED / "acasxu"

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"shared benchmarks absent ({SHARED})"
)
