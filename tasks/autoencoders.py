"""Stage `autoencoders`: a plain (ae) and a denoising (dae) autoencoder beside the VAE (lecture point 3).

Inputs: data/prepared. Outputs: models/ae/{ae,dae}.{pt,json}, metrics/autoencoders.json,
metrics/plots/autoencoders.csv.
Both use the VAE's encoder trunk, decoder, latent size and data model (vae.*, data.likelihood) and the
VAE's trainer (vaeflow/training/vae_trainer.py: early stopping, checkpoint after every epoch, exact
resume), on the reconstruction log-likelihood; the dae's input noise comes from a generator seeded by
`seed` and saved in the checkpoint. Their codes are turned into samplers by the `samplers` stage.
"""
from __future__ import annotations

import logging

import torch

from vaeflow.config import Config
from vaeflow.io import save_torch, write_json, write_text
from vaeflow.models.ae import MODELS, Autoencoder, build_autoencoder
from vaeflow.paths import Paths
from vaeflow.prepared import load_prepared, to_tensor
from vaeflow.progress import epoch_bar
from vaeflow.runtime import select_device
from vaeflow.training.checkpoint import fingerprint
from vaeflow.training.vae_trainer import TrainSettings, train_vae

log = logging.getLogger("vaeflow")
NOISE_SEED_OFFSET = 101  # the dae's noise stream: its own seed, apart from init and batch order
BATCH_SEED_OFFSET = 102  # batch order and the per-batch observation (dequantisation / binarisation)


def build(cfg: Config, image_shape: tuple[int, int, int], noise: float, device: torch.device) -> Autoencoder:
    """Both models start from the same weights (seeded by `seed`), drawn without torch's global RNG."""
    v = cfg.vae
    return build_autoencoder(cfg.seed, device, input_shape=image_shape, latent_dim=v.latent_dim, hidden=list(v.hidden),
                             likelihood=cfg.data.likelihood, activation=v.activation, arch=v.arch,
                             min_logvar=v.min_logvar, decoder_variance=v.decoder_variance, noise=noise)


def train_one(name: str, cfg: Config, paths: Paths, data, device: torch.device) -> dict:
    """Train `name` (ae | dae) from the seed, resuming its checkpoint if one of this run is there.

    Every random draw (init, batch order, observations, the dae's noise) comes from generators seeded by
    `seed`, none from torch's global RNG: in the flow this stage trains beside pretrain, in another thread of
    the same process, and either would otherwise change the other's random stream (and results)."""
    noise = cfg.ae.noise if name == "dae" else 0.0
    model = build(cfg, data.image_shape, noise, device)
    gens = {"noise": model.seed_noise(cfg.seed + NOISE_SEED_OFFSET)} if noise else None
    batches = torch.Generator(device=device).manual_seed(cfg.seed + BATCH_SEED_OFFSET)
    a = cfg.ae
    x_val, _ = data.likelihood_split("val")
    fp = fingerprint(name, cfg.seed, cfg.data.likelihood, cfg.vae.model_dump(), a.fingerprint_dump(), data.hashes)
    with epoch_bar(name, a.epochs, show="val_nelbo") as advance:
        settings = TrainSettings(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, beta=1.0, warmup_epochs=0,
                                 patience=a.patience, likelihood=cfg.data.likelihood, levels=data.levels,
                                 checkpoint_every_s=a.checkpoint_every_s)
        res = train_vae(model, to_tensor(data.unlabelled_train(), device), to_tensor(x_val, device), settings,
                        ckpt_path=paths.checkpoint(name), fingerprint=fp, on_epoch=advance, generators=gens,
                        generator=batches)
    model.load_state_dict(res.best_state)
    save_torch(paths.ae_model(name), {k: v.cpu() for k, v in model.state_dict().items()})
    write_json(paths.ae_spec(name), {"spec": model.spec, "best_epoch": res.best_epoch})
    log.info("autoencoders: %s best epoch %d/%d, val reconstruction NLL %.2f nats in %.1fs", name, res.best_epoch,
             len(res.history), res.best_val_nelbo, res.seconds)
    return {"best_epoch": res.best_epoch, "epochs_run": len(res.history), "noise": noise,
            "val_rec_nll_nats": res.best_val_nelbo, "train_seconds": res.seconds,
            "stopped_by": "patience" if res.stopped_early else "epochs",
            "history": [(r["epoch"], r["train_loss"], r["val_nelbo"]) for r in res.history]}


def run(cfg: Config, paths: Paths) -> dict:
    device = select_device(cfg.device)
    data = load_prepared(paths)
    out = {name: train_one(name, cfg, paths, data, device) for name in MODELS}
    rows = ["model,epoch,train_loss,val_rec_nll"] + [f"{n},{e},{t:.5f},{v:.5f}" for n in MODELS
                                                     for e, t, v in out[n].pop("history")]
    write_text(paths.plots / "autoencoders.csv", "\n".join(rows) + "\n")
    write_json(paths.stage_metrics("autoencoders"), out)
    return out
