"""Where every artifact lives, relative to the project root. dvc.yaml names the same paths."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

RUNS = "runs"  # ad-hoc runs (other params, --set, other data) write under runs/<name>, never over the default


def run_dir(root: str | Path, params_file: str | Path, overrides: list[str], out: str | Path | None,
            tracked: bool, dvc_project: bool) -> Path:
    """Where a run writes its artifacts: `out` when given. Otherwise the run dvc.yaml describes (params.yaml,
    no overrides) writes into the project, so that DVC's bookkeeping and `dvc repro` agree with it; so does
    any run in a folder that is no DVC project (nothing there is kept up to date). Any other run in a DVC
    project (--set, another params file or dataset) writes to runs/<params file stem>-<8 hex digits of the
    params text and overrides>, the same folder for the same settings (a re-run resumes there), so that
    the default results, and a later plain or scheduled `vaeflow run`, stay up to date."""
    root = Path(root)
    if out is not None:
        return Path(out)
    if tracked or not dvc_project:
        return root
    digest = hashlib.sha256(Path(params_file).read_bytes() + "\0".join(overrides).encode()).hexdigest()[:8]
    return root / RUNS / f"{Path(params_file).stem}-{digest}"


@dataclass(frozen=True)
class Paths:
    root: Path = Path(".")

    @property
    def prepared(self) -> Path: return self.root / "data" / "prepared"
    def domain(self, name: str) -> Path: return self.prepared / f"{name}.npz"   # name: source | target
    @property
    def data_meta(self) -> Path: return self.prepared / "meta.json"
    # The output of dvc.yaml's first stage, `check` (`vaeflow validate --stamp`). Every stage depends on it, so
    # DVC validates params.yaml before it deletes any stage's outputs; its text never changes, so no stage
    # reruns because it was written again (vaeflow/uptodate.py).
    @property
    def params_checked(self) -> Path: return self.root / "data" / "params_checked.txt"

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
    # The headline numbers, flat, for `dvc metrics show` / `dvc exp show` (metrics.json has every number
    # of the report: one row thousands of characters wide). Not written yet: evaluate is to write it.
    @property
    def summary(self) -> Path: return self.metrics / "summary.json"
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
