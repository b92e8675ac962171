"""Training on the IWAE bound, Burda's staged schedule, and the device-agnostic training step.

Checked against independent computations: torch.distributions densities for the bound, Monte Carlo
expectations (with standard errors) for "equal in expectation" and "non-decreasing in k", and the stage
table of Burda et al. (2016) written out by hand.
"""
from __future__ import annotations

import math

import pytest
import torch

from vaeflow.config import ConfigError, load_config
from vaeflow.models.vae import VAE
from vaeflow.training import vae_trainer
from vaeflow.hooks import Hooks
from vaeflow.training.vae_trainer import TrainSettings, _Step, burda_lr, train_vae
from tests.conftest import REPO


def _vae(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE((1, 3, 4), 3, [16], "bernoulli").double()


def _x(n: int = 8) -> torch.Tensor:
    return (torch.rand(n, 1, 3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) < 0.4).double()


def _grads(model, value: torch.Tensor) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    value.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_iwae_k1_is_the_one_sample_elbo_in_value_and_gradient():
    """Same eps: the k=1 bound equals log p(x|z) + log p(z) - log q(z|x) written with torch.distributions."""
    vae, x = _vae(), _x()
    torch.manual_seed(3)
    b = vae.iwae_bound(x, 1, beta=0.7)["bound"]
    g_iwae = _grads(vae, b.sum())
    torch.manual_seed(3)
    mu, logvar = vae.encode(x)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    z = mu + q.scale * torch.randn((1, *mu.shape), dtype=mu.dtype)[0]
    p = torch.distributions.Normal(torch.zeros_like(z), torch.ones_like(z))
    px = torch.distributions.Bernoulli(logits=vae.decode(z)).log_prob(x.reshape(len(x), -1)).sum(-1)
    ref = px + 0.7 * (p.log_prob(z) - q.log_prob(z)).sum(-1)
    torch.testing.assert_close(b, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g_iwae, _grads(vae, ref.sum()), rtol=1e-8, atol=1e-10)


def _mc_grad_diff(vae, x, k: int, groups: int = 40, reps: int = 500):
    """Group means (over `reps` draws per image) of IWAE_k - ELBO: value and gradient, the same z for the
    reconstruction term of both (same seed), so only the KL estimate and k differ."""
    vals, grads = [], []
    xr = x.repeat(reps, 1, 1, 1)
    for g in range(groups):
        torch.manual_seed(100 + g)
        a = vae.iwae_bound(xr, k)["bound"].mean()
        ga = _grads(vae, a)
        torch.manual_seed(100 + g)
        e = vae.elbo(xr)["elbo"].mean()
        ge = _grads(vae, e)
        vals.append((a - e).item())
        grads.append(ga - ge)
    v, gr = torch.tensor(vals, dtype=torch.float64), torch.stack(grads)
    return v.mean(), v.std() / math.sqrt(groups), gr.mean(0), gr.std(0) / math.sqrt(groups)


def test_iwae_k1_equals_the_analytic_kl_elbo_in_expectation_value_and_gradient():
    """`elbo` uses the analytic KL; IWAE k=1 samples it. Same bound, same expected gradient. The k=5 check
    shows the comparison has the power to tell a different objective apart."""
    vae, x = _vae(), _x(4)
    m, se, gm, gse = _mc_grad_diff(vae, x, k=1)
    assert abs(m) < 5 * se, (m, se)
    z = (gm / gse.clamp_min(1e-12)).abs()
    assert z.max() < 6, z.max()
    m5, se5, gm5, gse5 = _mc_grad_diff(vae, x, k=5, groups=10)
    assert m5 > 10 * se5 and m5 > 0.05  # a tighter bound ...
    assert (gm5 / gse5.clamp_min(1e-12)).abs().max() > 10  # ... with a different gradient


@torch.no_grad()
def test_iwae_bound_non_decreasing_in_k_in_expectation():
    vae, x = _vae(), _x(8)
    torch.manual_seed(0)
    reps = 400
    xr = x.repeat(reps, 1, 1, 1)
    est = {k: vae.iwae_bound(xr, k)["bound"].reshape(reps, -1).mean(0) for k in (1, 2, 5, 20)}
    ks = sorted(est)
    for lo, hi in zip(ks, ks[1:]):
        d = est[hi] - est[lo]  # per image, averaged over draws; paired over the same images
        se = d.std() / math.sqrt(len(d)) + est[hi].std() / math.sqrt(reps)
        assert d.mean() > -3 * se, (lo, hi, d.mean(), se)
    assert (est[20] - est[1]).mean() > 0.05  # and it really tightens
    # The training form and the chunked evaluation form estimate the same bound.
    ev = vae.iwae(xr, 5, chunk=2, generator=torch.Generator().manual_seed(9)).reshape(reps, -1).mean(0)
    d = ev - est[5]
    assert d.mean().abs() < 4 * d.std() / math.sqrt(len(d)) + 4 * est[5].std() / math.sqrt(reps)


def test_burda_schedule_at_every_stage_boundary():
    lr = 1e-3
    start = 0
    for i in range(8):  # stage i: epochs [start, start + 3^i) at lr * 10^(-i/7)
        for e in (start, start + 3 ** i - 1):
            assert burda_lr(lr, e) == pytest.approx(lr * 10 ** (-i / 7), rel=1e-12), (i, e)
        start += 3 ** i
    assert start == 3280  # Burda et al.'s 3,280 epochs
    assert burda_lr(lr, 3279) == pytest.approx(1e-4) == burda_lr(lr, 3280) == burda_lr(lr, 10**5)  # holds past the end
    assert [round(burda_lr(1.0, e), 6) for e in range(5)] == [1.0, 0.719686, 0.719686, 0.719686, 0.517947]


def _train(tmp_path, name, **kw):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(48, 1, 4, 4, generator=g) < 0.4).float()
    torch.manual_seed(0)
    model = VAE(input_shape=(1, 4, 4), latent_dim=2, hidden=[8], likelihood="bernoulli")
    opts = dict(epochs=5, batch_size=16, lr=1e-2, beta=1.0, warmup_epochs=1, patience=10, likelihood="bernoulli",
                levels=2, objective="iwae", k=3, lr_schedule="burda")
    return train_vae(model, x, x[:16], TrainSettings(**{**opts, **kw}), ckpt_path=tmp_path / name, fingerprint="fp")


