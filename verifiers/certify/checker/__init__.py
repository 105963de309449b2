"""The independent certificate checker (docs/certificate.md).

It shares nothing with the search but the ONNX loader (verifiers/model: the network's
weights, in their piecewise-linear normal form for the chain checker, as the graph IR for
the graph checker) and the property parser (verifiers/spec): no bound propagation, LP or
SMT code of the engine. Its arithmetic is exact (exact.py) or float64 with an a-priori
rounding bound (rigorous.py), its SMT solver is cvc5, not the search's z3, and its
Sigmoid/Tanh enclosures come from mpmath's interval arithmetic.
"""

from __future__ import annotations

from verifiers.certify.checker.check import Invalid, Report, check

# 2: certificate format v2, float64 intermediate bounds; 3: graph-engine certificates;
# 4: certificate format v3 (compact LP multipliers), an LP tree's pieces bounded together
CHECKER_VERSION = "proofwell-checker 4"

__all__ = ["CHECKER_VERSION", "Invalid", "Report", "check", "check_files", "check_model"]


def is_graph(certificate) -> bool:
    return isinstance(certificate, dict) and certificate.get("engine") == "graph"


def check_model(certificate, model, prop, on_progress=None, budget_s=None) -> Report:
    """Check a certificate (parsed JSON) against a loaded model with the checker its engine
    needs: the chain checker (Affine/ReLU normal form) or the graph checker (graph IR)."""
    if is_graph(certificate):
        from verifiers.certify.checker import graph_check

        return graph_check.check(
            certificate, model.graph, prop, model.sha256, on_progress, budget_s
        )
    from verifiers.errors import UnsupportedError

    try:
        network = model.network
    except UnsupportedError as exc:  # a chain certificate for a model that is no chain
        return Report(False, f"not a certificate for this model (no Affine/ReLU chain: {exc})")
    return check(certificate, network, prop, model.sha256, on_progress, budget_s)


def check_files(certificate, model_source, prop, on_progress=None) -> Report:
    """Check a certificate (parsed JSON) against a model (path or bytes) and a Property."""
    from verifiers.model import load_model

    return check_model(certificate, load_model(model_source), prop, on_progress)
