"""A corpus of malformed params files, overrides and missing inputs, through the real `vaeflow` CLI.

Every case must exit with code 2 as the README promises (no uncaught exception, no traceback), name the offending key
or file in its message, and leave data/, models/, metrics/ and reports/ exactly as they were. Most run
in-process through typer's CliRunner (the same `app` the `vaeflow` script calls); a few run as real
subprocesses to see the raw stderr.
"""
from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from vaeflow.flows.cli import app
from vaeflow.tasks import STAGES
from tests.cli_utils import run_cli, sets, tree_hash
from tests.conftest import REPO, TINY
from vaeflow.config import load_config
from vaeflow.paths import Paths

FILES = {
    "typo_top.yaml": "sed: 1\n",
    "typo_nested.yaml": "vae:\n  latnet_dim: 8\n",
    "duplicate.yaml": "seed: 0\nvae:\n  latent_dim: 8\nseed: 1\n",
    "section_scalar.yaml": "pretrain: 5\n",
    "empty.yaml": "",
    "comments.yaml": "# nothing but a comment\n",
    "list.yaml": "- seed\n- 0\n",
    "scalar.yaml": "just a string\n",
    "broken.yaml": "vae: [1, 2\n",
    "binary.yaml": b"\xff\xfe\x00\x01seed",
    "contradiction.yaml": "data:\n  likelihood: bernoulli\ngmm:\n  family: gaussian\n",
}