def test_trainer_applies_schedule_and_iwae_early_stopping_bound(tmp_path):
    res = _train(tmp_path, "a.pt")
    assert [r["lr"] for r in res.history] == [pytest.approx(burda_lr(1e-2, e)) for e in range(5)]
    # Early stopping watched -IWAE_3 on the validation images, which is tighter than -ELBO.
    assert res.best_val_nelbo == min(r["val_bound"] for r in res.history)
    assert all(r["val_bound"] < r["val_nelbo"] for r in res.history)
    with pytest.raises(ValueError, match="k = 1 for elbo"):
        _train(tmp_path, "b.pt", objective="elbo", k=2)


def test_capture_falls_back_to_the_same_eager_step_on_cpu(tmp_path):
    a, b = _train(tmp_path, "a.pt"), _train(tmp_path, "b.pt", capture=True)
    assert all(torch.equal(a.best_state[k], b.best_state[k]) for k in a.best_state)
    assert [r["val_bound"] for r in a.history] == [r["val_bound"] for r in b.history]


def test_iwae_run_resumes_bit_identically(tmp_path):
    """Stopped after an epoch (the time budget), then resumed from the checkpoint by a fresh call whose
    global RNG was reset: the same weights, bit for bit, as an uninterrupted run."""
    whole = _train(tmp_path, "a.pt")
    cut = _train(tmp_path, "b.pt", max_seconds=1e-9)
    assert len(cut.history) == 1
    torch.manual_seed(12345)  # the checkpoint, not this process's RNG, must decide what follows
    rest = _train(tmp_path, "b.pt")
    assert [r["epoch"] for r in rest.history] == list(range(5))
    assert all(torch.equal(whole.best_state[k], rest.best_state[k]) for k in whole.best_state)
    assert [r["val_bound"] for r in whole.history] == [r["val_bound"] for r in rest.history]


