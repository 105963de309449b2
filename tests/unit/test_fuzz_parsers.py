"""Hypothesis over the parsers that read untrusted input: each either accepts or raises its
own typed error (a 4xx at the API), never anything else."""

from __future__ import annotations

import contextlib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api.routes.events import last_event_id
from service.budget import Budget, check_model
from service.errors import ServiceError
from service.worker.engine import check_relative_path
from tests.onnx_builders import dense_relu_model, to_bytes
from verifiers.errors import VerifierError
from verifiers.spec import parse_vnnlib

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
TOKENS = st.sampled_from(
    ["(", ")", "(", ")", "assert", "declare-const", "X_0", "X_1", "Y_0", "Y_1", "Real", "Int"]
    + ["and", "or", "<=", ">=", "<", ">", "=", "+", "-", "*", "/", "0", "1", "-1", "0.5"]
    + ["1e400", "nan", "inf", "1/0", ";", "\n", " ", '"', "|a b|", "#x1F", "X_99999999999"]
)


@FUZZ
@given(st.lists(TOKENS, max_size=60).map(" ".join))
def test_vnnlib_text_is_a_property_or_a_spec_error(text: str) -> None:
    try:
        parse_vnnlib(text, n_inputs=2, n_outputs=2)
    except VerifierError as exc:
        assert exc.message


@FUZZ
@given(st.text(max_size=300))
def test_any_text_is_a_property_or_a_spec_error(text: str) -> None:
    with contextlib.suppress(VerifierError):
        parse_vnnlib(text)


MODEL = to_bytes(
    dense_relu_model([np.eye(2, dtype=np.float32)] * 2, [np.zeros(2, dtype=np.float32)] * 2)
)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(MODEL) - 1), st.integers(0, 255)), max_size=8))
def test_corrupted_models_pass_the_budget_or_are_model_errors(flips: list[tuple[int, int]]) -> None:
    data = bytearray(MODEL)
    for index, value in flips:
        data[index] = value
    try:
        check_model(bytes(data), Budget())
    except VerifierError as exc:
        assert exc.message


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_are_model_errors(data: bytes) -> None:
    with contextlib.suppress(VerifierError):
        check_model(data, Budget())


@FUZZ
@given(st.one_of(st.none(), st.text(max_size=30), st.integers(0, 2**70).map(str)))
def test_last_event_ids_are_an_id_or_a_422(value: str | None) -> None:
    try:
        assert 0 <= last_event_id(value) < 2**63
    except ServiceError as exc:
        assert exc.status == 422


@FUZZ
@given(st.text(max_size=1200))
def test_system_paths_are_relative_files_or_value_errors(path: str) -> None:
    try:
        pure = check_relative_path(path)
    except ValueError:
        return
    assert not pure.is_absolute() and ".." not in pure.parts and len(path) <= 1024
