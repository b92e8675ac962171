"""Issue 14: the AE/DAE, the Fréchet distance, the latent samplers, and exact resume of the autoencoders stage.

The maths is checked against independent computations: scipy's sqrtm formula for the Fréchet distance,
its closed form for two Gaussians that differ by a mean shift, torch.distributions for the AE objective.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import scipy.linalg
import torch

from vaeflow.tasks import STAGES
from tests.conftest import REPO, TINY
from vaeflow.config import load_config
from vaeflow.io import load_torch
from vaeflow.models.ae import Autoencoder
from vaeflow.paths import Paths
from vaeflow.sample_quality import fit_latent_samplers, frechet_distance, interpolate
from vaeflow.training.checkpoint import NonFiniteLoss

SPEC = dict(input_shape=[1, 8, 8], latent_dim=3, hidden=[16], likelihood="gaussian")
CFG = TINY + ["ae.epochs=3", "ae.patience=10"]


def _scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))


# ------------------------------------------------------------------------------------- Fréchet distance

@pytest.mark.parametrize("n,d", [(40, 3), (200, 8), (30, 12)])
def test_frechet_matches_scipy_sqrtm_formula(n, d):
    rng = np.random.default_rng(d)
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    b = rng.normal(size=(n + 7, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
    assert frechet_distance(a, b) == pytest.approx(_scipy_frechet(a, b), rel=1e-7, abs=1e-9)


def test_frechet_is_near_zero_for_one_distribution_and_grows_with_mean_shift():
    rng = np.random.default_rng(0)
    d, n = 4, 20_000
    mix = rng.normal(size=(d, d))
    draw = lambda shift=0.0: rng.normal(size=(n, d)) @ mix + shift  # noqa: E731
    base = draw()
    same = frechet_distance(base, draw())
    assert same < 0.02 * np.trace(mix.T @ mix)  # sampling noise only (closed form: 0)
    shifts = [0.25, 0.5, 1.0, 2.0]
    dists = [frechet_distance(base, draw(np.full(d, s))) for s in shifts]
    assert all(x < y for x, y in zip([same] + dists, dists))
    for s, dist in zip(shifts, dists):  # equal covariances: the distance is ‖Δμ‖² = d s²
        assert dist == pytest.approx(d * s * s, rel=0.1, abs=0.05)


def test_frechet_refuses_mismatched_features():
    with pytest.raises(ValueError, match="feature arrays"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))


# ------------------------------------------------------------------------------------- the models

def test_ae_code_is_deterministic_and_its_objective_exact():
    torch.manual_seed(0)
    ae = Autoencoder(**SPEC)
    x = torch.rand(6, 1, 8, 8)
    ae.train()  # no sampling anywhere, even in training mode
    z1, z2 = ae.code(x), ae.code(x)
    assert torch.equal(z1, z2) and z1.shape == (6, 3)
    out = ae.elbo(x)
    decoded = ae.decode(z1)
    ref = torch.distributions.Normal(decoded[:, :64], torch.exp(0.5 * ae.decoder_logvar(decoded))).log_prob(
        x.reshape(6, -1)).sum(-1)
    assert torch.allclose(out["elbo"], ref, atol=1e-4) and torch.equal(out["kl"], torch.zeros(6))
    assert torch.equal(ae.reconstruct(x), ae.decode_mean(z1))
    again = Autoencoder(**json.loads(json.dumps(ae.spec)))  # the saved spec rebuilds the same net
    again.load_state_dict(ae.state_dict())
    assert torch.equal(again.code(x), z1)
    with pytest.raises(NotImplementedError, match="latent sampler"):
        ae.sample(3)


def test_dae_noise_is_seeded_and_only_in_training():
    torch.manual_seed(0)
    dae = Autoencoder(**SPEC, noise=0.3)
    x = torch.rand(2000, 1, 8, 8)
    rng_before = torch.get_rng_state()
    dae.seed_noise(5)
    a = dae.corrupt(x)
    dae.seed_noise(5)
    b = dae.corrupt(x)
    dae.seed_noise(6)
    c = dae.corrupt(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), rng_before)  # its own generator: the global stream is untouched
    assert float((a - x).std()) == pytest.approx(0.3, rel=0.01) and abs(float((a - x).mean())) < 0.003
    dae.eval()
    plain = Autoencoder(**SPEC)
    plain.load_state_dict(dae.state_dict())
    plain.eval()
    assert torch.equal(dae.elbo(x[:5])["elbo"], plain.elbo(x[:5])["elbo"])  # clean input at evaluation


def test_latent_samplers_use_the_mixture_code_with_bic():
    rng = np.random.default_rng(0)
    codes = np.concatenate([rng.normal(-4, 0.5, size=(300, 2)), rng.normal(4, 0.5, size=(300, 2))])
    cfg = load_config(REPO / "params.yaml").gmm
    fits = fit_latent_samplers(codes, cfg, [1, 2, 5], seed=0)
    (g, g_info), (m, m_info) = fits["gaussian"], fits["gmm"]
    assert g.n_components == 1 and m_info["n_components"] == 2  # two clusters: BIC picks K = 2
    np.testing.assert_allclose(g.gm.means_[0], codes.mean(0), atol=1e-6)
    assert m.sample(50, seed=1).shape == (50, 2)
    line = interpolate(codes[:3], codes[3:6], 5)
    np.testing.assert_allclose(line[:, 0], codes[:3]) and np.testing.assert_allclose(line[:, -1], codes[3:6])
    np.testing.assert_allclose(line[:, 2], (codes[:3] + codes[3:6]) / 2)


# ------------------------------------------------------------------------------------- the stages

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """prepare, gmm, pretrain on the tiny config: what autoencoders and samplers read."""
    root = tmp_path_factory.mktemp("ae_project")
    cfg = load_config(REPO / "params.yaml", CFG)
    for stage in ("prepare", "gmm", "pretrain"):
        STAGES[stage](cfg, Paths(root))
    return root


def _copy_inputs(src, dst):
    """The stage's inputs only: the module's project may already hold an earlier test's autoencoders
    (models/ae), which a resume test must not start from."""
    for d in ("data", "models", "metrics"):
        shutil.copytree(src / d, dst / d, dirs_exist_ok=True, ignore=shutil.ignore_patterns("ae", "autoencoders.json"))


def test_autoencoders_and_samplers_stages(project):
    cfg, paths = load_config(REPO / "params.yaml", CFG), Paths(project)
    torch.manual_seed(123)
    before = torch.get_rng_state(), np.random.get_state()[1].copy()
    ae = STAGES["autoencoders"](cfg, paths)
    # The flow runs these stages in threads beside pretrain and adapt: they must not touch the global RNGs.
    assert torch.equal(torch.get_rng_state(), before[0]) and np.array_equal(np.random.get_state()[1], before[1])
    assert ae["dae"]["noise"] == cfg.ae.noise and ae["ae"]["noise"] == 0.0 and ae["ae"]["epochs_run"] == 3
    m = STAGES["samplers"](cfg, paths)
    assert torch.equal(torch.get_rng_state(), before[0]) and np.array_equal(np.random.get_state()[1], before[1])
    assert STAGES["samplers"](cfg, paths)["samplers"] == m["samplers"]  # seeded: a rerun agrees
    names = {"data_gmm", "vae_prior", "vae_gaussian", "vae_gmm", "ae_gaussian", "ae_gmm", "dae_gaussian", "dae_gmm", "real"}
    assert set(m["samplers"]) == names and all(np.isfinite(v["frechet"]) for v in m["samplers"].values())
    assert set(m["reconstruction"]) == {"vae", "ae", "dae"} and m["interpolation"]["ae"]["entropy_mid"] >= 0
    for f in ("sampler_grid", "sampler_frechet", "interpolations", "interpolation_entropy", "latent_ae_vae"):
        assert (paths.figures / f"{f}.png").stat().st_size > 1000


def test_autoencoders_resume_exactly_after_a_fault(project, tmp_path, monkeypatch):
    """A NaN injected mid-epoch in the dae (vaeflow/faults.py) stops the stage; the rerun resumes the dae's
    last checkpoint, noise generator included, and ends with the uninterrupted run's weights, bit for bit."""
    cfg = load_config(REPO / "params.yaml", CFG)
    ref, run = tmp_path / "ref", tmp_path / "run"
    for d in (ref, run):
        _copy_inputs(project, d)
    STAGES["autoencoders"](cfg, Paths(ref))
    monkeypatch.setenv("VAEFLOW_NAN_AT", "dae:1:1")
    with pytest.raises(NonFiniteLoss, match="epoch 1 step 1"):
        STAGES["autoencoders"](cfg, Paths(run))
    assert load_torch(run / "runs/checkpoints/dae.pt")["state"]["epoch"] == 1
    monkeypatch.delenv("VAEFLOW_NAN_AT")
    STAGES["autoencoders"](cfg, Paths(run))
    for name in ("ae", "dae"):
        a, b = load_torch(Paths(ref).ae_model(name)), load_torch(Paths(run).ae_model(name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.slow
def test_autoencoders_killed_mid_epoch_resume_bit_identically(project, tmp_path, monkeypatch):
    """kill -9 of `vaeflow stage autoencoders` paused mid-epoch in the dae (a fault point of vaeflow/faults.py,
    as in tests/test_reliability.py), then a rerun: the same weights as one uninterrupted run."""
    from typer.testing import CliRunner

    from vaeflow.flows.cli import app
    from tests.cli_utils import kill9, sets, start_paused

    ref, run = tmp_path / "ref", tmp_path / "run"
    for d in (ref, run):
        _copy_inputs(project, d)
    shutil.copy(REPO / "params.yaml", run / "params.yaml")  # what the CLI validates, with the --set overrides
    STAGES["autoencoders"](load_config(REPO / "params.yaml", CFG), Paths(ref))
    args = ("stage", "autoencoders", *sets(CFG))
    kill9(start_paused(run, "step:dae:1:1", *args, log="1.txt"))
    assert load_torch(run / "runs/checkpoints/dae.pt")["state"]["epoch"] == 1
    assert not Paths(run).ae_model("dae").exists()
    monkeypatch.chdir(run)
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    assert "resumed runs/checkpoints/dae.pt at epoch 1" in " ".join(res.output.split())
    for name in ("ae", "dae"):
        a, b = load_torch(Paths(ref).ae_model(name)), load_torch(Paths(run).ae_model(name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
