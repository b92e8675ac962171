"""`dvc repro` and `vaeflow run` in a temporary git copy of the repo, on a tiny params.yaml.

Checks the one notion of "up to date" both entry points share: a second `dvc repro` is a no-op, an
adapt-only change re-runs adapt and evaluate only, and after `vaeflow run` `dvc status` is clean.
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import in_project

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # dvc repro and vaeflow run as processes, end to end
_sh = in_project


def _ran(out: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", out))


@pytest.fixture
def repo(dvc_reproduced, tmp_path) -> Path:
    """A copy of the reproduced project (conftest's dvc_reproduced: git, DVC cache, dvc.lock, outputs) that this
    test alone changes. copy2 keeps mtimes; DVC re-hashes the new inodes once."""
    return Path(shutil.copytree(dvc_reproduced[0], tmp_path / "repo", symlinks=True, copy_function=shutil.copy2))


def test_dvc_repro_then_noop_then_adapt_only(repo, dvc_reproduced):
    first = dvc_reproduced[1]
    # check: dvc.yaml's first stage, params.yaml validated before DVC deletes any stage's outputs
    assert _ran(first) == {"check", "prepare", "gmm", "pretrain", "autoencoders", "adapt", "samplers", "evaluate"}
    for f in ("metrics/metrics.json", "reports/report.md", "models/vae.pt", "dvc.lock"):
        assert (repo / f).is_file(), f
    mtimes = {p: p.stat().st_mtime_ns for p in (repo / "models").rglob("*") if p.is_file()}

    second = _sh(["dvc", "repro"], repo)
    assert _ran(second.stdout) == set(), second.stdout
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["adapt"]["epochs"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = _sh(["dvc", "repro"], repo)
    assert _ran(third.stdout) == {"check", "adapt", "evaluate"}, third.stdout

    shown = _sh(["dvc", "metrics", "show", "--json"], repo).stdout
    assert "vae_test_nll" in shown and "acc_dann" in shown  # metrics/summary.json, the flat headline
    _sh(["dvc", "plots", "show", "-o", "dvc_plots"], repo)
    html = (repo / "dvc_plots" / "index.html").read_text()
    assert "VAE training" in html and all(f"confusion_{v}.csv" in html for v in ("source_only", "dann", "oracle"))


def test_vaeflow_run_agrees_with_dvc_status(repo):
    """The flow skips what DVC calls up to date, runs the rest, records it: `dvc status` is clean after."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["adapt"]["epochs"] = 3
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    res = _sh([sys.executable, "-m", "vaeflow", "run"], repo)
    out = res.stdout + res.stderr
    skipped = set(re.findall(r"stage (\w+) is up to date", out))
    assert skipped == {"prepare", "gmm", "pretrain", "autoencoders", "samplers"}, out[-3000:]
    status = _sh(["dvc", "status"], repo).stdout
    assert "up to date" in status, status
    again = _sh([sys.executable, "-m", "vaeflow", "run"], repo)
    assert set(re.findall(r"stage (\w+) is up to date", again.stdout + again.stderr)) == {
        "prepare", "gmm", "pretrain", "autoencoders", "adapt", "samplers", "evaluate"}


def test_a_new_tuning_result_makes_dvc_retrain_from_pretrain(repo):
    """models/tuned is a DVC dep of pretrain: DVC sees a new best_config.json, pretrain uses it, and every stage
    that reads the VAE is stale after it. `dvc repro pretrain` runs only that far: the stages downstream of a
    changed output are DVC's to run, as test_dvc_repro_then_noop_then_adapt_only shows for adapt."""
    import json

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["pretrain"]["use_tuned"] = True
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    best = {"tuned": True, "config": {"lr": 0.002}, "trial_id": "t0", "val_nelbo": 1.0}
    (repo / "models" / "tuned" / "best_config.json").write_text(json.dumps(best))
    assert _ran(_sh(["dvc", "repro", "pretrain"], repo).stdout) == {"check", "pretrain"}
    assert json.loads((repo / "metrics" / "pretrain.json").read_text())["params"]["lr"] == 0.002
    assert _stale(repo) == {"adapt", "samplers", "evaluate"}

    best["config"]["lr"] = 0.003  # a new tuning result, params.yaml unchanged
    (repo / "models" / "tuned" / "best_config.json").write_text(json.dumps(best))
    status = _sh(["dvc", "status", "pretrain"], repo).stdout
    assert "models/tuned" in status and "modified" in status, status
    assert _ran(_sh(["dvc", "repro", "pretrain"], repo).stdout) == {"pretrain"}
    assert json.loads((repo / "metrics" / "pretrain.json").read_text())["params"]["lr"] == 0.003
    assert _ran(_sh(["dvc", "repro", "pretrain"], repo).stdout) == set()


def _stale(repo: Path) -> set[str]:
    """The stages `dvc status` lists (each as a "name:" line with what changed under it)."""
    return set(re.findall(r"^(\w+):$", _sh(["dvc", "status"], repo).stdout, re.MULTILINE))


def test_a_set_run_leaves_the_default_results_up_to_date(repo):
    """`vaeflow run --set ...` in a DVC project writes to runs/<name> (or --out DIR), not over the default
    results: `dvc status` stays clean, and a plain `vaeflow run` after it has nothing to do."""
    before = (repo / "metrics" / "metrics.json").read_bytes()
    res = _sh([sys.executable, "-m", "vaeflow", "run", "--set", "adapt.epochs=2"], repo)
    out = res.stdout + res.stderr
    made = sorted((repo / "runs").glob("params-*/metrics/metrics.json"))
    assert len(made) == 1, out[-3000:]
    assert str(made[0].relative_to(repo)) in " ".join(out.split()), out[-2000:]  # the done line names it
    assert (repo / "metrics" / "metrics.json").read_bytes() == before
    assert "up to date" in _sh(["dvc", "status"], repo).stdout
    again = _sh([sys.executable, "-m", "vaeflow", "run"], repo)
    assert "nothing to run" in " ".join((again.stdout + again.stderr).split())  # rich wraps long lines

    res = _sh([sys.executable, "-m", "vaeflow", "run", "--out", "elsewhere"], repo)  # plain params, another dir
    assert (repo / "elsewhere" / "reports" / "report.md").is_file()
    assert "up to date" in _sh(["dvc", "status"], repo).stdout
