"""DVC's experiment workflow as DVC's docs show it, in a real git repository with the real `dvc`.

The slow test starts from a tiny project that `dvc repro` ran in a fresh git repo (conftest's dvc_reproduced,
params rewritten the way `dvc exp run -S` writes them), commits dvc.lock and the metrics files, and then: a no-op
`dvc exp run -S` leaves params.yaml byte-identical and `dvc params diff` empty; `dvc exp run -S adapt.epochs=2`
re-runs adapt and evaluate only; `dvc exp show` has metric values (not `!`) for the baseline and the experiment;
`dvc exp diff`, `dvc plots diff` (Vega inlined, no CDN) and `dvc exp apply` work. `dvc` is called as .venv/bin/dvc
with the venv's bin *not* on PATH, as in the issue, so the stage commands must find `vaeflow` themselves.
The fast tests check the pieces that make this work without running anything.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY
from vaeflow import uptodate
from vaeflow.paths import Paths

BIN = Path(sys.executable).parent


def _dvc_apply(path: Path, overrides: list[str]) -> None:
    """What `dvc exp run -S` does to a params file (DVC's own function)."""
    from dvc.utils.hydra import apply_overrides

    apply_overrides(str(path), overrides)


def test_params_yaml_is_a_fixed_point_of_dvcs_yaml_writer(tmp_path):
    """DVC rewrites params.yaml with ruamel (round trip, block style, None as an empty value): the committed
    file is laid out that way, so an unchanged value leaves it byte-identical and a changed one one line."""
    p = tmp_path / "params.yaml"
    original = (REPO / "params.yaml").read_text()
    p.write_text(original)
    _dvc_apply(p, ["adapt.epochs=" + str(yaml.safe_load(original)["adapt"]["epochs"])])
    assert p.read_text() == original
    _dvc_apply(p, ["adapt.epochs=2", "data.subset=100"])
    changed = [(a, b) for a, b in zip(original.splitlines(), p.read_text().splitlines()) if a != b]
    assert len(original.splitlines()) == len(p.read_text().splitlines())
    assert [b.split("#")[0].strip() for _, b in changed] == ["subset: 100", "epochs: 2"], changed


def test_dvc_yaml_commands_plots_and_offline_template():
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for name, stage in spec["stages"].items():
        # appended, not prepended: an activated venv's vaeflow wins; .venv/bin only when none is on PATH
        command = "validate --stamp" if name == uptodate.CHECK else f"stage {name}"
        assert stage["cmd"] == f'PATH="$PATH:$DVC_ROOT/.venv/bin" vaeflow {command}'
    plotted = {next(iter(p)) for p in spec["plots"]}
    variants = yaml.safe_load((REPO / "params.yaml").read_text())["adapt"]["variants"]
    assert {f"metrics/plots/adapt/confusion_{v}.csv" for v in variants} <= plotted
    template = (REPO / ".dvc" / "offline_plots.html").read_text()
    assert "{plot_divs}" in template and "{scripts}" not in template  # no CDN <script src=...> is inserted
    assert "<script src=" not in template and "vegaEmbed" in template
    assert "html_template = offline_plots.html" in (REPO / ".dvc" / "config").read_text()


def test_every_stage_runs_after_the_params_check():
    """DVC deletes a stage's outputs before it runs the stage: each stage depends on the check stage's output,
    so DVC validates params.yaml first. That output is the same text every time (no stage reruns for it), stays
    when the check fails (persist), and is git-ignored (cache: false, so DVC does not ignore it itself)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    stamp = str(Paths().params_checked)
    assert list(stages)[0] == uptodate.CHECK and stages[uptodate.CHECK]["deps"] == ["params.yaml"]
    assert stages[uptodate.CHECK]["outs"] == [{stamp: {"cache": False, "persist": True}}]
    for name, stage in stages.items():
        assert name == uptodate.CHECK or stamp in stage["deps"], name
    for ignore in (REPO / ".gitignore", REPO / "vaeflow" / "templates" / "gitignore"):
        assert f"/{stamp}" in ignore.read_text().splitlines(), ignore


def test_the_check_stage_writes_the_same_text_after_validating(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vaeflow.flows.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    res = CliRunner().invoke(app, ["validate", "--stamp"])
    assert res.exit_code == 0, res.output
    first = Paths().params_checked.read_bytes()
    assert first.decode() == uptodate.CHECKED_TEXT and res.output.strip() == "params.yaml: valid"
    _dvc_apply(tmp_path / "params.yaml", ["adapt.epochs=-1"])
    res = CliRunner().invoke(app, ["validate", "--stamp"])
    assert res.exit_code == 2 and "adapt.epochs" in res.output, res.output
    assert Paths().params_checked.read_bytes() == first
    res = CliRunner().invoke(app, ["validate", "--stamp", "--set", "adapt.epochs=2"])
    assert res.exit_code == 2 and "--stamp" in res.output, res.output


def test_metrics_files_are_not_git_ignored():
    """dvc exp show/diff read the cache: false metrics from each commit: git must not ignore them."""
    paths = ["metrics/metrics.json", "metrics/adapt.json", "metrics/plots/pretrain.csv",
             "metrics/plots/adapt/confusion_dann.csv", "dvc.lock"]
    res = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=REPO, capture_output=True, text=True)
    assert res.stdout.strip() == "", res.stdout


def _env() -> dict[str, str]:
    """The venv's bin is *not* on PATH (the issue's `.venv/bin/dvc exp run`); dvc.yaml's cmd must cope."""
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p).resolve() != BIN.resolve())
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PREFECT_API_URL")}
    return env | {"PATH": path, "OMP_NUM_THREADS": "1"}


