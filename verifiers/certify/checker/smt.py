"""SMT leaves: the checker writes its own SMT-LIB2 query for the region and asks cvc5.

The query is built here from the model's weights (exact rationals of the floats), the
region (the case's exact box within the leaf's box, and its ReLU phases) and the property's
unsafe set, never taken from the certificate: a stored query could say anything. Neurons
that the checker's own bounds show stable are linear; the others are a disjunction of
their two pieces. A layer whose composition rounded gets a bounded slack per output.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

# cvc5 gets this long on one leaf before the leaf counts as not re-checked.
SMT_TIMEOUT_MS = 60_000


def _q(value) -> str:
    """An exact SMT-LIB2 rational."""
    f = Fraction(value)
    body = (
        f"(/ {abs(f.numerator)} {f.denominator})" if f.denominator != 1 else f"{abs(f.numerator)}"
    )
    return f"(- {body})" if f < 0 else body


def _affine(weight_row: np.ndarray, names: list[str | None], bias: float) -> str:
    terms = [f"(* {_q(float(w))} {n})" for w, n in zip(weight_row, names, strict=True) if w and n]
    terms.append(_q(float(bias)))
    return terms[0] if len(terms) == 1 else "(+ " + " ".join(terms) + ")"


def query(network, region, case, margin: Fraction, phases) -> str:
    """The SMT-LIB2 text: satisfiable iff some input of the region is unsafe."""
    lines = ["(set-logic QF_LRA)"]
    names: list[str | None] = []
    for i, (lo, hi) in enumerate(zip(region.lower, region.upper, strict=True)):
        low = max(Fraction(float(lo)), case.lower_exact[i])
        high = min(Fraction(float(hi)), case.upper_exact[i])
        lines.append(f"(declare-const x{i} Real)")
        lines.append(f"(assert (and (<= {_q(low)} x{i}) (<= x{i} {_q(high)})))")
        names.append(f"x{i}")
    phase_of = {(k, j): active for k, j, active in phases}
    for k, layer in enumerate(network.affine_layers):
        err = region.errors[k]
        last = k == len(network.affine_layers) - 1
        out: list[str | None] = []
        for j in range(layer.weight.shape[0]):
            z = f"y{j}" if last else f"z{k}_{j}"
            lines.append(f"(declare-const {z} Real)")
            expr = _affine(layer.weight[j], names, layer.bias[j])
            if err is None:
                lines.append(f"(assert (= {z} {expr}))")
            else:
                e = _q(float(err[j]))
                lines.append(f"(assert (and (<= (- {z} {expr}) {e}) (<= (- {expr} {z}) {e})))")
            if last:
                continue
            lo, hi = region.bounds[k]
            lines.append(f"(assert (and (<= {_q(float(lo[j]))} {z}) (<= {z} {_q(float(hi[j]))})))")
            if (k, j) in phase_of:
                lines.append(f"(assert ({'>=' if phase_of[(k, j)] else '<='} {z} 0))")
            out.append(
                _relu(lines, k, j, z, float(lo[j]), float(hi[j]), network.relu_layers[k].alpha)
            )
        names = out
    lines.append(f"(assert {_unsafe(case, margin)})")
    lines.append("(check-sat)")
    return "\n".join(lines) + "\n"


def _relu(lines, k, j, z, lo, hi, alpha) -> str | None:
    if hi <= 0.0 and alpha == 0.0:
        return None  # constantly 0: left out of the next layer
    r = f"r{k}_{j}"
    lines.append(f"(declare-const {r} Real)")
    a = _q(alpha)
    if lo >= 0.0:
        lines.append(f"(assert (= {r} {z}))")
    elif hi <= 0.0:
        lines.append(f"(assert (= {r} (* {a} {z})))")
    else:
        lines.append(
            f"(assert (or (and (>= {z} 0) (= {r} {z})) (and (<= {z} 0) (= {r} (* {a} {z})))))"
        )
    return r


def _unsafe(case, margin: Fraction) -> str:
    disjuncts = []
    for conjunction in case.unsafe:
        parts = []
        for h in conjunction.halfspaces:
            lhs = "(+ 0 " + " ".join(f"(* {_q(c)} y{i})" for i, c in enumerate(h.coeffs) if c) + ")"
            parts.append(f"({'<' if h.strict else '<='} {lhs} {_q(h.rhs + margin)})")
        disjuncts.append("(and true " + " ".join(parts) + ")")
    return "(or false " + " ".join(disjuncts) + ")"


def cvc5_answer(text: str, timeout_ms: int = SMT_TIMEOUT_MS) -> str:
    """'unsat', 'sat' or 'unknown' (cvc5, a second solver next to the search's z3)."""
    import cvc5

    tm = cvc5.TermManager()
    solver = cvc5.Solver(tm)
    solver.setOption("tlimit-per", str(timeout_ms))
    symbols = cvc5.SymbolManager(tm)
    parser = cvc5.InputParser(solver, symbols)
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text, "leaf")
    answer = ""
    while True:
        command = parser.nextCommand()
        if command.isNull():
            break
        answer = command.invoke(solver, symbols).strip() or answer
    return answer if answer in ("sat", "unsat") else "unknown"
