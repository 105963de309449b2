"""What one case's search is given (SearchContext) and what it finds (CaseOutcome)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from verifiers.certify.replay import Runner
from verifiers.model.network import PiecewiseLinearNetwork
from verifiers.result import Counterexample
from verifiers.search.region import Leaf
from verifiers.spec.property import Case


@dataclass
class CaseOutcome:
    counterexample: Counterexample | None = None
    proved_share: float = 0.0  # of the case's box (volume-weighted, phases halving it)
    log_volume: float = 0.0  # of the case's box: weighs the cases against each other
    subproblems: int = 0
    open_regions: int = 0
    unknown_reasons: list[str] = field(default_factory=list)
    leaves: list[Leaf] = field(default_factory=list)
    smt_calls: int = 0
    phase_lps: int = 0

    def absorb(self, other: CaseOutcome) -> None:
        """Add the work of a slice searched elsewhere (another process)."""
        self.counterexample = self.counterexample or other.counterexample
        self.proved_share += other.proved_share
        self.subproblems += other.subproblems
        self.unknown_reasons += other.unknown_reasons
        self.leaves += other.leaves
        self.smt_calls += other.smt_calls
        self.phase_lps += other.phase_lps

    @property
    def decided(self) -> bool:
        return self.counterexample is not None or (
            self.open_regions == 0 and not self.unknown_reasons
        )


@dataclass(frozen=True)
class SearchContext:
    network: PiecewiseLinearNetwork  # or a GraphNetwork for the graph search (graph_bab.py)
    case: Case
    run: Runner  # onnxruntime replay
    deadline: float
    margin: float = 0.0
    seed: int = 0
    record_tree: bool = True
    optimise_bounds: bool = True
    optimise_intermediate: bool = True  # Options.optimise_intermediate
    on_step: Callable[[CaseOutcome], None] | None = None
    cancelled: Callable[[], bool] = lambda: False

    def remaining(self) -> float:
        return self.deadline - time.monotonic()
