"""The one adapter between the service and the ``verifiers`` engine.

The API uses it to validate artefacts and properties before accepting them; the sandboxed
child uses it to run a job. Engine modules are imported lazily (they are heavy).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from verifiers.errors import SpecError, VerifierError


def detect_kind(data: bytes) -> str:
    """``module`` for Python source text, ``onnx`` for anything else (a protobuf)."""
    if b"\x00" in data[:4096]:
        return "onnx"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "onnx"
    return "module"


def _load_model(data: bytes, subnetwork: dict[str, Any] | None = None) -> Any:
    from verifiers.model import load_model

    sub = subnetwork or {}
    inputs, outputs = sub.get("inputs"), sub.get("outputs")
    return load_model(
        data, inputs=tuple(inputs) if inputs else None, outputs=tuple(outputs) if outputs else None
    )


def inspect_artefact(data: bytes) -> tuple[str, dict[str, Any]]:
    """Validate uploaded bytes; return their kind and a little metadata.

    Module source is parsed, never executed. Raises ``VerifierError`` with a location.
    """
    if not data:
        raise VerifierError("the file is empty", field="file")
    kind = detect_kind(data)
    if kind == "module":
        return kind, _inspect_module(data.decode("utf-8"))
    model = _load_model(data)
    return kind, {
        "n_inputs": int(model.n_inputs),
        "n_outputs": int(model.n_outputs),
        # Shown beside counterexamples: X_i / Y_j are elements of these tensors.
        "input_name": model.graph.input_name,
        "output_name": model.graph.output_name,
    }


def _inspect_module(source: str) -> dict[str, Any]:
    from verifiers.symbolic import parse_module

    module = parse_module(source, filename="module.py")  # parsed, never executed
    return {"functions": list(module.functions)}


def property_pointer(prop: dict[str, Any]) -> str:
    return "/property/" + next(iter(prop), "")


def check_property(
    prop: dict[str, Any],
    kind: str,
    meta: dict[str, Any],
    data: bytes | None,
    subnetwork: dict[str, Any] | None,
) -> Any:
    """Parse the property now, so a malformed one is refused before it is queued; the
    parsed `Property` of an ONNX model (None for a module)."""
    if kind == "module":
        if "spec" not in prop:
            raise SpecError('a module needs a {"spec": {...}} property', field="property")
        _check_module_spec((data or b"").decode("utf-8"), prop["spec"])
        return None
    if "spec" in prop:
        raise SpecError("an ONNX model takes a vnnlib or preset property", field="spec")
    return build_property(prop, _sizes(meta, data, subnetwork))


def _check_module_spec(source: str, spec: Any) -> None:
    """Parse a module SPEC against its module (contract or bounded model checking)."""
    if not isinstance(spec, dict) or not spec:
        raise SpecError("the spec must be a non-empty JSON object", field="spec")
    from verifiers.symbolic import bmc, check, parse_module

    module = parse_module(source, filename="module.py")
    if "step" in spec:
        bmc.parse_bmc(module, spec)
    elif "vnnlib" not in spec:
        check.parse_contract(module, spec)


def _sizes(
    meta: dict[str, Any], data: bytes | None, subnetwork: dict[str, Any] | None
) -> tuple[int, int]:
    if subnetwork and data is not None:
        model = _load_model(data, subnetwork)
        return int(model.n_inputs), int(model.n_outputs)
    return int(meta["n_inputs"]), int(meta["n_outputs"])


def build_property(prop: dict[str, Any], sizes: tuple[int, int]) -> Any:
    from verifiers.spec import parse_preset, parse_vnnlib

    n_in, n_out = sizes
    if "vnnlib" in prop:
        return parse_vnnlib(
            prop["vnnlib"], source="property.vnnlib", n_inputs=n_in, n_outputs=n_out
        )
    return parse_preset(prop["preset"], n_inputs=n_in, n_outputs=n_out)


def run_job(
    payload: dict[str, Any], on_progress: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Run one job in this (sandboxed) process; return ``Result.to_json()``."""
    from verifiers.result import Result, Verdict

    started = time.monotonic()
    try:
        if payload["kind"] == "system":
            return _run_system(payload)
        if payload["kind"] == "module":
            return _run_module(payload, on_progress)
        return _run_onnx(payload, on_progress, started)
    except VerifierError as exc:
        return Result(Verdict.ERROR, reason=str(exc)).to_json()


