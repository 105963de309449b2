"""Random chains (tests/chain_models.py) against the chain engine and the certificate
checker, with an oracle that shares no code with either (tests/chain_fuzz.py):

- the normal form and onnxruntime compute what the chain's float64 reference does (every
  folded spelling: consecutive Gemms, BatchNormalization, constants either side, reshapes);
- verify's verdicts with the thresholds just either side of the least margin an attack
  finds, under every option that changes the proof path and with the search's thresholds
  lowered (MODES) so that ReLU splitting, strong branching, phase LPs and z3 run on these
  small models: no `holds` a point refutes, no `violated` that does not replay, every
  `holds` certificate re-checks and the same certificate claiming a refuted threshold or a
  larger margin does not.

Then the regression this fuzzing found: a certificate's row multipliers were in the
engine's power-of-two scaled rows, the checker's in the rows as written (times the odd
denominators' multiple): proofs of rows like 2*Y_0 <= b or Y_0/3 + Y_1 <= b did not check.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnxruntime as ort
import pytest

from tests.chain_fuzz import MODES, check_verdict, instance, patched, vnnlib
from tests.chain_models import is_chain, random_chain
from tests.onnx_builders import to_bytes
from verifiers.certify.checker import check_model
from verifiers.components import OnnxComponent
from verifiers.model import load_model
from verifiers.options import Options
from verifiers.result import Verdict
from verifiers.spec.vnnlib import parse_vnnlib
from verifiers.verify import verify


@pytest.fixture(autouse=True)
def _quiet():
    """As verify runs the engine: overflow is handled where it matters (it fails closed)."""
    with np.errstate(all="ignore"):
        yield


@pytest.mark.parametrize("seed", range(0, 240, 6))
def test_chains_compute_the_reference(seed: int) -> None:
    d = random_chain(seed)
    data = to_bytes(d.model())
    model = load_model(data)
    n = int(np.prod(d.input_shape))
    x = np.random.default_rng(seed).uniform(-2, 2, (40, n))
    reference = d.reference(x)
    scale = 1.0 + np.abs(reference).max()
    # A LeakyRelu slope outside [0, 1) has no chain normal form: the graph engine's model.
    net = model.network if is_chain(d) else model.graph_network
    assert np.abs(net.evaluate(x) - reference).max() <= 1e-9 * scale
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    y = [session.run(None, {"x": xi.astype(np.float32).reshape(d.input_shape)})[0] for xi in x]
    assert np.abs(np.reshape(y, reference.shape) - reference).max() <= 1e-3 * scale


OPTION_SETS = [(True, False), (False, False), (True, True)]  # optimise_bounds, intermediate
MODE_NAMES = [m for m in MODES if m != "parallel"]


@pytest.mark.parametrize("seed", range(12))
def test_verdicts_near_the_boundary(seed: int) -> None:
    inst = instance(seed * 7 + 3)
    if inst is None:
        pytest.skip("no term's box holds a float point")
    mode = MODE_NAMES[seed % len(MODE_NAMES)]
    bounds, intermediate = OPTION_SETS[seed % len(OPTION_SETS)]
    for side, margin in ((1, 0.0), (-1, 0.0), (-1, 0.5 * inst.eps)):
        options = Options(
            timeout_s=0.3,
            optimise_bounds=bounds,
            optimise_intermediate=intermediate,
            margin=margin,
        )
        assert check_verdict(inst, side, options, mode) == []


# --- regressions -----------------------------------------------------------------------------

# (seed, mode, optimise_bounds): chains whose proofs weigh rows against ReLU phases: a
# combination with phase weights, split multipliers (betas), LP pieces.
SCALED_PROOFS = [(287, "relus-smt", False), (803, "relus-smt", True), (52, "smt", True)]
FACTORS = [Fraction(1), Fraction(2), Fraction(3), Fraction(1, 4), Fraction(250), Fraction(1, 3)]


@pytest.mark.parametrize(("seed", "mode", "bounds"), SCALED_PROOFS)
def test_certificates_check_however_the_rows_are_scaled(seed, mode, bounds) -> None:
    """The same property with every output row (and threshold) multiplied by a factor: the
    engine scales rows by powers of two, the checker by odd integers; a certificate states
    its multipliers for the rows as written and both read them so. Once none of these
    checked (their rows have coefficients like 1/3, 2, 250 already)."""
    inst = instance(seed)
    shift = inst.least - inst.eps
    options = Options(timeout_s=10, optimise_bounds=bounds, optimise_intermediate=False)
    for factor in FACTORS:
        prop = parse_vnnlib(vnnlib(inst.spec, len(inst.spec.lower), shift, factor))
        with patched(mode):
            result = verify(OnnxComponent(inst.data), prop, options)
        assert result.verdict is Verdict.HOLDS, (factor, result.reason)
        report = check_model(result.certificate, inst.model, prop)
        assert report.valid, (factor, report.message)
