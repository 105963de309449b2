"""A property is parsed once, at submission: the API stores the parse, and the job page
reads it back instead of parsing the source again."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.dashboard import views
from service.store.cache import digest
from service.store.parsed import load_parsed, parsed_key
from tests.fixtures import VNNCOMP_TEST
from verifiers.spec import parse_preset, parse_vnnlib
from verifiers.spec.property import Property

TEXTS = [
    (VNNCOMP_TEST / "test_prop.vnnlib").read_text(),
    """(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (> X_0 0.1))
(assert (<= X_0 0.3333))
(assert (or (and (>= X_1 -2) (< X_1 1e-3)) (and (>= X_1 5) (<= X_1 6))))
(assert (or (and (<= Y_0 Y_1) (< Y_0 0.5)) (>= (- Y_1 Y_0) 7.25)))
""",
]


@pytest.mark.parametrize("text", TEXTS)
def test_a_stored_parse_reads_back_as_the_same_property(text: str) -> None:
    parsed = parse_vnnlib(text)
    again = Property.from_json(parsed.to_json(), text)
    assert again == parsed
    assert again.sha256() == parsed.sha256()


def test_a_stored_preset_reads_back_as_the_same_property() -> None:
    preset = {"kind": "linf_robustness", "center": [0.5, 0.25], "epsilon": 0.125, "label": 1}
    parsed = parse_preset(preset, n_inputs=2, n_outputs=3)
    assert Property.from_json(parsed.to_json(), parsed.source) == parsed


def test_the_job_page_shows_the_property_without_parsing_it(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (VNNCOMP_TEST / "test_unsat.onnx").read_bytes()
    artefact = client.post("/v1/artefacts", files={"file": ("m.onnx", data)}).json()["id"]
    declare = "".join(f"(declare-const {v}_{i} Real)\n" for v in "XY" for i in range(5))
    box = "".join(f"(assert (>= X_{i} 0))\n(assert (<= X_{i} 0.5))\n" for i in range(1, 5))
    two_cases = "(assert (or (and (>= X_0 -1) (< X_0 0)) (and (>= X_0 5) (<= X_0 6))))\n"
    unsafe = "(assert (or (and (<= Y_0 Y_1) (< Y_0 0.5)) (>= (- Y_1 Y_0) 7.25)))\n"
    prop = {"vnnlib": declare + box + two_cases + unsafe}
    r = client.post("/v1/jobs", json={"artefact": artefact, "property": prop})
    assert r.status_code == 202, r.text
    services = client.app.state.services  # type: ignore[attr-defined]
    info = services.artefacts.get(artefact)
    sizes = (int(info.meta["n_inputs"]), int(info.meta["n_outputs"]))
    stored = load_parsed(services.db, parsed_key(digest(prop), sizes))
    assert stored == parse_vnnlib(prop["vnnlib"]).to_json()

    def no_parsing(*_: object) -> None:
        raise AssertionError("the page parsed the property again")

    views._PARSED.clear()
    monkeypatch.setattr(views, "_parse", no_parsing)
    html = client.get(f"/jobs/{r.json()['id']}").text
    assert "X_0" in html and "[5, 6]" in html  # the second case's box, from the stored parse
