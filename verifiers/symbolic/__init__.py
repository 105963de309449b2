"""Symbolic modules: a safe Python subset, verified alone, in systems, or against networks.

Public API (the CLI and the service call these):

- `parse_module(source, filename=...)`: the typed IR; ModuleError(line, column) otherwise.
- `verify_module(source, spec, options)`: a function contract (`function`, `inputs`,
  `requires`, `ensures`) or bounded model checking (`step`, `init`, `inputs`, `invariant`,
  `steps`).
- `verify_system(system, options, base_dir=...)`: ONNX networks and modules wired together
  (a feedback loop unrolled K steps), or equivalence of a network with a reference.

Invalid input raises a VerifierError subclass (ModuleError, SpecError, ModelError); callers
turn it into the `error` verdict at their boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from verifiers.errors import SpecError
from verifiers.options import Options
from verifiers.result import Result
from verifiers.symbolic.ir import Module
from verifiers.symbolic.parser import parse_module

__all__ = ["Module", "parse_module", "verify_module", "verify_system"]


def verify_module(
    source: str, spec: Mapping[str, Any], options: Options, *, filename: str = "<module>"
) -> Result:
    from verifiers.symbolic import bmc, check

    module = parse_module(source, filename=filename)
    if not isinstance(spec, Mapping):
        raise SpecError("a module SPEC must be a JSON object")
    if "step" in spec:
        return bmc.verify_bmc(module, bmc.parse_bmc(module, spec), options)
    if "vnnlib" in spec:
        from verifiers.symbolic import vnnlib_module

        return vnnlib_module.verify_vnnlib(module, spec, options)
    return check.verify_contract(module, check.parse_contract(module, spec), options)


def verify_system(system: Mapping[str, Any], options: Options, *, base_dir: Path) -> Result:
    from verifiers.symbolic import equivalence, systems

    if not isinstance(system, Mapping):
        raise SpecError("a SYSTEM must be a JSON object")
    if system.get("kind") == "equivalence":
        return equivalence.verify_equivalence(system, options, base_dir=Path(base_dir))
    return systems.verify_closed_loop(system, options, base_dir=Path(base_dir))
