"""What a job offers to download, and the command that reproduces it on a laptop.

Pure functions over a stored job (no database, no HTTP): the counterexample as JSON, the
VNN-COMP result file, the property as the file it was submitted as, and a copyable
``proofwell verify ...`` command naming those files.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from service.store.jobs import Job

NOT_DONE = "unknown"  # the VNN-COMP word for "no verdict (yet)"


def counterexample_document(job: Job, model: str) -> dict[str, Any] | None:
    """The counterexample with what it refers to: job, model, verdict and engine stats."""
    if job.verdict != "violated" or not job.counterexample:
        return None
    return {
        "job": job.id,
        "model": model,
        "artefact": job.artefact,
        "verdict": job.verdict,
        "counterexample": job.counterexample,
        "stats": job.stats or {},
    }


def vnncomp_result(job: Job) -> str:
    """The VNN-COMP result file: unsat | sat + assignment | timeout | unknown | error."""
    verdict = job.verdict if job.status.value == "done" else None
    if verdict == "violated" and job.counterexample:
        cex = job.counterexample
        outputs = cex.get("onnxruntime_outputs") or cex.get("outputs") or []
        pairs = [f"(X_{i} {float(v)!r})" for i, v in enumerate(cex.get("inputs") or [])]
        pairs += [f"(Y_{i} {float(v)!r})" for i, v in enumerate(outputs)]
        return "sat\n(" + "\n ".join(pairs) + ")\n"
    if verdict == "holds":
        return "unsat\n"
    if verdict == "unknown" and (job.reason or "").startswith("timeout"):
        return "timeout\n"
    if verdict == "error" or job.status.value == "failed":
        return "error\n"
    return NOT_DONE + "\n"


def property_file(job: Job) -> tuple[str, str, str] | None:
    """(file name, media type, text) of the job's property as submitted."""
    prop = job.prop
    if "vnnlib" in prop:
        return f"job-{job.id}.vnnlib", "text/plain", str(prop["vnnlib"])
    for key, name in (("preset", "preset"), ("spec", "SPEC"), ("system", "SYSTEM")):
        if key in prop:
            text = json.dumps(prop[key], indent=2) + "\n"
            return f"job-{job.id}-{name}.json", "application/json", text
    return None


def reproduce_command(job: Job, model_filename: str | None) -> str:
    """``proofwell verify MODEL SPEC --timeout T ...`` with the job's files and options."""
    prop_file = property_file(job)
    options = job.options or {}
    if "system" in job.prop:
        args = ["proofwell", "verify", prop_file[0] if prop_file else "SYSTEM.json"]
    else:
        model = model_filename or f"{job.artefact[:12]}.onnx"
        args = ["proofwell", "verify", model, prop_file[0] if prop_file else "SPEC"]
    if options.get("timeout_s") is not None:
        args += ["--timeout", _number(options["timeout_s"])]
    if options.get("margin"):
        args += ["--margin", _number(options["margin"])]
    if options.get("seed"):
        args += ["--seed", str(options["seed"])]
    for name in (job.subnetwork or {}).get("inputs") or []:
        args += ["--input", name]
    for name in (job.subnetwork or {}).get("outputs") or []:
        args += ["--output", name]
    return shlex.join(args)


def _number(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)
