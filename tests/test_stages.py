"""Each stage on a tiny config, through the real code path, checking what it writes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vaeflow.tasks import STAGES
from vaeflow.io import load_npz, load_torch
from vaeflow.paths import Paths
from vaeflow.prepared import load_prepared, load_vae


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Run all five stages once on the tiny config; tests below inspect the artifacts."""
    from tests.conftest import REPO, TINY
    from vaeflow.config import load_config

    root = tmp_path_factory.mktemp("proj")
    cfg = load_config(REPO / "params.yaml", TINY)
    paths = Paths(root)
    results = {name: fn(cfg, paths) for name, fn in STAGES.items()}
    return cfg, paths, results


def test_prepare_writes_both_domains(ran):
    cfg, paths, _ = ran
    data = load_prepared(paths)
    assert data.source.x_train.shape[1:] == (1, 8, 8) and len(data.source.x_train) == 150
    x_test, dom = data.likelihood_split("test")
    assert set(np.unique(dom)) == {0, 1}
    # gaussian data model: dequantised values in [0,1)
    assert x_test.min() >= 0 and x_test.max() < 1
    meta = json.loads(paths.data_meta.read_text())
    assert meta["domains"]["source"]["levels"] == meta["domains"]["target"]["levels"] == 17
    assert (paths.figures / "data_examples.png").stat().st_size > 1000


def test_gmm_stage_scores_the_shared_test_set(ran):
    cfg, paths, res = ran
    g = res["gmm"]
    assert g["n_components"] in (2, 3) and set(g["bic"]) == {"2", "3"}
    arrays = load_npz(paths.gmm)
    assert arrays["weights"].sum() == pytest.approx(1.0, abs=1e-6)
    # The saved mixture rescored independently (scipy, diagonal Gaussians) on the shared test images gives
    # the stage's numbers: overall, per domain, and the overall as the count-weighted mean of the two.
    from scipy.special import logsumexp
    from scipy.stats import norm

    x, dom = load_prepared(paths).likelihood_split("test")
    x = x.reshape(len(x), -1).astype(np.float64)
    comp = norm.logpdf(x[:, None, :], arrays["means"][None], np.sqrt(arrays["covariances"])[None]).sum(-1)
    ll = logsumexp(comp + np.log(arrays["weights"]), axis=1)
    assert g["n_test"] == len(x) and set(np.unique(dom)) == {0, 1}
    assert g["test_nll_nats"] == pytest.approx(-ll.mean(), rel=1e-6)
    assert g["test_nll_nats_source"] == pytest.approx(-ll[dom == 0].mean(), rel=1e-6)
    assert g["test_nll_nats_target"] == pytest.approx(-ll[dom == 1].mean(), rel=1e-6)
    n_s, n_t = int((dom == 0).sum()), int((dom == 1).sum())
    assert g["test_nll_nats"] == pytest.approx(
        (n_s * g["test_nll_nats_source"] + n_t * g["test_nll_nats_target"]) / (n_s + n_t), rel=1e-9)
    d = 64
    assert g["test_bits_per_dim"] == pytest.approx((g["test_nll_nats"] + d * np.log(17)) / (d * np.log(2)))


