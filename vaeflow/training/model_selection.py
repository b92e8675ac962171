"""Model selection without target labels, as a named rule of its own (DomainBed's model_selection.py).

In unsupervised domain adaptation the target has no labels, so any choice made on target labels (the best
epoch on the target test set, a threshold tuned there) reports an oracle, not a method. Published digit
results often do exactly that; vaeflow never does. The rule in force is written into metrics/adapt.json,
the report and bench/RESULTS.md.

The selection rule answers one question: which training step's weights are scored. Hyperparameters are
not selected at all: they are fixed in params.yaml (the presets cite where each value comes from).
"""
from __future__ import annotations


class SelectionRule:
    name: str = ""
    description: str = ""

    def select(self, history: list[dict]) -> int:
        """Index into `history` (one row per epoch) of the epoch whose weights are kept."""
        raise NotImplementedError


class LastStep(SelectionRule):
    """A fixed schedule, scored after its last step. Reads nothing: not the target labels, and not the
    source-validation accuracy logged per epoch (which is there for diagnosis only)."""
    name = "last_step"
    description = ("last step of a fixed schedule: every variant is trained for the configured epochs and "
                   "scored after its last optimiser step; no target label (and no validation score) selects "
                   "an epoch, model, threshold or hyperparameter. Accuracies are means over adapt.repeats seeds")

    def select(self, history: list[dict]) -> int:
        return len(history) - 1


RULES: dict[str, SelectionRule] = {r.name: r for r in (LastStep(),)}
