"""The protocol: no target training label reaches an unsupervised variant, and the selection rule is the
one written into the metrics.

Permute the target domain's training labels in the prepared data and rerun `adapt`: every variant that
learns from source labels and unlabelled target images must end with bit-identical weights. A variant
that read a target label anywhere (a batch, a threshold, a model choice) would change.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vaeflow.tasks import STAGES
from tests.cli_utils import copy_tree
from tests.conftest import REPO, TINY
from vaeflow.config import load_config
from vaeflow.data import load_domain, save_domain
from vaeflow.io import load_torch
from vaeflow.paths import Paths
from vaeflow.variants import NAMES, reads_target_labels

pytestmark = pytest.mark.slow  # adapt runs every registered variant three times

# Every variant of the registry, so a new one is checked without touching this file.
UNSUPERVISED = [v for v in NAMES if not reads_target_labels(v)]
CFG = TINY + [f"adapt.variants=[{', '.join(NAMES)}]", "adapt.repeats=1", "adapt.layer_bn=true",
              "adapt.epochs=2", "adapt.self_training.rounds=1", "adapt.self_training.epochs=1", "adapt.shot.epochs=1",
              "adapt.self_training.threshold=0.5", "adapt.mean_teacher.threshold=0.3", "adapt.fixmatch.threshold=0.3",
              "adapt.augment.intensity_flip=0.5"]  # the flip's draws are checked label-blind too


def _permute_target_train_labels(root) -> None:
    path = Paths(root).domain("target")
    d, obs = load_domain(path)
    perm = np.random.default_rng(0).permutation(len(d.y_train))
    assert (d.y_train[perm] != d.y_train).mean() > 0.5  # really scrambled
    from dataclasses import replace
    save_domain(path, replace(d, y_train=d.y_train[perm]), obs["obs_val"], obs["obs_test"])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    cfg = load_config(REPO / "params.yaml", CFG)
    a, b = tmp_path_factory.mktemp("labels"), tmp_path_factory.mktemp("permuted")
    for stage in ("prepare", "pretrain"):
        STAGES[stage](cfg, Paths(a))
    copy_tree(a, b, "data/prepared")
    copy_tree(a, b, "models")
    _permute_target_train_labels(b)
    return cfg, {root: STAGES["adapt"](cfg, Paths(root)) for root in (a, b)}, a, b


def test_every_unsupervised_variant_is_blind_to_the_target_training_labels(two_runs):
    cfg, _, a, b = two_runs
    assert {"source_only", "adabn", "dann", "self_training", "mean_teacher", "shot"} <= set(UNSUPERVISED)
    for v in UNSUPERVISED:
        wa, wb = load_torch(Paths(a).adapt_model(v)), load_torch(Paths(b).adapt_model(v))
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f"{v} read a target training label"


def test_a_variant_that_reads_target_labels_does_change(two_runs):
    """The check above can fail: finetune, which trains on target labels, ends elsewhere; so does joint_oracle,
    whose target labels come to it beside the unlabelled stream."""
    _, _, a, b = two_runs
    for v in ("finetune", "joint_oracle"):
        wa, wb = load_torch(Paths(a).adapt_model(v)), load_torch(Paths(b).adapt_model(v))
        assert not all(torch.equal(wa[k], wb[k]) for k in wa), v


def test_the_selection_rule_is_written_down(two_runs):
    _, results, a, _ = two_runs
    out = results[a]
    assert out["selection_rule"] == "last" and "no target label" in out["selection"]
    assert out["intensity_flip"] == 0.5  # what the methods trained with, written down beside the rule


def test_shared_pools_give_both_domains_the_whole_dataset_and_refuse_source_labels():
    """data.pools=shared (the semi-supervised protocol): source and target are the same images, so a variant
    that trains on source labels would train on target labels; the params are refused before anything runs."""
    from vaeflow.config import ConfigError
    from vaeflow.data.datasets import build_domains

    base = ["data.source=digits", "data.target=digits", "data.subset=null"]
    with pytest.raises(ConfigError, match="source_only.*would read target labels"):
        load_config(REPO / "params.yaml", base + ["data.pools=shared"])
    few = base + ["adapt.variants=[finetune, mean_teacher_few]"]
    shared = build_domains(load_config(REPO / "params.yaml", few + ["data.pools=shared"]))
    disjoint = build_domains(load_config(REPO / "params.yaml", few))
    n = lambda d: sum(d.counts().values())  # noqa: E731
    assert n(shared[0]) == n(shared[1]) == 1797  # all of scikit-learn's digits, in each domain
    assert n(disjoint[0]) + n(disjoint[1]) == 1797  # split between them


def test_a_variant_alone_gives_the_same_weights_as_inside_the_full_list(two_runs, tmp_path):
    """Seeds depend on (seed, repeat) only: rerunning one variant reproduces it bit for bit."""
    cfg, results, a, _ = two_runs
    alone = load_config(REPO / "params.yaml", CFG + ["adapt.variants=[dann]"])
    copy_tree(a, tmp_path, "data/prepared")
    copy_tree(a, tmp_path, "models")
    out = STAGES["adapt"](alone, Paths(tmp_path))
    wa, wb = load_torch(Paths(a).adapt_model("dann")), load_torch(Paths(tmp_path).adapt_model("dann"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert out["variants"]["dann"]["target_test_acc_runs"] == results[a]["variants"]["dann"]["target_test_acc_runs"]


def test_paired_differences_are_per_repeat_differences(two_runs):
    _, results, a, _ = two_runs
    out = results[a]
    runs = out["variants"]
    for v, d in out["paired"].items():
        assert d["reference"] == "source_only"
        expected = [x - y for x, y in zip(runs[v]["target_test_acc_runs"], runs["source_only"]["target_test_acc_runs"])]
        assert d["runs"] == pytest.approx(expected)