def test_device_side_step_records_first_bad_step_without_a_sync():
    """What the CUDA path relies on, run on CPU: loss sums and the first non-finite step live on the device."""
    model = VAE((1, 4, 4), 2, [8], "bernoulli")
    x = (torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    step = _Step(model, vae_trainer._adam(model, 1e-3, False), x, "iwae", 2, "bernoulli", 2, True,
                 hooks_=Hooks(nan_at="run:0:2"))
    step.new_epoch()
    losses = [step(torch.arange(i * 16, (i + 1) * 16), 1.0, where=f"run:0:{i}") for i in range(4)]
    assert int(step.first_bad) == 2 and int(step.s) == 4
    assert not torch.isfinite(step.loss_sum)
    step.new_epoch()
    assert int(step.first_bad) == -1 and float(step.loss_sum) == 0.0
    assert math.isfinite(losses[0].item())


def test_captured_step_lr_lives_in_one_device_tensor_and_small_batches_run_eagerly():
    """The CUDA path's bookkeeping, on CPU: the lr tensor a captured Adam step reads is filled in place
    (rebinding it would leave the graph reading a stale lr), and a batch that is not the captured size
    (the epoch's last, ragged one) or a poisoned one runs the same step eagerly, never captured."""
    model = VAE((1, 4, 4), 2, [8], "bernoulli")
    opt = vae_trainer._adam(model, 1e-3, capturable=False)
    vae_trainer._set_lr(opt, 0.5, on_device=True)
    t = opt.param_groups[0]["lr"]
    assert isinstance(t, torch.Tensor) and t.item() == 0.5
    vae_trainer._set_lr(opt, 0.25, on_device=True)
    assert opt.param_groups[0]["lr"] is t and t.item() == 0.25
    vae_trainer._set_lr(opt, 0.1, on_device=False)
    assert opt.param_groups[0]["lr"] == 0.1
    x = (torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    step = vae_trainer._GraphedStep(model, opt, x, "elbo", 1, "bernoulli", 2, True, None, Hooks(nan_at="run:0:1"),
                                    batch_size=16)
    step.new_epoch()
    step(torch.arange(16, 20), 1.0)  # 4 images, not 16: eager
    step(torch.arange(16), 1.0, where="run:0:1")  # the hooks poison this one
    assert step.graph is None and step.warm == 0 and int(step.s) == 2 and int(step.first_bad) == 1


def test_config_refuses_k_without_iwae():
    with pytest.raises(ConfigError, match="objective: iwae"):
        load_config(REPO / "params.yaml", ["pretrain.k=5"])
    cfg = load_config(REPO / "params.yaml", ["pretrain.objective=iwae", "pretrain.k=5", "pretrain.lr_schedule=burda"])
    assert (cfg.pretrain.objective, cfg.pretrain.k, cfg.pretrain.lr_schedule) == ("iwae", 5, "burda")


@pytest.mark.slow
def test_killed_iwae_pretrain_resumes_bit_identically(tmp_path, monkeypatch):
    """`vaeflow stage pretrain` with objective iwae and Burda's schedule, SIGKILLed mid-epoch, rerun: the
    same weights, bit for bit, as an uninterrupted run (the pattern of tests/test_reliability.py)."""
    from typer.testing import CliRunner

    from vaeflow.flows.cli import app
    from vaeflow.tasks import STAGES
    from tests.cli_utils import copy_tree, kill9, sets, start_paused
    from tests.conftest import TINY
    from vaeflow.io import load_torch
    from vaeflow.paths import Paths

    cfg = TINY + ["pretrain.epochs=3", "pretrain.patience=10", "pretrain.objective=iwae", "pretrain.k=4",
                  "pretrain.lr_schedule=burda"]
    ref, run, prep = tmp_path / "ref", tmp_path / "run", tmp_path / "prep"
    STAGES["prepare"](load_config(REPO / "params.yaml", cfg), Paths(prep))
    copy_tree(prep, ref, "data/prepared")
    copy_tree(prep, run, "data/prepared")
    monkeypatch.chdir(ref)
    assert CliRunner().invoke(app, ["stage", "pretrain", *sets(cfg)]).exit_code == 0
    kill9(start_paused(run, "step:pretrain:1:1", "stage", "pretrain", *sets(cfg), log="1.txt"))
    assert load_torch(run / Paths().checkpoint("pretrain"))["state"]["epoch"] == 1
    monkeypatch.chdir(run)
    res = CliRunner().invoke(app, ["stage", "pretrain", *sets(cfg)])
    assert res.exit_code == 0 and "resumed" in res.output
    a, b = load_torch(ref / Paths().vae), load_torch(run / Paths().vae)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------- VampPrior

def _vamp(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    vae = VAE((1, 3, 4), 3, [16], "bernoulli", prior="vampprior", n_pseudo_inputs=7).double()
    with torch.no_grad():  # spread the pseudo-inputs so the components differ
        vae.pseudo_inputs.copy_(torch.rand(7, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    return vae


def test_vampprior_log_prior_is_the_mixture_of_pseudo_posteriors():
    vae = _vamp()
    with torch.no_grad():
        m, lv = vae.encode(vae.pseudo_inputs.clamp(0, 1))
        mix = torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(torch.ones(7, dtype=torch.float64)),
            torch.distributions.Independent(torch.distributions.Normal(m, torch.exp(0.5 * lv)), 1))
        z = torch.randn(5, 4, 3, dtype=torch.float64) * 2
        torch.testing.assert_close(vae.log_prior(z), mix.log_prob(z), rtol=1e-10, atol=1e-10)
        s = vae.prior_sample(40000, generator=torch.Generator().manual_seed(0))
        mean, var = m.mean(0), (lv.exp() + m.pow(2)).mean(0) - m.mean(0).pow(2)
        assert ((s.mean(0) - mean).abs() < 5 * (var / len(s)).sqrt()).all()
        assert ((s.var(0) / var - 1).abs() < 0.05).all()
    clone = VAE(**vae.spec).double()
    clone.load_state_dict(vae.state_dict())
    torch.testing.assert_close(clone.log_prior(z), vae.log_prior(z), rtol=0, atol=0)


def test_vampprior_elbo_is_iwae_k1_and_trains_the_pseudo_inputs():
    vae, x = _vamp(), _x()
    torch.manual_seed(5)
    e = vae.elbo(x, beta=0.5)["elbo"]
    g_e = _grads(vae, e.sum())
    torch.manual_seed(5)
    b = vae.iwae_bound(x, 1, beta=0.5)["bound"]
    torch.testing.assert_close(b, e, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_grads(vae, b.sum()), g_e, rtol=1e-10, atol=1e-12)
    assert vae.pseudo_inputs.grad.abs().sum() > 0


def test_hooks_are_a_no_op_by_default_and_an_installed_nan_stops_training_at_its_step(tmp_path, monkeypatch):
    """vaeflow/hooks.py: nothing in the environment, nothing happens; a Hooks object installed in this process
    (what a test does instead of a keyword argument of train_vae) makes that step's loss NaN."""
    from vaeflow import hooks
    from vaeflow.training.checkpoint import NonFiniteLoss

    for k in hooks.ENV:
        monkeypatch.delenv(k, raising=False)
    h = hooks.current()
    assert not h.active and h.count_write("x") == 0 and not h.poisons("pretrain:0:0")
    loss = torch.tensor(1.0)
    assert h.loss("pretrain:0:0", loss) is loss
    monkeypatch.setenv("VAEFLOW_NAN_AT", "a:1:0")  # the environment is read while nothing is installed
    assert hooks.current().nan_step("a") == (1, 0) and hooks.current().nan_step("b") is None
    with hooks.installed(Hooks(nan_at="b:1:1")):  # an installed object wins over the environment
        assert hooks.current().nan_step("a") is None
        with pytest.raises(NonFiniteLoss, match="epoch 1 step 1"):
            _train(tmp_path, "b.pt", objective="elbo", k=1, lr_schedule="constant")
    assert hooks.current().nan_step("a") == (1, 0)
