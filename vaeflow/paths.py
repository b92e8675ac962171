"""Where every artifact lives, relative to the project root. dvc.yaml names the same paths."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    root: Path = Path(".")

    @property
    def prepared(self) -> Path: return self.root / "data" / "prepared"
    def domain(self, name: str) -> Path: return self.prepared / f"{name}.npz"   # name: source | target
    @property
    def data_meta(self) -> Path: return self.prepared / "meta.json"

    @property
    def models(self) -> Path: return self.root / "models"
    @property
    def gmm(self) -> Path: return self.models / "gmm.npz"
    @property
    def vae(self) -> Path: return self.models / "vae.pt"                 # final weights, a state dict
    @property
    def vae_spec(self) -> Path: return self.models / "vae.json"          # what is needed to rebuild it
    def adapt_model(self, variant: str) -> Path: return self.models / "adapt" / f"{variant}.pt"
    # The autoencoders stage: <name>.pt (state dict) and <name>.json (spec) per model, name ae | dae.
    def ae_model(self, name: str) -> Path: return self.models / "ae" / f"{name}.pt"
    def ae_spec(self, name: str) -> Path: return self.models / "ae" / f"{name}.json"

    # Resumable training state. Not a DVC output: DVC deletes a stage's outs before re-running it,
    # which would throw away exactly the state a killed run needs to resume from.
    @property
    def checkpoints(self) -> Path: return self.root / "runs" / "checkpoints"
    def checkpoint(self, name: str) -> Path: return self.checkpoints / f"{name}.pt"

    @property
    def metrics(self) -> Path: return self.root / "metrics"
    def stage_metrics(self, stage: str) -> Path: return self.metrics / f"{stage}.json"
    @property
    def all_metrics(self) -> Path: return self.metrics / "metrics.json"
    @property
    def plots(self) -> Path: return self.metrics / "plots"

    @property
    def reports(self) -> Path: return self.root / "reports"
    @property
    def report(self) -> Path: return self.reports / "report.md"
    @property
    def figures(self) -> Path: return self.reports / "figures"

    @property
    def tuned(self) -> Path: return self.models / "tuned" / "best_config.json"