def _sh(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    if args[0] == "dvc":
        args = [str(BIN / "dvc"), *args[1:]]
    res = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


def _git(cwd: Path, *args: str) -> str:
    return _sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd).stdout


def _ran(out: str) -> set[str]:
    import re

    return set(re.findall(r"Running stage '(\w+)'", out))


def _metric_rows(repo: Path) -> dict[str, dict[str, str]]:
    """`dvc exp show --csv`: Experiment (or rev) -> the accuracy columns of metrics/summary.json."""
    text = _sh(["dvc", "exp", "show", "--csv"], repo).stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    return {(r.get("Experiment") or r.get("rev") or ""):
            {k: v for k, v in r.items() if ":acc_" in k or k.startswith("acc_")} for r in rows}


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_dvc_experiment_workflow(dvc_reproduced, tmp_path):
    # conftest's reproduced tiny project (dvc repro ran every stage there: test_dvc checks it), copied, with
    # params.yaml rewritten in the layout DVC writes: the same values, so the outputs stand (DVC compares values).
    repo = Path(shutil.copytree(dvc_reproduced[0], tmp_path / "repo", symlinks=True, copy_function=shutil.copy2))
    (repo / ".venv").symlink_to(BIN.parent)  # the project's venv, where dvc.yaml's cmd falls back to
    (repo / ".git" / "info" / "exclude").write_text(".venv\n.prefect/\n")  # the venv link, the tests' Prefect home
    (repo / "params.yaml").write_text((REPO / "params.yaml").read_text())
    _dvc_apply(repo / "params.yaml", TINY)  # tiny, in the layout DVC writes
    assert _ran(_sh(["dvc", "repro"], repo).stdout) <= {"check"}  # params.yaml's text changed, not its values
    # What DVC projects commit after a run: dvc.lock and the small metrics files; the rest is ignored.
    _git(repo, "branch", "-m", "main")
    _git(repo, "add", "params.yaml", "dvc.lock", "metrics")
    _git(repo, "commit", "-qm", "baseline")
    assert _git(repo, "status", "--porcelain") == "", "git status not clean after dvc repro + commit"
    assert "metrics/metrics.json" in _git(repo, "ls-files", "metrics")

    # A no-op experiment: params.yaml byte-identical, nothing re-run, `dvc params diff` clean.
    before = (repo / "params.yaml").read_bytes()
    noop = _sh(["dvc", "exp", "run", "-S", "adapt.epochs=1"], repo)
    assert _ran(noop.stdout) == set(), noop.stdout
    assert (repo / "params.yaml").read_bytes() == before
    assert _sh(["dvc", "params", "diff"], repo).stdout.strip() == ""

    # A bad value: refused by the check stage, before DVC deletes any stage's outputs.
    kept = {p: p.read_bytes() for p in [*(repo / "models").rglob("*"), *(repo / "metrics").rglob("*")] if p.is_file()}
    bad = _sh(["dvc", "exp", "run", "-S", "adapt.epochs=-1"], repo, check=False)
    assert bad.returncode != 0 and _ran(bad.stdout) == {"check"}, bad.stdout
    assert "adapt.epochs" in bad.stdout + bad.stderr
    assert {p: p.read_bytes() for p in kept if p.is_file()} == kept
    (repo / "params.yaml").write_bytes(before)  # DVC leaves the value in params.yaml (docs/dvc.md)

    exp = _sh(["dvc", "exp", "run", "-S", "adapt.epochs=2", "-n", "ep2"], repo)
    assert _ran(exp.stdout) == {"check", "adapt", "evaluate"}, exp.stdout
    after = (repo / "params.yaml").read_text().splitlines()
    diff = [b for a, b in zip(before.decode().splitlines(), after) if a != b]
    assert len(after) == len(before.decode().splitlines()) and [d.strip() for d in diff] == ["epochs: 2"], diff

    rows = _metric_rows(repo)
    for name in ("main", "ep2"):
        row = next(v for k, v in rows.items() if name in k)
        assert row and len(row) >= 2 and all(v not in ("", "!", "-") for v in row.values()), (name, rows)
    shown = _sh(["dvc", "exp", "show", "--no-pager"], repo).stdout
    assert " ! " not in shown, shown

    assert "adapt.epochs" in _sh(["dvc", "exp", "diff", "main", "ep2"], repo).stdout
    _sh(["dvc", "plots", "diff", "main", "ep2", "-o", str(tmp_path / "plots")], repo)
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "confusion_mean_teacher.csv" in html and "VAE training" in html
    assert "cdn.jsdelivr" not in html and "<script src=" not in html  # Vega is inlined: renders offline
    _renders_offline(tmp_path / "plots" / "index.html", html.count("vegaEmbed("))

    _git(repo, "checkout", "-q", "--", ".")  # back to the baseline, then apply the experiment
    _sh(["dvc", "checkout"], repo)
    _sh(["dvc", "exp", "apply", "ep2"], repo)
    assert yaml.safe_load((repo / "params.yaml").read_text())["adapt"]["epochs"] == 2
    assert "up to date" in _sh(["dvc", "status"], repo).stdout


def _renders_offline(page: Path, plots: int) -> None:
    """Every Vega plot of the page draws (vega-embed creates its `.marks` canvas) in a headless Chromium
    with the network switched off. Skipped where no Chromium is installed (tests/browser.py)."""
    from browser import Browser, find_chromium

    exe = find_chromium()
    if exe is None:
        return
    marks = "document.querySelectorAll('.vega-embed .marks').length"
    with Browser(exe) as b:
        b.call("Network.enable")
        b.call("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1,
               uploadThroughput=-1)
        b.goto(page.as_uri())
        assert plots >= 7 and b.wait_for(f"{marks} >= {plots} && {marks}", timeout=60) == plots
