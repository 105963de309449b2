"""The independent certificate checker (docs/certificate.md).

It shares nothing with the search but the ONNX loader (verifiers/model, for the network's
weights in their piecewise-linear normal form) and the property parser (verifiers/spec):
no bound propagation, LP or SMT code of the engine. Its arithmetic is exact (exact.py),
its SMT solver is cvc5, not the search's z3.
"""

from __future__ import annotations

from verifiers.certify.checker.check import Invalid, Report, check

CHECKER_VERSION = "proofwell-checker 2"  # 2: certificate format v2, float64 intermediate bounds

__all__ = ["CHECKER_VERSION", "Invalid", "Report", "check", "check_files"]


def check_files(certificate, model_source, prop, on_progress=None) -> Report:
    """Check a certificate (parsed JSON) against a model (path or bytes) and a Property."""
    from verifiers.model import load_model

    model = load_model(model_source)
    return check(certificate, model.network, prop, model.sha256, on_progress)
