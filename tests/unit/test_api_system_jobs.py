"""System jobs over HTTP on SQLite with the real engine: a SYSTEM.json as the property, every
file it names mapped to an uploaded artefact; verdicts, cache, and the 404/422 paths."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.unit.test_api_jobs import wait_done

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PROBLEM = "application/problem+json"


def upload(client: TestClient, path: Path) -> str:
    r = client.post("/v1/artefacts", files={"file": (path.name, path.read_bytes())})
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def equivalence(name: str = "SYSTEM.json") -> dict[str, Any]:
    """The example with the reference beside the network (the API takes no `..` paths)."""
    system = json.loads((EXAMPLES / "equivalence" / name).read_text())
    system["reference"]["module"] = "reference/controller.py"
    return dict(system)


def mapping(client: TestClient) -> dict[str, str]:
    return {
        "controller_net.onnx": upload(client, EXAMPLES / "equivalence" / "controller_net.onnx"),
        "reference/controller.py": upload(client, EXAMPLES / "controller" / "controller.py"),
    }


def post(client: TestClient, system: dict[str, Any], files: dict[str, str], **extra: Any) -> Any:
    body = {"property": {"system": system}, "artefacts": files, "options": {"timeout_s": 60}}
    return client.post("/v1/jobs", json={**body, **extra})


def problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    return dict(r.json())


@pytest.mark.slow
def test_equivalence_holds_and_fails_and_is_cached(client: TestClient, worker: object) -> None:
    files = mapping(client)
    r_holds, r_fails = (
        post(client, equivalence(), files),
        post(client, equivalence("SYSTEM_fails.json"), files),
    )
    assert r_holds.status_code == 202 and r_fails.status_code == 202, r_holds.text + r_fails.text
    held, broken = r_holds.json(), r_fails.json()
    assert held["artefact"] == files["controller_net.onnx"]  # listed under the network
    held, broken = wait_done(client, held["id"], 90), wait_done(client, broken["id"], 90)
    assert (held["status"], held["verdict"]) == ("done", "holds"), held
    assert (broken["status"], broken["verdict"]) == ("done", "violated"), broken
    assert len(broken["counterexample"]["inputs"]) == 2
    assert client.get(f"/v1/jobs/{held['id']}/certificate").status_code == 200
    page = client.get(f"/jobs/{broken['id']}")
    assert page.status_code == 200 and "A composed system" in page.text
    assert "epsilon" in page.text  # the system JSON is shown, not `null`
    again = post(client, equivalence(), dict(reversed(files.items())))
    assert again.status_code == 202
    assert (again.json()["verdict"], again.json()["cached"]) == ("holds", True)
    # Other bytes under the same path are other work.
    other = dict(files, **{"reference/controller.py": upload_text(client, "edited")})
    r = post(client, equivalence(), other)
    assert r.status_code == 202 and r.json()["cached"] is False
    client.delete(f"/v1/jobs/{r.json()['id']}")


def upload_text(client: TestClient, marker: str) -> str:
    source = (EXAMPLES / "controller" / "controller.py").read_text() + f"\n# {marker}\n"
    r = client.post("/v1/artefacts", files={"file": ("controller.py", source.encode())})
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def test_unknown_artefact_is_404(client: TestClient) -> None:
    files = mapping(client)
    files["reference/controller.py"] = "0" * 64
    body = problem(post(client, equivalence(), files), 404)
    assert body["errors"][0]["pointer"] == "/artefacts/reference~1controller.py"


def test_a_named_file_without_an_artefact_is_422(client: TestClient) -> None:
    files = mapping(client)
    del files["reference/controller.py"]
    body = problem(post(client, equivalence(), files), 422)
    assert body["errors"][0]["pointer"] == "/property/system/reference/module"
    assert "reference/controller.py" in body["detail"]


def test_closed_loop_components_are_pointed_at(client: TestClient) -> None:
    system = json.loads((EXAMPLES / "closed_loop" / "SYSTEM.json").read_text())
    system["components"]["controller"]["onnx"] = "controller_net.onnx"
    net = upload(client, EXAMPLES / "equivalence" / "controller_net.onnx")
    body = problem(post(client, system, {"controller_net.onnx": net}), 422)
    assert body["errors"][0]["pointer"] == "/property/system/components/plant/module"


def test_unsafe_paths_and_stray_files_are_422(client: TestClient) -> None:
    files = mapping(client)
    for bad in ("../controller/controller.py", "/etc/controller.py", "a/../../x.py"):
        system = equivalence()
        system["reference"]["module"] = bad
        body = problem(post(client, system, {**files, bad: files["reference/controller.py"]}), 422)
        assert body["errors"][0]["pointer"].startswith("/artefacts/"), body
    body = problem(
        post(client, equivalence(), {**files, "extra.py": files["controller_net.onnx"]}), 422
    )
    assert body["errors"][0]["pointer"] == "/artefacts/extra.py"


def test_the_system_is_parsed_at_submit(client: TestClient) -> None:
    files = mapping(client)
    system = equivalence()
    system["box"] = {"speed": [0, 20]}
    assert problem(post(client, system, files), 422)["errors"][0]["pointer"] == (
        "/property/system/box"
    )
    swapped = {
        "controller_net.onnx": files["reference/controller.py"],
        "reference/controller.py": files["controller_net.onnx"],
    }
    body = problem(post(client, equivalence(), swapped), 422)
    assert body["errors"][0]["pointer"] == "/property/system/network"
    assert "expected onnx" in body["detail"]
    system = copy.deepcopy(equivalence())
    system["reference"]["function"] = "nope"
    body = problem(post(client, system, files), 422)
    assert body["errors"][0]["pointer"] == "/property/system/reference/function"
    assert "/tmp" not in body["detail"]


def test_artefact_rules(client: TestClient) -> None:
    files = mapping(client)
    net = files["controller_net.onnx"]
    r = post(client, equivalence(), files, artefact="f" * 64)
    assert problem(r, 422)["errors"][0]["pointer"] == "/artefact"
    r = client.post("/v1/jobs", json={"property": {"vnnlib": "(assert true)"}})
    assert problem(r, 422)["errors"][0]["pointer"] == "/artefact"
    r = client.post(
        "/v1/jobs",
        json={"artefact": net, "artefacts": files, "property": {"vnnlib": "(assert true)"}},
    )
    assert problem(r, 422)["errors"][0]["pointer"] == "/artefacts"


def test_client_rewrites_paths_below_a_common_folder(client: TestClient) -> None:
    from service.api.client import system_body

    uploaded: list[Path] = []

    def fake_upload(path: Path) -> str:
        uploaded.append(path)
        return upload(client, path)

    body = system_body(EXAMPLES / "equivalence" / "SYSTEM.json", fake_upload)
    system = body["property"]["system"]
    assert system["network"] == "equivalence/controller_net.onnx"
    assert system["reference"]["module"] == "controller/controller.py"
    assert set(body["artefacts"]) == {system["network"], system["reference"]["module"]}
    assert len(uploaded) == 2
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    client.delete(f"/v1/jobs/{r.json()['id']}")
