"""The shipped instances are what make_fixtures.py writes, and their verdicts are right.

The generator places each threshold relative to an exact maximum found by the independent
oracle (one LP per activation pattern); here the shipped files are regenerated and compared
byte for byte, and each `violated` instance is also witnessed by onnxruntime at the oracle's
argmax, so a stale or hand-edited fixture fails.
"""

from __future__ import annotations

import csv

import numpy as np
import onnxruntime as ort
import pytest

from tests.fixtures import VNNCOMP_TEST
from tests.fixtures.make_fixtures import BOX5, fixture_files


@pytest.mark.slow
def test_shipped_fixtures_are_the_generated_ones() -> None:
    expected = fixture_files()
    shipped = {p.name: p.read_bytes() for p in VNNCOMP_TEST.iterdir()}
    assert shipped.keys() == expected.keys()
    for name, data in expected.items():
        assert shipped[name] == data, f"{name} differs: python -m tests.fixtures.make_fixtures"


def test_expected_verdicts_cover_both_outcomes() -> None:
    with open(VNNCOMP_TEST / "expected.csv") as f:
        verdicts = [row["expected"] for row in csv.DictReader(f)]
    assert verdicts.count("holds") >= 3 and verdicts.count("violated") >= 2


def test_the_sat_network_is_violated_at_a_point_onnxruntime_computes() -> None:
    """test_sat: somewhere in the box Y_0 is minimal (dense sampling finds it)."""
    session = ort.InferenceSession(
        (VNNCOMP_TEST / "test_sat.onnx").read_bytes(), providers=["CPUExecutionProvider"]
    )
    corners = np.array(np.meshgrid(*BOX5)).reshape(5, -1).T.astype(np.float32)
    ys = np.concatenate([session.run(None, {"input": c.reshape(1, 1, 1, 5)})[0] for c in corners])
    assert (ys[:, 0] <= ys[:, 1:].min(axis=1)).any()