# (id, project, argv, words the message must contain). project: "prepared" has data/prepared and the
# prepare figure; "empty" has only params.yaml.
CASES = [
    # typos
    ("typo-top-file", "prepared", ["validate", "-p", "typo_top.yaml"], ["sed", "seed"]),
    ("typo-nested-file", "prepared", ["stage", "prepare", "-p", "typo_nested.yaml"],
     ["vae.latnet_dim", "vae.latent_dim"]),
    ("typo-section", "prepared", ["run", "--set", "pretrian.epochs=3"], ["pretrian", "pretrain"]),
    ("typo-key", "prepared", ["stage", "pretrain", "--set", "data.likelihod=bernoulli"], ["data.likelihod"]),
    ("typo-dataset", "prepared", ["validate", "--set", "data.source=mnst"], ["data.source", "mnist"]),
    ("typo-variant", "prepared", ["stage", "adapt", "--set", "adapt.variants=[dan]"], ["adapt.variants", "dan"]),
    ("duplicate-key-file", "prepared", ["run", "-p", "duplicate.yaml"], ["duplicate.yaml", "seed", "twice"]),
    # wrong types
    ("type-int", "prepared", ["validate", "--set", "vae.latent_dim=abc"], ["vae.latent_dim", "abc"]),
    ("type-list", "prepared", ["stage", "pretrain", "--set", "vae.hidden=16"], ["vae.hidden"]),
    ("type-float", "prepared", ["run", "--set", "pretrain.lr=[1]"], ["pretrain.lr"]),
    ("type-fraction", "prepared", ["validate", "--set", "seed=1.5"], ["seed"]),
    ("type-bool", "prepared", ["stage", "prepare", "--set", "pretrain.use_tuned=maybe"], ["pretrain.use_tuned"]),
    ("type-section-file", "prepared", ["validate", "-p", "section_scalar.yaml"], ["pretrain"]),
    ("type-into-scalar", "prepared", ["validate", "--set", "seed.x=1"], ["seed"]),
    ("type-bad-yaml-value", "prepared", ["stage", "gmm", "--set", "vae.hidden=[32"], ["vae.hidden"]),
    # out of range
    ("range-lr-zero", "prepared", ["stage", "pretrain", "--set", "pretrain.lr=0"], ["pretrain.lr"]),
    ("range-inf", "prepared", ["run", "--set", "pretrain.beta=.inf"], ["pretrain.beta", "finite"]),
    ("range-nan", "prepared", ["validate", "--set", "adapt.lr=.nan"], ["adapt.lr", "finite"]),
    ("range-latent", "prepared", ["stage", "pretrain", "--set", "vae.latent_dim=0"], ["vae.latent_dim"]),
    ("choice-precision", "prepared", ["validate", "--set", "adapt.precision=fp16"], ["adapt.precision", "bf16"]),
    ("range-subset", "prepared", ["stage", "prepare", "--set", "data.subset=5"], ["data.subset"]),
    ("range-k-empty", "prepared", ["stage", "gmm", "--set", "gmm.n_components=[]"], ["gmm.n_components"]),
    ("range-seed", "prepared", ["validate", "--set", "seed=-1"], ["seed"]),
    ("range-rotation", "prepared", ["stage", "prepare", "--set", "data.shift.rotation_deg=400"],
     ["data.shift.rotation_deg"]),
    ("range-device", "prepared", ["run", "--set", "device=tpu"], ["device", "tpu"]),
    # contradictions
    ("bernoulli-vs-gaussian-gmm", "prepared", ["stage", "gmm", "--set", "data.likelihood=bernoulli",
                                              "--set", "gmm.family=gaussian"], ["gmm.family", "data.likelihood"]),
    ("bernoulli-vs-gaussian-file", "prepared", ["run", "-p", "contradiction.yaml"], ["gmm.family", "data.likelihood"]),
    ("iwae-chunk-over-samples", "prepared", ["stage", "pretrain", "--set", "eval.iwae_chunk=2000"],
     ["eval.iwae_chunk", "eval.iwae_samples"]),
    ("fractions-leave-no-train", "prepared", ["stage", "prepare", "--set", "data.val_fraction=0.45",
                                             "--set", "data.test_fraction=0.45"], ["data.val_fraction"]),
    ("variant-twice", "prepared", ["stage", "adapt", "--set", "adapt.variants=[dann,dann]"], ["adapt.variants"]),
    ("variants-empty", "prepared", ["validate", "--set", "adapt.variants=[]"], ["adapt.variants"]),
    ("grace-over-max", "prepared", ["validate", "--set", "tune.grace_period=50"], ["grace_period", "max_epochs"]),
    ("lenet-backbone-mlp-vae", "prepared", ["stage", "adapt", "--set", "adapt.backbone=lenet"], ["adapt.backbone"]),
    ("images-too-small-for-lenet", "prepared", ["stage", "prepare", *sets(TINY), "--set", "vae.arch=lenet"],
     ["vae.arch=lenet", "8×8", "data.image_size"]),
    ("images-too-small-for-convnet", "prepared", ["run", *sets(TINY), "--set", "adapt.backbone=convnet", "--set",
                                                  "adapt.warm_start=false"], ["adapt.backbone=convnet", "data.image_size"]),
    # missing files
    ("npz-source-missing", "prepared", ["stage", "prepare", *sets(TINY), "--set", "data.source=npz:/nonexistent/dir"],
     ["/nonexistent/dir"]),
    ("folder-target-missing", "prepared", ["stage", "prepare", *sets(TINY), "--set",
                                          "data.target=folder:/nonexistent/imgs"], ["/nonexistent/imgs"]),
    ("gmm-before-prepare", "empty", ["stage", "gmm", *sets(TINY)], ["data/prepared/source.npz"]),
    ("adapt-before-pretrain", "prepared", ["stage", "adapt", *sets(TINY)], ["models/vae"]),
    ("evaluate-before-anything", "prepared", ["stage", "evaluate", *sets(TINY)], ["metrics/"]),
    ("use-tuned-without-tuning", "prepared", ["stage", "pretrain", *sets(TINY), "--set", "pretrain.use_tuned=true"],
     ["models/tuned/best_config.json"]),
    ("params-file-missing", "prepared", ["stage", "prepare", "-p", "nonexistent.yaml"], ["nonexistent.yaml"]),
    ("params-file-is-dir", "prepared", ["run", "-p", "data"], ["data"]),
    # empty and non-mapping YAML
    ("yaml-empty", "prepared", ["validate", "-p", "empty.yaml"], ["empty.yaml", "empty"]),
    ("yaml-comments-only", "prepared", ["stage", "prepare", "-p", "comments.yaml"], ["comments.yaml"]),
    ("yaml-list", "prepared", ["run", "-p", "list.yaml"], ["list.yaml", "mapping"]),
    ("yaml-scalar", "prepared", ["validate", "-p", "scalar.yaml"], ["scalar.yaml", "mapping"]),
    ("yaml-syntax", "prepared", ["stage", "pretrain", "-p", "broken.yaml"], ["broken.yaml"]),
    ("yaml-binary", "prepared", ["validate", "-p", "binary.yaml"], ["binary.yaml"]),
    # the command line itself
    ("unknown-stage", "prepared", ["stage", "pretrian"], ["pretrian"]),
    ("override-without-value", "prepared", ["validate", "--set", "seed"], ["seed", "KEY=VALUE"]),
    ("override-empty-key", "prepared", ["run", "--set", "=3"], ["=3"]),
]
if not torch.cuda.is_available():
    CASES.append(("cuda-without-gpu", "prepared", ["stage", "pretrain", *sets(TINY), "--set", "device=cuda"],
                  ["device", "cuda"]))


