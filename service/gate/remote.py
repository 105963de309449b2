"""Server execution: upload every model once, submit all tasks at once, poll until done.

The server answers identical work from its own cache and says so (`cached`). A token from
PROOFWELL_TOKEN is sent as a bearer header.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from service.api.client import (
    TERMINAL,
    ApiError,
    checked,
    job_url,
    property_body,
    system_body,
    upload,
)
from service.gate.config import ModelKind
from service.gate.runner import OnDone, OnStart
from service.gate.tasks import Outcome, Task
from verifiers.result import Counterexample, Result, Stats, Verdict

log = logging.getLogger(__name__)
# The API rejects a zero timeout; the smallest it accepts decides as little as zero would.
MIN_TIMEOUT_S = 0.001
# How often a gate polls its jobs once all are submitted.
POLL_S = 0.3
# Jobs read per poll request (the API's `ids` limit).
POLL_IDS = 100


def run_server(
    tasks: Sequence[Task],
    server: str,
    *,
    token: str | None = None,
    poll_s: float = POLL_S,
    on_start: OnStart | None = None,
    on_done: OnDone | None = None,
    http_timeout_s: float = 60.0,
    transport: httpx.BaseTransport | None = None,
) -> list[Outcome]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    outcomes: dict[int, Outcome] = {}
    client = httpx.Client(
        base_url=server, headers=headers, timeout=http_timeout_s, transport=transport
    )
    with client:
        jobs = _submit_all(client, tasks, outcomes, on_start, on_done)
        while jobs:
            time.sleep(poll_s)
            read = _get_many(client, list(jobs.values()))
            for index, job_id in list(jobs.items()):
                job = read.get(job_id) if read is not None else _get(client, job_id)
                if job is not None and job["status"] not in TERMINAL:
                    continue
                del jobs[index]
                result = _result(job) if job else _failure(f"job {job_id} could not be read")
                cached = bool(job and job.get("cached"))
                outcomes[index] = Outcome(tasks[index], result, cached, job_url(server, job_id))
                if on_done:
                    on_done(outcomes[index])
    return [outcomes[i] for i in range(len(tasks))]


def _submit_all(client, tasks, outcomes, on_start, on_done) -> dict[int, str]:
    artefacts: dict[Path, str] = {}
    jobs: dict[int, str] = {}
    for index, task in enumerate(tasks):
        try:
            job = _submit(client, task, artefacts)
        except (ApiError, httpx.HTTPError, OSError, ValueError) as exc:
            outcomes[index] = Outcome(task, _failure(f"submitting {task.id}: {exc}"))
            if on_done:
                on_done(outcomes[index])
            continue
        if on_start:
            on_start(task)
        log.info("submitted %s as job %s", task.id, job["id"])
        if job["status"] in TERMINAL:
            url = job_url(str(client.base_url), str(job["id"]))
            outcomes[index] = Outcome(task, _result(job), bool(job.get("cached")), url)
            if on_done:
                on_done(outcomes[index])
        else:
            jobs[index] = str(job["id"])
    return jobs


def _submit(client: httpx.Client, task: Task, artefacts: dict[Path, str]) -> dict[str, Any]:
    """Submit one task, uploading each file (a model, or a system's components) once."""
    check = task.check

    def upload_once(path: Path) -> str:
        key = path.resolve()
        if key not in artefacts:
            artefacts[key] = upload(client, path)
        return artefacts[key]

    if check.kind is ModelKind.SYSTEM:
        body = system_body(check.model, upload_once)
    elif task.prop is None:
        raise ValueError(f"{task.id}: no property to check")
    else:
        body = {
            "artefact": upload_once(check.model),
            "property": property_body(check.model, task.prop),
        }
    body["options"] = {
        "timeout_s": max(check.timeout_s, MIN_TIMEOUT_S),
        "seed": check.seed,
        "margin": check.margin,
    }
    if check.subnetwork is not None and check.kind is not ModelKind.SYSTEM:
        body["subnetwork"] = check.subnetwork.to_json()
    return checked(client.post("/v1/jobs", json=body))


def _get_many(client: httpx.Client, job_ids: list[str]) -> dict[str, dict[str, Any]] | None:
    """The listed jobs by id, read POLL_IDS at a time (one request each, not one per job);
    None if a read fails, and the jobs are then read one by one (with retries)."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(job_ids), POLL_IDS):
        ids = ",".join(str(i) for i in job_ids[start : start + POLL_IDS])
        try:
            page = checked(client.get("/v1/jobs", params={"ids": ids}))
        except (ApiError, httpx.HTTPError) as exc:
            log.warning("reading jobs %s: %s", ids, exc)
            return None
        found.update((str(job["id"]), job) for job in page["items"])
    return found


def _get(client: httpx.Client, job_id: str) -> dict[str, Any] | None:
    for _ in range(3):
        try:
            return checked(client.get(f"/v1/jobs/{job_id}"))
        except (ApiError, httpx.HTTPError) as exc:
            log.warning("reading job %s: %s", job_id, exc)
            time.sleep(0.5)
    return None


def _result(job: dict[str, Any]) -> Result:
    """A finished job as an engine Result (failed is error, cancelled is unknown)."""
    stats = Stats(**{k: v for k, v in (job.get("stats") or {}).items() if k in _STATS})
    if job["status"] == "cancelled":
        return Result(Verdict.UNKNOWN, stats, reason=job.get("reason") or "cancelled")
    if job["status"] != "done" or job.get("verdict") not in _VERDICTS:
        return Result(Verdict.ERROR, stats, reason=job.get("reason") or f"job {job['status']}")
    cex = job.get("counterexample")
    counterexample = Counterexample(**{k: v for k, v in cex.items() if k in _CEX}) if cex else None
    return Result(Verdict(job["verdict"]), stats, counterexample, reason=job.get("reason"))


def _failure(reason: str) -> Result:
    return Result(Verdict.ERROR, Stats(), reason=reason)


_STATS = ("seconds", "method", "subproblems", "proved_fraction")
_CEX = ("inputs", "outputs", "onnxruntime_outputs", "margin", "trace")
_VERDICTS = tuple(v.value for v in Verdict)