def _options(payload: dict[str, Any], spent_s: float = 0.0) -> Any:
    """The engine's options; ``spent_s`` (loading, preparing) counts toward the timeout."""
    from verifiers.options import Options

    opts = payload["options"]
    return Options(
        timeout_s=max(1e-3, float(opts["timeout_s"]) - spent_s),
        workers=1,
        seed=int(opts.get("seed", 0)),
        margin=float(opts.get("margin", 0.0)),
        # A certificate that will be re-checked must not rest on optimised intermediate
        # bounds, whose slopes it does not carry (the checker would turn the holds into
        # unknown); the objective rows' slopes and split multipliers it does carry.
        optimise_intermediate=not payload.get("check_certificate", True),
    )


def _run_onnx(
    payload: dict[str, Any], on_progress: Callable[[dict[str, Any]], None], started: float
) -> dict[str, Any]:
    from verifiers.components import OnnxComponent
    from verifiers.verify import verify

    sub = payload.get("subnetwork") or {}
    component = OnnxComponent(
        payload["data"],
        inputs=tuple(sub["inputs"]) if sub.get("inputs") else None,
        outputs=tuple(sub["outputs"]) if sub.get("outputs") else None,
    )
    model = _load_model(payload["data"], sub)
    prop = build_property(payload["prop"], (int(model.n_inputs), int(model.n_outputs)))
    spent = time.monotonic() - started
    if spent >= float(payload["options"]["timeout_s"]):
        from service.worker.sandbox import unknown

        return unknown(
            f"timeout ({payload['options']['timeout_s']:g} s) reached while loading the model "
            f"and preparing the property ({spent:.1f} s)"
        )
    options = _options(payload, spent)
    timeout_s = float(payload["options"]["timeout_s"])

    def run(opts) -> dict[str, Any]:
        result = verify(component, prop, opts, on_progress=lambda p: on_progress(p.to_json()))
        data = result.to_json()
        if payload.get("check_certificate", True) and data.get("certificate"):
            _check_certificate(data, model, prop, timeout_s, time.monotonic() - started)
        return data

    data = run(options)
    left = timeout_s - (time.monotonic() - started)
    if options.optimise_bounds and _check_failed(data) and left > 1.0:
        # The checker could not follow a leaf of the optimised search (docs/certificate.md,
        # "Optimised bounds"): search again with plain CROWN, which it always follows.
        data = run(replace(options, optimise_bounds=False, timeout_s=left))
    return data


def _check_failed(data: dict[str, Any]) -> bool:
    check = (data.get("stats") or {}).get("certificate_check") or {}
    return (
        data.get("verdict") == "unknown" and bool(check.get("checked")) and not check.get("valid")
    )


def _check_certificate(
    data: dict[str, Any], model: Any, prop: Any, timeout_s: float, spent_s: float | None = None
) -> None:
    """Re-check a `holds` certificate with the independent checker, within what is left of
    the job's CPU budget (sandbox.Limits; `spent_s`: the job's seconds so far, else the
    search's), and record the outcome in the certificate and the stats. A certificate the
    checker rejects turns the verdict into `unknown`. The certificate's engine picks the
    checker (chain or graph)."""
    from verifiers.certify.checker import CHECKER_VERSION, check_model

    spent = float(data["stats"]["seconds"]) if spent_s is None else spent_s
    budget = timeout_s + max(10.0, 0.5 * timeout_s) - spent - 5.0
    report = check_model(data["certificate"], model, prop, budget_s=max(budget, 1.0))
    outcome = {
        "checked": report.checked,
        "valid": report.valid if report.checked else None,
        "checker": CHECKER_VERSION,
        "seconds": round(report.seconds, 3),
        "message": report.message,
    }
    data["certificate"]["check"] = outcome
    data["stats"]["certificate_check"] = outcome
    if report.checked and not report.valid:
        data["verdict"] = "unknown"
        data["reason"] = f"the certificate failed the independent check: {report.message}"