def _write_files(root):
    for name, text in FILES.items():
        (root / name).write_bytes(text if isinstance(text, bytes) else text.encode())


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """Two scratch projects: one after `prepare` (so a stage that wrote anything would show), one bare."""
    import shutil

    out = {}
    for kind in ("prepared", "empty"):
        root = tmp_path_factory.mktemp(kind)
        shutil.copy(REPO / "params.yaml", root / "params.yaml")
        _write_files(root)
        out[kind] = root
    STAGES["prepare"](load_config(REPO / "params.yaml", TINY), Paths(out["prepared"]))
    return out


def test_corpus_is_big_and_covers_every_category():
    ids = [c[0] for c in CASES]
    assert len(ids) >= 30 and len(set(ids)) == len(ids)


def _plain(text: str) -> str:
    return " ".join(text.split())  # rich wraps long messages; keys and paths stay whole


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_cleanly_and_changes_nothing(projects, monkeypatch, case):
    _, kind, argv, expect = case
    root = projects[kind]
    monkeypatch.chdir(root)
    before = tree_hash(root)
    res = CliRunner().invoke(app, argv)
    out = _plain(res.output)
    assert res.exit_code == 2, f"exit {res.exit_code} (README: 2 for invalid params or a missing input): {out}"
    assert isinstance(res.exception, SystemExit), f"uncaught {res.exception!r}: {out}"
    assert "Traceback" not in out
    for word in expect:
        assert word in out, f"{word!r} not in: {out}"
    assert tree_hash(root) == before


@pytest.mark.parametrize("argv,expect", [
    (["validate", "-p", "empty.yaml"], "empty.yaml"),
    (["stage", "gmm", "--set", "device=cpu"], "data/prepared/source.npz"),
], ids=["validate", "stage"])
def test_real_process_prints_no_traceback(projects, argv, expect):
    root = projects["empty"]
    before = tree_hash(root)
    p = run_cli(root, *argv)
    assert p.returncode == 2 and "Traceback" not in p.stdout and expect in _plain(p.stdout), p.stdout
    assert tree_hash(root) == before


@pytest.mark.slow  # a real `vaeflow run`: Prefect's server and the flow
def test_run_reports_an_unreadable_data_file_from_inside_the_flow_without_traceback(projects, tmp_path):
    """Params are valid and the files exist (a missing path is refused before the flow starts), so this gets
    into the Prefect flow; the error comes from the prepare task."""
    root = projects["empty"]
    data = tmp_path / "bad_npz"
    data.mkdir()
    for name in ("train.npz", "test.npz"):
        (data / name).write_bytes(b"not a zip archive")
    before = tree_hash(root)
    p = run_cli(root, "run", *sets(TINY), "--set", f"data.source=npz:{data}")
    assert p.returncode == 2, p.stdout
    out = _plain(p.stdout)
    assert "Traceback" not in out and f"error: stage prepare failed: {data}/train.npz: unreadable .npz" in out, out
    assert out.count(f"{data}/train.npz") <= 2, out  # one failure line (and Prefect's own, once)
    assert tree_hash(root) == before


def test_a_gaussian_mixture_too_big_for_memory_is_refused_before_anything_runs(monkeypatch):
    """Full covariances are K × D² float64: the default K = 40 on 3×64×64 images needs ~90 GiB. Refused by
    prepare with the settings to change, instead of a process killed minutes in; what fits is not refused."""
    from vaeflow.data import DataError
    from vaeflow.tasks import prepare

    monkeypatch.setattr(prepare, "memory_bytes", lambda: 24 * 2**30)
    cfg = load_config(REPO / "params.yaml", ["gmm.covariance_type=full"])
    with pytest.raises(DataError, match=r"gmm\.covariance_type=diag.*gmm\.n_components"):
        prepare.check_gmm_memory(cfg, (3, 64, 64), "cpu")
    with pytest.raises(DataError, match=r"1 full covariances"):  # one K given as a number, not a list
        prepare.check_gmm_memory(load_config(REPO / "params.yaml", ["gmm.covariance_type=full",
                                                                    "gmm.n_components=1"]), (3, 128, 128), "cpu")
    # the default, auto, picks diag for 50,000 such images: nothing to refuse
    prepare.check_gmm_memory(load_config(REPO / "params.yaml", []), (3, 64, 64), "cpu", n=50_000)
    prepare.check_gmm_memory(cfg, (3, 32, 32), "cpu")   # 2 × 40 × 3072² × 8 B = 5.6 GiB: fits
    for fits in (["gmm.covariance_type=diag"], ["data.likelihood=bernoulli"], ["gmm.n_components=[1]"]):
        prepare.check_gmm_memory(load_config(REPO / "params.yaml", fits), (3, 64, 64), "cpu")
    prepare.check_gmm_memory(cfg, (3, 64, 64), "cuda")  # a GPU's memory is not this check's to judge
