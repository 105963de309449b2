"""The cache key of a job: identical work has the same key and is answered once."""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from typing import Any


def engine_version() -> str:
    import verifiers

    version = getattr(verifiers, "__version__", None)
    if version:
        return str(version)
    try:
        return metadata.version("proofwell")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def digest(value: Any) -> str:
    """sha256 of a canonical JSON rendering."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(
    artefact: str, property_hash: str, subnetwork: dict[str, Any] | None, option_key: dict[str, Any]
) -> str:
    return digest(
        {
            "artefact": artefact,
            "property": property_hash,
            "subnetwork": subnetwork,
            "options": option_key,
            "engine": engine_version(),
        }
    )
