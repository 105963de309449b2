"""A small client of the HTTP API, used by ``proofwell submit``."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

out, err = Console(), Console(stderr=True)
TERMINAL = ("done", "failed", "cancelled")
EXIT_CODES = {"holds": 0, "violated": 1, "unknown": 2, "error": 3}


class ApiError(Exception):
    """A problem+json answer, or no answer at all; ``pointer`` is the offending field."""

    def __init__(self, message: str, pointer: str | None = None) -> None:
        super().__init__(message)
        self.pointer = pointer


# The names the server gives uploaded text in its messages; the CLI puts the user's back.
SERVER_NAMES = ("property.vnnlib", "module.py")
# How often `proofwell submit --wait` polls its job.
WAIT_POLL_S = 0.5


def in_users_file(exc: Exception, model: Path, spec: Path | None) -> str:
    """An error message that names the user's file: the property's for a problem in the
    property, else the model's (or the system's)."""
    pointer = getattr(exc, "pointer", None) or ""
    path = spec if spec is not None and pointer.startswith("/property") else model
    text = str(exc)
    if any(str(p) in text for p in (model, spec) if p is not None):
        return text
    for name in SERVER_NAMES:
        if f"{name}:" in text:
            return text.replace(f"{name}:", f"{path}:", 1)
    return text if str(path) in text else f"{path}: {text}"


def checked(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            raise ApiError(f"HTTP {response.status_code}: {response.text[:200]}") from None
        where = "; ".join(
            " ".join(f"{k}={v}" for k, v in e.items() if k != "detail")
            for e in body.get("errors", [])
        )
        pointers = [e.get("pointer") for e in body.get("errors", []) if e.get("pointer")]
        raise ApiError(
            f"{body.get('title')}: {body.get('detail')}" + (f" ({where})" if where else ""),
            pointers[0] if pointers else None,
        )
    data: dict[str, Any] = response.json()
    return data


def read_json_text(text: str, path: Path) -> Any:
    """JSON text read from ``path``; invalid JSON is a ValueError at its line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None


def property_body(model: Path, spec: Path) -> dict[str, Any]:
    text = spec.read_text(encoding="utf-8")
    if spec.suffix.lower() != ".json":
        return {"vnnlib": text}
    key = "spec" if model.suffix == ".py" else "preset"
    return {key: read_json_text(text, spec)}


def upload(client: httpx.Client, path: Path) -> str:
    """Upload a file as an artefact; its id (the sha256 of its bytes)."""
    with path.open("rb") as fh:
        return str(checked(client.post("/v1/artefacts", files={"file": (path.name, fh)}))["id"])


def system_body(path: Path, upload_file: Callable[[Path], str]) -> dict[str, Any]:
    """The job body of a SYSTEM.json: the system as the property, each file it names uploaded.

    The API takes paths below the system only, so the paths are rewritten relative to the
    nearest folder holding the system and all its files (unchanged when already below it).
    Raises ValueError for JSON or a system that names its files wrongly.
    """
    from service.worker.engine import system_files
    from verifiers.errors import VerifierError

    system = read_json_text(path.read_text(encoding="utf-8"), path)
    try:
        named = system_files(system)
    except VerifierError as exc:
        raise ValueError(f"{path.name}: {exc}") from None
    here = path.resolve().parent
    files = {p: (here / written).resolve() for p, (written, _) in named.items()}
    root = Path(os.path.commonpath([here, *(f.parent for f in files.values())]))
    artefacts: dict[str, str] = {}
    for pointer, file in files.items():
        if not file.is_file():
            raise ValueError(f"{path.name}: no such file: {named[pointer][0]}")
        relative = file.relative_to(root).as_posix()
        _set(system, pointer, relative)
        artefacts[relative] = upload_file(file)
    return {"property": {"system": system}, "artefacts": artefacts}


def _set(document: dict[str, Any], pointer: str, value: str) -> None:
    """Set the value at a JSON pointer (without its leading slash) in ``document``."""
    *parents, last = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")]
    node: Any = document
    for token in parents:
        node = node[token]
    node[last] = value


