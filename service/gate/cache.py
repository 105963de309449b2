"""A local content-addressed cache of gate results.

The key is the sha256 of the model bytes, the property bytes, the subnetwork, the options
that can change a verdict and the engine version; a system's key also covers every file its
JSON names. Only decided verdicts (holds, violated) are stored: unknown depends on the
machine's speed and error is cheap to reproduce.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import verifiers
from verifiers.result import Result, Verdict

log = logging.getLogger(__name__)
CACHED_VERDICTS = (Verdict.HOLDS, Verdict.VIOLATED)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def referenced_files(system: Path) -> list[Path]:
    """Files a SYSTEM.json names (relative to it), so that editing one changes the key."""
    try:
        data = json.loads(system.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    found: list[Path] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and len(value) < 4096:
            candidate = system.parent / value
            if candidate.is_file() and candidate not in found:
                found.append(candidate)

    walk(data)
    return found


def cache_key(
    model: Path, prop: Path | None, subnetwork: dict[str, Any] | None, options: dict[str, Any]
) -> str:
    parts = {
        "model": file_digest(model),
        "property": file_digest(prop) if prop is not None else None,
        "references": sorted(file_digest(p) for p in referenced_files(model))
        if model.suffix.lower() == ".json"
        else [],
        "subnetwork": subnetwork,
        "options": options,
        "engine": verifiers.__version__,
    }
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class ResultCache:
    """Results stored as ``DIR/ab/abcdef....json``, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> Result | None:
        path = self._path(key)
        try:
            return Result.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable cache entry %s: %s", path, exc)
            return None

    def put(self, key: str, result: Result) -> None:
        if result.verdict not in CACHED_VERDICTS:
            return
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(result.to_json(), fh)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot write the cache entry %s: %s", path, exc)
