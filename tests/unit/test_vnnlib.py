"""VNN-LIB parsing: the shared benchmarks, exact structure, locations of errors, round trips."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verifiers.errors import SpecError
from verifiers.spec import Case, Conjunction, HalfSpace, Property, parse_vnnlib, to_vnnlib
from verifiers.spec.sexpr import Atom, SList, read_sexprs
from verifiers.spec.vnnlib import MAX_DNF_TERMS

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "benchmarks"  # VNN-COMP's files, when they sit beside us
VNNLIB_FILES = sorted(
    [*ROOT.glob("examples/**/*.vnnlib"), *ROOT.glob("tests/fixtures/**/*.vnnlib")]
    + (sorted(SHARED.glob("*/*.vnnlib")) if SHARED.is_dir() else [])
)

F = Fraction
ACAS_DECLS = "\n".join(
    [f"(declare-const X_{i} Real)" for i in range(5)]
    + [f"(declare-const Y_{i} Real)" for i in range(5)]
)


def load(text: str) -> Property:
    return parse_vnnlib(text, source="acas.vnnlib")


def unit(*pairs: tuple[int, int], n: int = 5) -> tuple[Fraction, ...]:
    coeffs = [F(0)] * n
    for index, value in pairs:
        coeffs[index] = F(value)
    return tuple(coeffs)


def error_of(text: str, **kwargs: int) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_vnnlib(text, source="t.vnnlib", **kwargs)
    return info.value


# --- files in VNN-COMP's layout --------------------------------------------------------------


@pytest.mark.parametrize("path", VNNLIB_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_vnnlib_file_parses_and_round_trips(path: Path) -> None:
    prop = parse_vnnlib(path.read_text(), source=str(path))
    assert prop.cases
    assert all(not case.is_empty() for case in prop.cases)
    again = parse_vnnlib(to_vnnlib(prop))
    assert again.cases == prop.cases
    assert again.sha256() == prop.sha256()


def test_the_shipped_files_are_found() -> None:
    assert len([p for p in VNNLIB_FILES if SHARED not in p.parents]) >= 10


# ACAS Xu's properties as VNN-COMP writes them: one assert per bound, `or` of `and`s.
def acas(inputs: str, outputs: str) -> str:
    return f"; ACAS Xu style\n{ACAS_DECLS}\n{inputs}\n{outputs}\n"


def bounds(*pairs: tuple[str, str]) -> str:
    return "\n".join(
        f"(assert (<= X_{i} {hi}))\n(assert (>= X_{i} {lo}))" for i, (lo, hi) in enumerate(pairs)
    )


PROP_1_BOX = bounds(
    ("0.6", "0.679857769"), ("-0.5", "0.5"), ("-0.5", "0.5"), ("0.45", "0.5"), ("-0.5", "-0.45")
)
PROP_3_BOX = bounds(
    ("-0.303531156", "-0.298552812"),
    ("-0.009549297", "0.009549297"),
    ("0.493380324", "0.5"),
    ("0.3", "0.5"),
    ("0.3", "0.5"),
)
COC_MINIMAL = "\n".join(f"(assert (<= Y_0 Y_{j}))" for j in range(1, 5))


def test_acas_prop_1_structure() -> None:
    prop = load(acas(PROP_1_BOX, "(assert (>= Y_0 3.991125645861615))"))
    assert (prop.n_inputs, prop.n_outputs, len(prop.cases)) == (5, 5, 1)
    case = prop.cases[0]
    assert case.lower_exact == (F("0.6"), F("-0.5"), F("-0.5"), F("0.45"), F("-0.5"))
    assert case.upper_exact == (F("0.679857769"), F("0.5"), F("0.5"), F("0.5"), F("-0.45"))
    assert case.unsafe == (Conjunction((HalfSpace(unit((0, -1)), -F("3.991125645861615")),)),)


def test_acas_prop_2_is_one_conjunction_of_four() -> None:
    outputs = "\n".join(f"(assert (<= Y_{j} Y_0))" for j in range(1, 5))
    (case,) = load(acas(PROP_1_BOX, outputs)).cases
    (conjunction,) = case.unsafe
    assert conjunction.halfspaces == tuple(
        HalfSpace(unit((j, 1), (0, -1)), F(0)) for j in range(1, 5)
    )


def test_acas_prop_3_minimal_coc() -> None:
    (case,) = load(acas(PROP_3_BOX, COC_MINIMAL)).cases
    (conjunction,) = case.unsafe
    assert conjunction.halfspaces == tuple(
        HalfSpace(unit((0, 1), (j, -1)), F(0)) for j in range(1, 5)
    )
    assert case.upper_exact[3:] == (F("0.5"), F("0.5"))
    assert case.lower_exact[3:] == (F("0.3"), F("0.3"))


def test_long_decimals_are_read_exactly() -> None:
    box = bounds(
        ("-0.30353115613746867", "-0.29855281193475053"),
        ("-0.1", "0.1"),
        ("0.4933803235848431", "0.49999999998567607"),
        ("0.3", "0.5"),
        ("0.3", "0.5"),
    )
    (case,) = load(acas(box, COC_MINIMAL)).cases
    assert case.upper_exact[0] == F("-0.29855281193475053")
    assert case.lower_exact[2] == F("0.4933803235848431")
    assert case.upper_exact[2] == F("0.49999999998567607")


def test_acas_prop_4_point_bound() -> None:
    box = bounds(
        ("-0.303531156", "-0.298552812"),
        ("-0.009549297", "0.009549297"),
        ("0.0", "0.0"),
        ("0.318181818", "0.5"),
        ("0.083333333", "0.166666667"),
    )
    (case,) = load(acas(box, COC_MINIMAL)).cases
    assert case.lower_exact[2] == case.upper_exact[2] == 0
    assert case.lower_exact[4] == F("0.083333333")
    assert len(case.unsafe) == 1 and len(case.unsafe[0].halfspaces) == 4


def box_and(lows: list[str], highs: list[str]) -> str:
    return (
        "(and "
        + " ".join(
            f"(<= X_{i} {hi}) (>= X_{i} {lo})"
            for i, (lo, hi) in enumerate(zip(lows, highs, strict=True))
        )
        + ")"
    )


def test_acas_prop_6_two_boxes_four_disjuncts_each() -> None:
    lows = ["-0.129289109", "0.11140846", "-0.499999896", "-0.5", "-0.5"]
    highs = ["0.700434925", "0.499999896", "-0.499204121", "0.5", "0.5"]
    mirrored_lows = [*lows[:1], "-0.499999896", *lows[2:]]
    mirrored_highs = [*highs[:1], "-0.11140846", *highs[2:]]
    inputs = (
        f"(assert (or\n    {box_and(lows, highs)}\n    {box_and(mirrored_lows, mirrored_highs)}\n))"
    )
    outputs = "(assert (or\n" + "".join(f"    (and (<= Y_{j} Y_0))\n" for j in range(1, 5)) + "))"
    prop = load(acas(inputs, outputs))
    assert [len(case.unsafe) for case in prop.cases] == [4, 4]
    assert prop.cases[0].lower_exact[1] == F("0.11140846")
    assert prop.cases[1].upper_exact[1] == F("-0.11140846")


def test_acas_prop_7_one_case_two_conjunctions() -> None:
    outputs = (
        "(assert (or\n"
        "    (and (<= Y_3 Y_0) (<= Y_3 Y_1) (<= Y_3 Y_2))\n"
        "    (and (<= Y_4 Y_0) (<= Y_4 Y_1) (<= Y_4 Y_2))\n))"
    )
    (case,) = load(acas(PROP_1_BOX, outputs)).cases
    assert [len(c.halfspaces) for c in case.unsafe] == [3, 3]


# --- structure from inline text ----------------------------------------------------------------

BOX = "(assert (<= X_0 1)) (assert (>= X_0 -1))"


def one_output(extra: str, n_out: int = 1) -> Property:
    decls = "(declare-const X_0 Real)" + "".join(
        f"(declare-const Y_{j} Real)" for j in range(n_out)
    )
    return parse_vnnlib(decls + BOX + extra)


def test_or_of_outputs_with_the_same_box_is_one_case() -> None:
    text = ACAS_DECLS + "".join(f"(assert (<= X_{i} 1)) (assert (>= X_{i} 0))" for i in range(5))
    text += "(assert (or " + " ".join(f"(<= Y_{j} Y_0)" for j in range(1, 5)) + "))"
    (case,) = parse_vnnlib(text).cases
    assert len(case.unsafe) == 4
    assert all(len(c.halfspaces) == 1 for c in case.unsafe)


def test_or_inside_and_with_the_box_in_each_disjunct_merges() -> None:
    text = (
        ACAS_DECLS
        + "(assert (or "
        + " ".join(
            "(and " + " ".join(f"(<= X_{i} 1) (>= X_{i} 0)" for i in range(5)) + f" (<= Y_{j} Y_0))"
            for j in range(1, 5)
        )
        + "))"
    )
    (case,) = parse_vnnlib(text).cases
    assert len(case.unsafe) == 4


def test_numbers_are_exact_including_scientific_notation() -> None:
    prop = parse_vnnlib(
        "(declare-const X_0 Real)(declare-const Y_0 Real)"
        "(assert (>= X_0 -2.5E+2)) (assert (<= X_0 1e-3)) (assert (<= Y_0 .1))"
    )
    (case,) = prop.cases
    assert case.lower_exact == (F(-250),)
    assert case.upper_exact == (F(1, 1000),)
    assert case.unsafe[0].halfspaces == (HalfSpace((F(1),), F(1, 10)),)


def test_linear_arithmetic_is_normalised_to_the_unsafe_side() -> None:
    prop = one_output("(assert (>= (+ (* 2 Y_0) (- Y_1) 3) (* 0.5 4 Y_1)))", n_out=2)
    # 2 y0 - y1 + 3 >= 2 y1  <=>  -2 y0 + 3 y1 <= 3
    assert prop.cases[0].unsafe[0].halfspaces == (HalfSpace((F(-2), F(3)), F(3)),)


def test_subtraction_division_and_unary_minus() -> None:
    prop = one_output("(assert (< (- Y_0 (/ Y_1 4) 1) (- 2)))", n_out=2)
    assert prop.cases[0].unsafe[0].halfspaces == (HalfSpace((F(1), F(-1, 4)), F(-1), True),)


def test_strict_and_greater_than() -> None:
    prop = one_output("(assert (> Y_0 5))")
    assert prop.cases[0].unsafe[0].halfspaces == (HalfSpace((F(-1),), F(-5), strict=True),)


def test_equality_on_outputs_is_two_halfspaces() -> None:
    prop = one_output("(assert (= Y_0 2))")
    assert prop.cases[0].unsafe[0].halfspaces == (
        HalfSpace((F(1),), F(2)),
        HalfSpace((F(-1),), F(-2)),
    )


def test_equality_on_inputs_sets_both_bounds() -> None:
    prop = parse_vnnlib("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (= X_0 0.25))")
    assert prop.cases[0].lower_exact == prop.cases[0].upper_exact == (F(1, 4),)


def test_scaled_input_bound() -> None:
    prop = parse_vnnlib(
        "(declare-const X_0 Real)(declare-const Y_0 Real)"
        "(assert (<= (* -2 X_0) 1)) (assert (<= (+ X_0 X_0) 3))"
    )
    assert prop.cases[0].lower_exact == (F(-1, 2),)
    assert prop.cases[0].upper_exact == (F(3, 2),)


def test_chained_relation() -> None:
    prop = parse_vnnlib("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= -1 X_0 2))")
    assert (prop.cases[0].lower_exact, prop.cases[0].upper_exact) == ((F(-1),), (F(2),))


def test_empty_boxes_are_dropped() -> None:
    prop = parse_vnnlib(
        "(declare-const X_0 Real)(declare-const Y_0 Real)"
        "(assert (or (and (>= X_0 2) (<= X_0 1)) (and (>= X_0 0) (< X_0 0))"
        "            (and (>= X_0 0) (<= X_0 1))))"
        "(assert (>= Y_0 0))"
    )
    assert len(prop.cases) == 1
    assert prop.cases[0].upper_exact == (F(1),)


def test_constant_atoms_and_true_false() -> None:
    prop = one_output("(assert (or false (and true (<= 0 1) (>= Y_0 1)) (and (< 1 0) (>= Y_0 9))))")
    assert prop.cases[0].unsafe[0].halfspaces == (HalfSpace((F(-1),), F(-1)),)


def test_no_output_constraint_means_the_whole_box_is_unsafe() -> None:
    prop = one_output("")
    assert prop.cases[0].unsafe == (Conjunction(()),)


def test_sizes_are_checked_when_given() -> None:
    text = "(declare-const X_0 Real)(declare-const Y_0 Real)" + BOX
    assert parse_vnnlib(text, n_inputs=1, n_outputs=1).n_inputs == 1
    assert "model has 3" in error_of(text, n_inputs=3).message
    assert "model has 2" in error_of(text, n_outputs=2).message


def test_sha256_ignores_formatting_but_not_values() -> None:
    a = one_output("(assert (>= Y_0 1))")
    b = one_output(" ; comment\n(assert (<= 1 Y_0))")
    c = one_output("(assert (>= Y_0 2))")
    assert a.sha256() == b.sha256() != c.sha256()
    assert a.to_json()["cases"][0]["upper"] == ["1"]


# --- the s-expression reader -------------------------------------------------------------------


def test_reader_tracks_line_and_column() -> None:
    (form,) = read_sexprs("; c\n  (assert\n\t(<= X_0 -1e-3)) ; end")
    assert isinstance(form, SList) and (form.line, form.column) == (2, 3)
    relation = form.items[1]
    assert isinstance(relation, SList) and (relation.line, relation.column) == (3, 2)
    literal = relation.items[2]
    assert isinstance(literal, Atom)
    assert (literal.line, literal.column, literal.number) == (3, 10, F(-1, 1000))


# --- errors point at the right line and column -------------------------------------------------

DECLS = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"

ERRORS = [
    ("unclosed", DECLS + "(assert (<= X_0 1)\n(assert (>= X_0 0))", 3, 1, "never closed"),
    ("extra close", DECLS + "(assert (<= X_0 1)))", 3, 20, "unexpected ')'"),
    ("bad number", DECLS + "(assert (<= X_0 1.2.3))", 3, 17, "bad number"),
    ("bad exponent", DECLS + "(assert (<= X_0 1e))", 3, 17, "bad number"),
    ("huge exponent", DECLS + "(assert (<= X_0 1e999999999))", 3, 17, "out of range"),
    ("unknown op", DECLS + "(assert (<= X_0 1))\n  (assert (not (<= Y_0 1)))", 4, 12, "'not'"),
    ("unknown term op", DECLS + "(assert (<= (exp X_0) 1))", 3, 14, "'exp'"),
    ("undeclared", DECLS + "(assert (<= X_0 1))\n(assert (<= Y_1 2))", 4, 13, "undeclared"),
    ("unknown symbol", DECLS + "(assert (<= X_0 foo))", 3, 17, "unknown symbol 'foo'"),
    ("nonlinear", DECLS + BOX + "\n(assert (<= (* Y_0 Y_0) 1))", 4, 13, "nonlinear"),
    ("nonlinear /", DECLS + BOX + "\n(assert (<= (/ 1 Y_0) 1))", 4, 13, "nonlinear"),
    ("divide by 0", DECLS + BOX + "\n(assert (<= (/ Y_0 0) 1))", 4, 13, "division by zero"),
    ("missing upper", DECLS + "(assert (>= X_0 -1))", 1, 16, "X_0 has no upper bound"),
    ("missing lower", "\n" + DECLS + "(assert (<= X_0 1))", 2, 16, "X_0 has no lower bound"),
    ("mixed X and Y", DECLS + BOX + "\n(assert (<= X_0 Y_0))", 4, 9, "mixing inputs"),
    (
        "relational inputs",
        "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)\n"
        + BOX
        + " (assert (<= X_1 1)) (assert (>= X_1 0))\n(assert (<= X_0 X_1))",
        3,
        9,
        "X_0, X_1",
    ),
    ("not Real", "(declare-const X_0 Int)", 1, 20, "Real"),
    ("bad name", "(declare-const Z Real)", 1, 16, "only X_i"),
    ("twice", DECLS + "(declare-const X_0 Real)", 3, 16, "declared twice"),
    ("gap", DECLS + "(declare-const X_2 Real)", 3, 16, "X_1 is not"),
    ("unknown command", DECLS + "(push 1)", 3, 2, "unknown command"),
    ("atom at top", DECLS + "X_0", 3, 1, "expected a command"),
    ("one-argument relation", DECLS + "(assert (<= X_0))", 3, 9, "at least two"),
    ("assert arity", DECLS + "(assert (<= X_0 1) (<= X_0 2))", 3, 1, "exactly one formula"),
    ("number as operator", DECLS + "(assert (1 X_0))", 3, 9, "expected an operator"),
    ("deep nesting", "(" * 300 + ")" * 300, 1, 201, "nesting deeper"),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_errors_carry_line_and_column(text: str, line: int, column: int, fragment: str) -> None:
    error = error_of(text)
    assert fragment in error.message
    assert (error.source, error.line, error.column) == ("t.vnnlib", line, column)
    assert str(error).startswith(f"t.vnnlib:{line}:{column}: ")


def test_dnf_blow_up_is_refused() -> None:
    disjunction = "(assert (or (>= Y_0 1) (>= Y_0 2) (>= Y_0 3) (>= Y_0 4) (>= Y_0 5)))"
    text = DECLS + BOX + "\n" + "\n".join([disjunction] * 7)  # 5**7 > MAX_DNF_TERMS
    assert MAX_DNF_TERMS < 5**7
    error = error_of(text)
    assert "DNF terms" in error.message and error.line is not None


# --- round trips -------------------------------------------------------------------------------

fractions = st.fractions(min_value=-1000, max_value=1000, max_denominator=10**6)


@st.composite
def properties(draw: st.DrawFn) -> Property:
    n_in = draw(st.integers(1, 4))
    n_out = draw(st.integers(1, 4))
    cases = []
    for _ in range(draw(st.integers(1, 3))):
        lower = draw(st.lists(fractions, min_size=n_in, max_size=n_in))
        widths = draw(st.lists(st.fractions(0, 10), min_size=n_in, max_size=n_in))
        conjunctions = []
        for _ in range(draw(st.integers(1, 3))):
            halfspaces = []
            for _ in range(draw(st.integers(1, 3))):
                coeffs = draw(st.lists(fractions, min_size=n_out, max_size=n_out))
                if not any(coeffs):
                    coeffs[0] = F(1)
                halfspace = HalfSpace(tuple(coeffs), draw(fractions), draw(st.booleans()))
                if halfspace not in halfspaces:
                    halfspaces.append(halfspace)
            conjunction = Conjunction(tuple(halfspaces))
            if conjunction not in conjunctions:
                conjunctions.append(conjunction)
        upper = tuple(lo + w for lo, w in zip(lower, widths, strict=True))
        box = (tuple(lower), upper)
        if all(box != (c.lower_exact, c.upper_exact) for c in cases):
            cases.append(Case(box[0], box[1], tuple(conjunctions)))
    return Property(n_in, n_out, tuple(cases))


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(properties())
def test_random_properties_round_trip_exactly(prop: Property) -> None:
    again = parse_vnnlib(to_vnnlib(prop), n_inputs=prop.n_inputs, n_outputs=prop.n_outputs)
    assert again.cases == prop.cases
    assert again.sha256() == prop.sha256()
