"""Stage `pretrain`: a VAE trained on the ELBO or the IWAE bound, on source + target training images without labels.

Inputs: data/prepared (and models/tuned/best_config.json when pretrain.use_tuned).
Outputs: models/vae.pt (state dict), models/vae.json (spec), metrics/pretrain.json,
metrics/plots/pretrain.csv, reports/figures/vae_{reconstructions,samples,latent,curve}.png.
Test NLL is the IWAE bound with eval.iwae_samples importance samples, on the GMM's test set.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from vaeflow.config import TUNABLE, Config, ConfigError, PretrainConfig, VAEConfig
from vaeflow.io import ArtifactError, read_json, save_torch, write_json, write_text
from vaeflow.metrics import bits_per_dim
from vaeflow.models.vae import VAE
from vaeflow.paths import Paths
from vaeflow.plots import curves, image_rows, latent_scatter
from vaeflow.prepared import Prepared, load_prepared, to_tensor
from vaeflow.progress import epoch_bar, steps
from vaeflow.runtime import full_fp32, seed_everything, select_device
from vaeflow.training.checkpoint import fingerprint
from vaeflow.training.vae_trainer import TrainSettings, iwae_batch, train_vae

log = logging.getLogger("vaeflow")
TUNABLE_VAE = tuple(k for k, sec in TUNABLE.items() if sec == "vae")
TUNABLE_TRAIN = tuple(k for k, sec in TUNABLE.items() if sec == "pretrain")


def apply_tuned(cfg: Config, values: dict) -> tuple[VAEConfig, PretrainConfig]:
    """cfg's vae and pretrain sections with tuned hyperparameters on top, validated like params.yaml.

    The one place both a Tune trial and `pretrain.use_tuned` turn hyperparameters into a config."""
    vae = {**cfg.vae.model_dump(), **{k: values[k] for k in TUNABLE_VAE if k in values}}
    pre = {**cfg.pretrain.model_dump(), **{k: values[k] for k in TUNABLE_TRAIN if k in values}}
    try:
        return VAEConfig.model_validate(vae), PretrainConfig.model_validate(pre)
    except ValueError as e:
        raise ConfigError(f"tuned hyperparameters {values} do not validate: {e}") from None


def effective_params(cfg: Config, paths: Paths) -> tuple[VAEConfig, PretrainConfig]:
    """params.yaml, with the tuned hyperparameters on top when pretrain.use_tuned is set."""
    if not cfg.pretrain.use_tuned:
        return cfg.vae, cfg.pretrain
    best = read_json(paths.tuned)
    if not best.get("tuned"):
        raise ArtifactError(f"{paths.tuned}: holds no tuned config ({best.get('reason', 'no tuning result')}); "
                            "run `vaeflow tune` (or `dvc repro` with pretrain.use_tuned: true) first")
    return apply_tuned(cfg, best["config"])


def build_vae(vcfg: VAEConfig, image_shape: tuple[int, int, int], likelihood: str) -> VAE:
    return VAE(input_shape=image_shape, latent_dim=vcfg.latent_dim, hidden=list(vcfg.hidden), likelihood=likelihood,
               activation=vcfg.activation, arch=vcfg.arch, min_logvar=vcfg.min_logvar,
               decoder_variance=vcfg.decoder_variance, prior=vcfg.prior, n_pseudo_inputs=vcfg.n_pseudo_inputs)


@torch.inference_mode()
def score(model: VAE, x_obs: torch.Tensor, iwae_k: int, chunk: int, batch_size: int, elbo_draws: int = 10) -> dict:
    """Per-image negative ELBO (averaged over draws) and IWAE NLL, batched to bound memory."""
    model.eval()
    nelbo, nll = [], []
    with full_fp32(), steps(f"pretrain: IWAE k={iwae_k} on {len(x_obs)} test images", total=len(x_obs),
                            unit="images") as step:
        for i in range(0, len(x_obs), batch_size):
            xb = x_obs[i:i + batch_size]
            nelbo.append(-torch.stack([model.elbo(xb)["elbo"] for _ in range(elbo_draws)]).mean(0))
            nll.append(-model.iwae(xb, iwae_k, chunk))
            step.advance(len(xb))
    return {"nelbo": torch.cat(nelbo).cpu().numpy(), "nll": torch.cat(nll).cpu().numpy()}


def _figures(model: VAE, data: Prepared, x_test: torch.Tensor, dom: np.ndarray, paths: Paths, seed: int,
             history: list[dict], method: str) -> None:
    with torch.inference_mode():
        recon = model.reconstruct(x_test[:16]).cpu().numpy()
        samples = model.sample(32, generator=torch.Generator(device=x_test.device).manual_seed(seed)).cpu().numpy()
        mu = torch.cat([model.encode(x_test[i:i + 512])[0] for i in range(0, len(x_test), 512)]).cpu().numpy()
    src = x_test[dom == 0][:8].cpu().numpy()
    tgt = x_test[dom == 1][:8].cpu().numpy()
    image_rows([("data", x_test[:16].cpu().numpy()), ("recon", recon)], paths.figures / "vae_reconstructions.png",
               title="VAE reconstructions (decoder mean of z = mu(x))")
    image_rows([("VAE", samples[:16]), ("", samples[16:]), ("src|tgt", np.concatenate([src, tgt]))],
               paths.figures / "vae_samples.png", title="VAE samples, z ~ N(0, I)")
    labels = np.concatenate([data.source.y_test, data.target.y_test])
    with steps(f"pretrain: latent plot ({method}) of {len(mu)} test images"):
        if method == "tsne" and len(mu) > 5:
            from sklearn.manifold import TSNE
            z2 = TSNE(2, random_state=seed, init="pca", perplexity=min(30, len(mu) - 1)).fit_transform(mu)
        else:
            from sklearn.decomposition import PCA  # here: scikit-learn's import is seconds a Ray trial never needs

            z2 = PCA(2, random_state=seed).fit_transform(mu) if mu.shape[1] > 1 else np.c_[mu, np.zeros(len(mu))]
    latent_scatter(z2, labels, dom, paths.figures / "vae_latent.png", f"posterior means of test images ({method})")
    ep = [r["epoch"] for r in history]
    curves({"train loss (β-weighted)": (ep, [r["train_loss"] for r in history]),
            "val −ELBO": (ep, [r["val_nelbo"] for r in history])},
           paths.figures / "vae_curve.png", "epoch", "nats per image", "VAE training")


def run(cfg: Config, paths: Paths) -> dict:
    device = select_device(cfg.device)
    seed_everything(cfg.seed)
    data = load_prepared(paths)
    vcfg, pcfg = effective_params(cfg, paths)
    lik = cfg.data.likelihood
    model = build_vae(vcfg, data.image_shape, lik).to(device)
    x_train = to_tensor(data.unlabelled_train(), device)
    x_val, _ = data.likelihood_split("val")
    # The time budget and checkpoint frequency do not change the trajectory: a run resumed with others continues.
    fp = fingerprint(cfg.seed, lik, vcfg.model_dump(), pcfg.fingerprint_dump(), data.hashes)
    with epoch_bar("pretrain", pcfg.epochs, show="val_nelbo") as advance:
        res = train_vae(model, x_train, to_tensor(x_val, device), TrainSettings.from_pretrain(pcfg, lik, data.levels),
                        ckpt_path=paths.checkpoint("pretrain"), fingerprint=fp, on_epoch=advance)
    model.load_state_dict(res.best_state)
    x_test_np, dom = data.likelihood_split("test")
    x_test = to_tensor(x_test_np, device)
    torch.manual_seed(cfg.seed + 7)  # the estimate's own randomness, fixed so reruns agree
    chunk = min(cfg.eval.iwae_chunk, cfg.eval.iwae_samples)
    s = score(model, x_test, cfg.eval.iwae_samples, chunk, iwae_batch(device, cfg.eval.batch_size, chunk))
    levels = data.levels if lik == "gaussian" else None
    nelbo, nll = float(s["nelbo"].mean()), float(s["nll"].mean())
    metrics = {
        "test_nelbo_nats": nelbo,
        "test_nll_nats": nll,
        "test_nll_stderr": float(s["nll"].std(ddof=1) / np.sqrt(len(s["nll"]))),
        "iwae_samples": cfg.eval.iwae_samples,
        "test_bits_per_dim": bits_per_dim(nll, data.dim, levels),
        "test_nelbo_bits_per_dim": bits_per_dim(nelbo, data.dim, levels),
        "test_nll_nats_source": float(s["nll"][dom == 0].mean()),
        "test_nll_nats_target": float(s["nll"][dom == 1].mean()),
        "best_epoch": res.best_epoch,
        "epochs_run": len(res.history),
        "stopped_by": "time_budget" if res.out_of_time else "patience" if res.stopped_early else "epochs",
        "val_nelbo_nats": next((r["val_nelbo"] for r in res.history if r["epoch"] == res.best_epoch),
                               res.best_val_nelbo),  # the best epoch's -ELBO
        "val_bound_nats": res.best_val_nelbo,  # what early stopping watched: -ELBO, or -IWAE_k for iwae
        "objective": pcfg.objective if pcfg.objective == "elbo" else f"iwae (k={pcfg.k})",
        "lr_schedule": pcfg.lr_schedule,
        "train_seconds": res.seconds,
        "n_test": int(len(x_test_np)),
        "params": {**vcfg.model_dump(), **{k: getattr(pcfg, k) for k in TUNABLE_TRAIN}},
    }
    save_torch(paths.vae, {k: v.cpu() for k, v in model.state_dict().items()})
    write_json(paths.vae_spec, {"spec": model.spec, "best_epoch": res.best_epoch})
    rows = ["epoch,train_loss,val_nelbo"] + [f"{r['epoch']},{r['train_loss']:.5f},{r['val_nelbo']:.5f}"
                                              for r in res.history]
    write_text(paths.plots / "pretrain.csv", "\n".join(rows) + "\n")
    _figures(model, data, x_test, dom, paths, cfg.seed, res.history, cfg.eval.latent_plot)
    write_json(paths.stage_metrics("pretrain"), metrics)
    log.info("pretrain: best epoch %d/%d, test -ELBO %.2f, NLL %.2f nats (IWAE k=%d) in %.1fs", res.best_epoch,
             len(res.history), nelbo, nll, cfg.eval.iwae_samples, res.seconds)
    return metrics