def _check_onnx(path: Path) -> None:
    """A text file named .onnx would reach the server as module source: say what it is."""
    if path.suffix.lower() != ".onnx":
        return
    from service.worker.engine import detect_kind

    with path.open("rb") as fh:
        if detect_kind(fh.read(4096)) == "module":
            raise ValueError(f"{path}: not an ONNX model (the file is text)")


def submit_job(
    client: httpx.Client, model: Path, spec: Path | None, timeout: float | None
) -> dict[str, Any]:
    if spec is None and model.suffix.lower() == ".json":
        body = system_body(model, lambda path: upload(client, path))
    elif spec is None:
        raise ValueError("give a property file (only a SYSTEM.json holds its own)")
    else:
        _check_onnx(model)
        body = {"artefact": upload(client, model), "property": property_body(model, spec)}
    if timeout:
        body["options"] = {"timeout_s": timeout}
    return checked(client.post("/v1/jobs", json=body))


def _describe(job: dict[str, Any]) -> str:
    from service.progress_text import describe
    from verifiers.result import Progress

    text = f"job {job['id']}: {job['status']}"
    p = job.get("progress") or {}
    if p:
        progress = Progress(
            int(p.get("subproblems_done", 0)),
            int(p.get("subproblems_open", 0)),
            float(p.get("proved_fraction", 0.0)),
            float(p.get("seconds", 0.0)),
        )
        timeout = (job.get("options") or {}).get("timeout_s")
        text += ", " + describe(progress, float(timeout) if timeout else None)
    return text


def wait_for(
    client: httpx.Client, job: dict[str, Any], poll_s: float = WAIT_POLL_S, every_s: float = 5.0
) -> dict[str, Any]:
    """Poll until the job ends: a status line on a terminal, else a line every ``every_s``."""
    if err.is_terminal:
        with err.status(_describe(job)) as status:
            while job["status"] not in TERMINAL:
                time.sleep(poll_s)
                job = checked(client.get(f"/v1/jobs/{job['id']}"))
                status.update(_describe(job))
        return job
    next_line = time.monotonic() + every_s
    while job["status"] not in TERMINAL:
        time.sleep(poll_s)
        job = checked(client.get(f"/v1/jobs/{job['id']}"))
        if time.monotonic() >= next_line and job["status"] not in TERMINAL:
            next_line = time.monotonic() + every_s
            print(_describe(job), file=sys.stderr, flush=True)
    return job


def exit_code(job: dict[str, Any]) -> int:
    if job["status"] == "done":
        return EXIT_CODES.get(job.get("verdict") or "error", 3)
    return 2 if job["status"] == "cancelled" else 3


def _report(job: dict[str, Any], json_out: bool, url: str) -> None:
    if json_out:
        out.print_json(data={**job, "url": url})
        return
    verdict = job.get("verdict") or job["status"]
    cached = " (cached)" if job.get("cached") else ""
    reason = f": {job['reason']}" if job.get("reason") else ""
    out.print(f"{verdict}{cached}{reason}")


def job_url(server: str, job_id: str) -> str:
    """The dashboard page of a job."""
    return f"{server.rstrip('/')}/jobs/{job_id}"


def run_submit(
    server: str,
    model: Path,
    spec: Path | None,
    *,
    wait: bool,
    timeout: float | None,
    json_out: bool,
) -> int:
    try:
        token = os.environ.get("PROOFWELL_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(base_url=server, headers=headers, timeout=60) as client:
            job = submit_job(client, model, spec, timeout)
            url = job_url(server, job["id"])
            if not wait:
                if json_out:
                    out.print_json(data={**job, "url": url})
                else:
                    out.print(f"job {job['id']}: {job['status']}  {url}", markup=False)
                return 0
            # Before waiting, so a user (or a CI log) can follow the job in the dashboard.
            err.print(f"job {job['id']}: {url}", markup=False, highlight=False)
            job = wait_for(client, job)
    except httpx.HTTPError as exc:
        print(f"error: {server}: {exc}", file=sys.stderr)
        return 3
    except (ApiError, OSError, ValueError) as exc:
        # One plain line (rich would wrap it), naming the user's file.
        print(f"error: {in_users_file(exc, model, spec)}", file=sys.stderr)
        return 3
    _report(job, json_out, job_url(server, job["id"]))
    return exit_code(job)