def test_pretrain_stage_writes_weights_and_bounds(ran):
    cfg, paths, res = ran
    p = res["pretrain"]
    assert p["iwae_samples"] == 20 and p["epochs_run"] == 2
    assert p["test_nll_nats"] <= p["test_nelbo_nats"] + 3 * p["test_nll_stderr"]
    sd = load_torch(paths.vae)
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    vae = load_vae(paths)
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in sd.items()) and vae.state_dict().keys() == sd.keys()
    x, _ = load_prepared(paths).likelihood_split("test")
    mu, logvar = vae.encode(torch.as_tensor(x[:5], dtype=torch.float32))
    assert mu.shape == logvar.shape == (5, cfg.vae.latent_dim) == (5, 4)  # TINY's vae.latent_dim=4
    for f in ("vae_reconstructions", "vae_samples", "vae_latent", "vae_curve"):
        assert (paths.figures / f"{f}.png").is_file()
    lines = (paths.plots / "pretrain.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,val_nelbo" and len(lines) == 3


def test_adapt_stage_scores_every_variant(ran):
    cfg, paths, res = ran
    v = res["adapt"]["variants"]
    from vaeflow.variants import DEFAULT

    assert set(v) == set(DEFAULT) == set(cfg.adapt.variants)
    n_test = len(load_prepared(paths).target.y_test)
    for name, r in v.items():
        runs = np.array(r["target_test_acc_runs"]) * n_test  # each run's accuracy counts test images
        assert np.allclose(runs, np.round(runs), atol=1e-6), (name, runs)
        assert np.array(r["confusion"]).sum() == n_test
        # The confusion matrix is the first repeat's; the headline accuracy is the mean over repeats.
        assert np.trace(np.array(r["confusion"])) / n_test == pytest.approx(r["target_test_acc_runs"][0])
        assert r["target_test_acc"] == pytest.approx(np.mean(r["target_test_acc_runs"]))
        assert len(r["target_test_acc_runs"]) == cfg.adapt.repeats
        assert paths.adapt_model(name).is_file()
    assert v["adabn"]["target_test_acc_runs"] != v["source_only"]["target_test_acc_runs"]  # target statistics
    assert v["finetune"]["n_labelled"] == v["scratch"]["n_labelled"] == cfg.adapt.labels_per_class * 10
    # the settings the variant decides are recorded as resolved: the mean teacher on source labels, with "auto",
    # trains with the floor; a method without such settings records none
    assert v["mean_teacher"]["settings"]["align_floor"] is (cfg.adapt.mean_teacher.align_floor in ("auto", True))
    assert "settings" not in v["dann"]


def test_evaluate_collects_metrics_and_report(ran):
    cfg, paths, _ = ran
    m = json.loads(paths.all_metrics.read_text())
    for key in ("test_nll_nats", "test_bits_per_dim"):
        assert key in m["gmm"]
    for key in ("test_nelbo_nats", "test_nll_nats", "iwae_samples", "test_bits_per_dim"):
        assert key in m["vae"]
    assert set(m["adapt"]) == set(cfg.adapt.variants)
    assert "vae_train" in m["seconds"] and "gmm_fit" in m["seconds"]
    report = paths.report.read_text()
    for fig in paths.figures.glob("*.png"):
        assert f"figures/{fig.name}" in report, fig.name
    # the settings a variant resolved for itself reach the report's notes, as the metrics record them
    mt = m["adapt"]["mean_teacher"]["settings"]
    from vaeflow.variants import BY_NAME
    line = next(ln for ln in report.splitlines() if ln.startswith(f"- `mean_teacher`: {BY_NAME['mean_teacher'].note}"))
    tail = line[line.index(" [trained with "):]
    assert tail.endswith("]") and all(f"{k} {str(v).lower()}" in tail for k, v in mt.items()), line
    assert "align_floor true" in tail  # "auto" on source labels is the floor


def test_bernoulli_data_model_end_to_end(tmp_path):
    """prepare → gmm (mixture of Bernoullis) → pretrain (Bernoulli decoder): binary test data, bits/dim without
    the dequantisation term, and the same test images for both models."""
    from tests.conftest import REPO, TINY
    from vaeflow.config import load_config

    cfg = load_config(REPO / "params.yaml", TINY + ["data.likelihood=bernoulli"])
    paths = Paths(tmp_path)
    STAGES["prepare"](cfg, paths)
    x_test, _ = load_prepared(paths).likelihood_split("test")
    assert set(np.unique(x_test)) <= {0.0, 1.0}
    g, p = STAGES["gmm"](cfg, paths), STAGES["pretrain"](cfg, paths)
    assert g["family"] == "bernoulli" and g["n_test"] == p["n_test"] == len(x_test)
    for r in (g, p):
        assert r["test_bits_per_dim"] == pytest.approx(r["test_nll_nats"] / (64 * np.log(2)))
    assert 0 < g["test_nll_nats"] < 64 * np.log(2)  # better than a fair coin per pixel


def test_adapt_self_training_continues_each_dann_run(ran):
    cfg, paths, _ = ran
    from vaeflow.tasks import adapt
    from tests.conftest import REPO, TINY
    from vaeflow.config import load_config

    # dann.ema=0: these 40 tiny epochs are shorter than the weight average's horizon, so it would average every
    # student since the start and be confident about nothing; what this test checks is the continuation itself
    cfg = load_config(REPO / "params.yaml", TINY + ["adapt.variants=[dann, self_training]", "adapt.dann.ema=0",
                                                    "adapt.self_training.rounds=2", "adapt.self_training.epochs=1",
                                                    "adapt.self_training.threshold=0.5", "adapt.epochs=40",
                                                    "adapt.lr=0.01", "adapt.head_hidden=64"])
    v = adapt.run(cfg, paths)["variants"]
    st = v["self_training"]
    assert st["labelled_domain"] == "source" and st["n_labelled"] == v["dann"]["n_labelled"]
    n_target = len(load_prepared(paths).target.x_train)
    assert len(st["rounds"]) == cfg.adapt.repeats  # one list of rounds per repeat
    for rounds in st["rounds"]:
        assert [r["round"] for r in rounds] == [0, 1]
        for r in rounds:
            assert 0 < r["pseudo_labelled"] <= n_target and sum(r["per_class"]) == r["pseudo_labelled"], rounds
    assert st["target_test_acc_runs"] != v["dann"]["target_test_acc_runs"]  # it trained on from dann
    assert paths.checkpoint("adapt_self_training_0").is_file()
