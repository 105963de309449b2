"""Random DAGs with random multi-row properties (tests/graph_fuzz.py) against the graph
engine's certificates and the graph checker: every `holds` certificate made without
optimised intermediate bounds re-checks; the same certificate claiming a refuted threshold
or a larger margin, or with its multipliers negated, scaled or made up, does not; forged
trees (a split or a side dropped, a leaf claimed empty, another row, a moved split point)
are rejected wherever a sampled input refutes one of their leaves.

Then the regression this fuzzing found: element splits on S-shaped networks prove their
regions with split multipliers (search/graph_beta.py) that graph certificates did not carry,
so the checker, bounding without them, rejected such proofs (whatever the rows'
coefficients). Certificates (graph version 2) now state them per row proof (`gammas`), for
the half-space as written: the engine's rows are scaled by powers of two, the checker's by
odd integers. With them, proofs still failed where the checker's Sigmoid/Tanh lines were
looser than the search's (its own slope heuristic): it now takes the search's slopes.
"""

from __future__ import annotations

import copy
import functools
from fractions import Fraction

import numpy as np
import pytest

from tests.chain_fuzz import vnnlib
from tests.graph_fuzz import _nodes, check_graph, instance, patched, run
from verifiers.bounds.graph.ops.sshaped import SShaped
from verifiers.certify.checker import check_model, graph_lines
from verifiers.components import OnnxComponent
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.spec.vnnlib import parse_vnnlib
from verifiers.verify import verify


@pytest.fixture(autouse=True)
def _quiet():
    """As verify runs the engine: overflow is handled where it matters (it fails closed)."""
    with np.errstate(all="ignore"):
        yield


# (seed, mode, optimise_bounds, forge): DAGs whose proofs split elements (with split
# multipliers on S-shaped ones), max cases or the box; seed 9's tree (an S-shaped output)
# is large: its forgeries cost 20 s, so it only re-checks.
CASES = [
    (1, "element", True, True),
    (9, "element", True, False),
    (13, "strong", True, True),
    (6, "element", False, True),
    (7, "box", True, True),
    (40, "box", False, True),  # a ReLU with u = -l: lines tie; the checker keeps the search's
]


@pytest.mark.parametrize(("seed", "mode", "bounds", "forge"), CASES)
def test_graph_certificates_check_and_forgeries_fail(seed, mode, bounds, forge) -> None:
    inst = instance(seed)
    assert inst is not None
    options = Options(timeout_s=1.0, optimise_bounds=bounds, optimise_intermediate=False)
    assert check_graph(inst, -1, options, mode, must_hold=True, forge=forge) == []


@pytest.mark.parametrize("function", ["Sigmoid", "Tanh"])
def test_the_checker_takes_the_searchs_sshaped_slopes(function: str) -> None:
    """The checker computes its Sigmoid/Tanh lines' slopes as the search does (its own
    float code; intercepts rigorous for any slope): once it chose among the chord and three
    tangents by their value at the midpoint, missed CROWN's tangent through the far end on
    mixed intervals, and rejected proofs the search's lines made (seed 9 above)."""
    rng = np.random.default_rng(5)
    op = SShaped(function)
    for _ in range(400):
        a, b = np.sort(rng.normal(scale=rng.choice([0.1, 1.0, 4.0, 30.0]), size=2))
        (low, _), (high, _) = op._lines(np.array([a]), np.array([b]))
        mine = graph_lines._slopes(function, float(a), float(b))
        assert np.allclose(mine, [low[0], high[0]], rtol=1e-6, atol=1e-300), (a, b)


FACTORS = [Fraction(1), Fraction(2), Fraction(3), Fraction(1, 4), Fraction(250), Fraction(1, 3)]


@pytest.mark.parametrize("factor", FACTORS)
def test_split_multipliers_check_however_the_rows_are_scaled(factor: Fraction) -> None:
    """Rows like Y_0/3 and -250*Y_0 (seed 1), each times a factor: a Sigmoid network whose
    element-split leaves need their split multipliers. Once none of these checked."""
    inst = _seed_one()[0]
    shift = inst.least - inst.eps
    prop = parse_vnnlib(vnnlib(inst.spec, len(inst.spec.lower), shift, factor))
    with patched("element"):
        options = Options(timeout_s=10, optimise_intermediate=False)
        result = verify(OnnxComponent(inst.data), prop, options)
    assert result.verdict is Verdict.HOLDS, result.reason
    report = check_model(result.certificate, inst.model, prop)
    assert report.valid, report.message
    assert "'gammas'" in str(result.certificate)  # the proofs do rest on multipliers


FAST = Options(timeout_s=1.0, optimise_intermediate=False)
MALFORMED = [
    "not a list",
    [["nope", 0, 1.0]],
    [["t0", 10_000, 1.0]],
    [["t0", -1, 1.0]],
    [["t0", True, 1.0]],
    [["t0", 0, float("inf")]],
    [["t0", 0, "1"]],
    [["t0", 0]],
]


@functools.cache
def _seed_one():
    inst = instance(1)
    prop, result = run(inst, inst.least - inst.eps, FAST, "element")
    return inst, prop, result.certificate


@pytest.mark.parametrize("gammas", MALFORMED)
def test_malformed_multipliers_fail_closed(gammas) -> None:
    inst, prop, cert = _seed_one()
    forged = copy.deepcopy(cert)
    leaf = next(n for _, n in _nodes(forged["cases"][0]["tree"]) if "proofs" in n)
    leaf["proofs"][0]["gammas"] = gammas
    assert not check_model(forged, inst.model, prop).valid
