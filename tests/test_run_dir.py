"""Where a run writes (vaeflow.paths.run_dir): runs with other params keep the default results (fast)."""
from __future__ import annotations

from pathlib import Path

from vaeflow.paths import run_dir


def test_the_default_run_writes_into_the_project(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    p = tmp_path / "params.yaml"
    assert run_dir(tmp_path, p, [], None, tracked=True, dvc_project=True) == tmp_path
    assert run_dir(tmp_path, p, ["seed=1"], None, tracked=False, dvc_project=False) == tmp_path  # no DVC: as before


def test_other_params_in_a_dvc_project_write_under_runs(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("seed: 0\n")
    a = run_dir(tmp_path, p, ["seed=1"], None, tracked=False, dvc_project=True)
    assert a.parent == tmp_path / "runs" and a.name.startswith("params-")
    assert a == run_dir(tmp_path, p, ["seed=1"], None, tracked=False, dvc_project=True)  # same settings, same dir
    assert a != run_dir(tmp_path, p, ["seed=2"], None, tracked=False, dvc_project=True)
    other = tmp_path / "mnist.yaml"
    other.write_text("seed: 0\n")
    assert run_dir(tmp_path, other, [], None, tracked=False, dvc_project=True).name.startswith("mnist-")


def test_out_wins(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("seed: 0\n")
    assert run_dir(tmp_path, p, [], Path("x"), tracked=True, dvc_project=True) == Path("x")