def _run_module(
    payload: dict[str, Any], on_progress: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    from verifiers.symbolic import verify_module

    source = payload["data"].decode("utf-8")
    result = verify_module(source, payload["prop"]["spec"], _options(payload), filename="module.py")
    return result.to_json()


# -- systems: SYSTEM.json plus the files it names, each an uploaded artefact ---------------
def system_files(system: Any) -> dict[str, tuple[str, str]]:
    """The files a SYSTEM names: a JSON pointer (below the system) -> (the path as written,
    ``onnx`` or ``module``).

    Only the structure needed to find them is checked here; the rest is left to the parse.
    """
    if not isinstance(system, dict):
        raise SpecError("a system must be a JSON object")
    if system.get("kind") == "equivalence":
        slots = {name: system.get(name) for name in ("network", "reference")}
    else:
        comps = system.get("components")
        if not isinstance(comps, dict) or not comps:
            raise SpecError("expected an object naming the components", field="components")
        slots = {f"components/{_escape(str(n))}": c for n, c in comps.items()}
    files: dict[str, tuple[str, str]] = {}
    for pointer, raw in slots.items():
        field = pointer.replace("/", ".")
        if raw is None:
            raise SpecError("missing field", field=field)
        if isinstance(raw, str):  # a bare path is read by its extension
            files[pointer] = (raw, "onnx" if raw.endswith(".onnx") else "module")
            continue
        key = next((k for k in ("onnx", "module") if isinstance(raw, dict) and k in raw), None)
        if key is None:
            raise SpecError('a component is {"onnx": path} or {"module": path, ...}', field=field)
        if not isinstance(raw[key], str):
            raise SpecError("expected a file path", field=f"{field}.{key}")
        files[f"{pointer}/{key}"] = (raw[key], key)
    return files


def _escape(token: str) -> str:
    """A JSON pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


MAX_PATH = 1024
MAX_PATH_PARTS = 32


def check_relative_path(path: str) -> PurePosixPath:
    """A file name under the job's folder: relative, without `..`; raises ValueError."""
    pure = PurePosixPath(path)
    if not path or "\x00" in path:
        raise ValueError("expected a file path")
    if len(path) > MAX_PATH or len(pure.parts) > MAX_PATH_PARTS:
        raise ValueError(
            f"'{path[:60]}…' is too long: at most {MAX_PATH} characters in {MAX_PATH_PARTS} parts"
        )
    if any(len(part.encode()) > 255 for part in pure.parts):
        raise ValueError("a file or folder name is longer than 255 bytes")
    if pure.is_absolute():
        raise ValueError(f"'{path}' is absolute: give a path relative to the system")
    if ".." in pure.parts:
        raise ValueError(f"'{path}' has a '..' component: paths must stay below the system")
    if not pure.parts or path.endswith("/"):
        raise ValueError(f"'{path}' does not name a file")
    return pure


@contextmanager
def system_folder(files: Mapping[str, bytes]) -> Iterator[Path]:
    """A temporary folder holding each file at its (checked) relative path."""
    folder = Path(tempfile.mkdtemp(prefix="proofwell-system-")).resolve()
    try:
        for path, data in files.items():
            target = folder / check_relative_path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _relative_messages(exc: VerifierError, folder: Path) -> VerifierError:
    """Name the files as the system does, not by the temporary folder holding them."""
    prefix = f"{folder}/"
    exc.message = exc.message.replace(prefix, "")
    if exc.source:
        exc.source = exc.source.replace(prefix, "")
    exc.args = (exc.message,)
    return exc


def check_system(system: dict[str, Any], files: Mapping[str, bytes]) -> None:
    """Parse the system with its files (networks loaded, modules parsed), without running it."""
    from verifiers.symbolic import equivalence, systems

    with system_folder(files) as folder:
        try:
            if system.get("kind") == "equivalence":
                equivalence.parse_equivalence(system, folder)
            else:
                systems.parse_system(system, folder)
        except VerifierError as exc:
            raise _relative_messages(exc, folder) from None


def _run_system(payload: dict[str, Any]) -> dict[str, Any]:
    from verifiers.symbolic import verify_system

    with system_folder(payload["files"]) as folder:
        try:
            result = verify_system(payload["prop"]["system"], _options(payload), base_dir=folder)
        except VerifierError as exc:
            raise _relative_messages(exc, folder) from None
        data = result.to_json()
        if data.get("reason"):
            data["reason"] = str(data["reason"]).replace(f"{folder}/", "")
        return data
