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
    description: str = ""  # for the report; {repeats} is filled in with adapt.repeats

    def select(self, history: list[dict]) -> int:
        """Index into `history` (one row per epoch) of the epoch whose weights are kept."""
        raise NotImplementedError

    def keeps(self, history: list[dict]) -> bool:
        """Whether the newest epoch is, so far, the one `select` picks (the loop then snapshots it)."""
        return self.select(history) == len(history) - 1


class LastStep(SelectionRule):
    """A fixed schedule, scored after its last step. Reads nothing: not the target labels, and not the
    source-validation accuracy logged per epoch (which is there for diagnosis only)."""
    name = "last"
    description = ("last step of a fixed schedule: every variant is trained for its configured epochs and "
                   "scored after its last optimiser step; no target label (and no validation score) selects "
                   "an epoch, model, threshold or hyperparameter. Accuracies are means over {repeats} seeds "
                   "(adapt.repeats)")

    def select(self, history: list[dict]) -> int:
        return len(history) - 1

    def keeps(self, history: list[dict]) -> bool:
        return False  # the loop's final weights are the last epoch's: no snapshot needed


class SourceValidation(SelectionRule):
    """The epoch with the best accuracy on the held-out source validation split (the first of ties), as
    DomainBed's training-domain validation. Reads only `source_val_acc`; a variant that never sees a source
    label (or a history without that column) falls back to its last epoch."""
    name = "source_val"
    description = ("best source-validation accuracy: each variant keeps the epoch with the highest accuracy on "
                   "held-out source images (DomainBed's training-domain validation); no target label selects "
                   "anything. Accuracies are means over {repeats} seeds (adapt.repeats)")

    def select(self, history: list[dict]) -> int:
        scores = [row.get("source_val_acc") for row in history]
        if not scores or any(v is None for v in scores):
            return len(history) - 1
        return max(range(len(scores)), key=lambda i: (scores[i], -i))


RULES: dict[str, SelectionRule] = {r.name: r for r in (LastStep(), SourceValidation())}
