"""Stage `prepare`: build the source and target domains and fix their val/test observations.

Inputs: params (data.*, seed). Outputs: data/prepared/{source,target}.npz, data/prepared/meta.json,
reports/figures/data_examples.png.
Training observes each batch afresh, but validation and test sets are observed once here with a seeded
generator, so every model (GMM, VAE, every epoch) is scored on exactly the same numbers.
"""
from __future__ import annotations

import logging

import numpy as np

from vaeflow.config import Config
from vaeflow.data import SPLITS, DataError, DomainData, build_domains, observe, save_domain
from vaeflow.io import write_json
from vaeflow.paths import Paths
from vaeflow.plots import image_rows

log = logging.getLogger("vaeflow")

# Observation seeds: cfg.seed + offset per domain (gmm uses + 3 for its training observation).
OBS_SEED_OFFSET = {"source": 1, "target": 2}


def describe(d: DomainData) -> dict:
    return {
        "name": d.name,
        "counts": d.counts(),
        "shape": list(d.image_shape),
        "levels": d.levels,
        "n_classes": d.n_classes,
        "class_counts": {s: np.bincount(d.split(s)[1], minlength=d.n_classes).tolist() for s in SPLITS},
        "mean_intensity": {s: float(d.split(s)[0].mean()) for s in SPLITS},
    }


def check_architectures(cfg: Config, shape: tuple[int, ...]) -> None:
    """Refuse image sizes the configured networks cannot take (LeNet and the convnet shrink a side by two
    5×5/3×3 convolutions and two poolings), here rather than minutes later in pretrain or adapt. The size
    rules are the networks' own."""
    from vaeflow.models.convnet import convnet_sizes
    from vaeflow.models.lenet import lenet_sizes

    _, h, w = shape
    rules = {"lenet": lambda: (lenet_sizes(h), lenet_sizes(w)), "convnet": lambda: convnet_sizes(h, w)}
    for key, arch in (("vae.arch", cfg.vae.arch), ("adapt.backbone", cfg.adapt.backbone)):
        try:
            rules.get(arch, lambda: None)()
        except ValueError:
            raise DataError(f"{key}={arch} needs images of at least 16×16 and the prepared images are {h}×{w}; "
                            "set data.image_size (e.g. 28), or choose another architecture") from None


def run(cfg: Config, paths: Paths) -> dict:
    source, target = build_domains(cfg)
    check_architectures(cfg, source.image_shape)  # both domains share one shape (build_domains checks it)
    meta: dict = {"likelihood": cfg.data.likelihood, "seed": cfg.seed, "data": cfg.section("data"), "domains": {}}
    for role, d in (("source", source), ("target", target)):
        rng = np.random.default_rng(cfg.seed + OBS_SEED_OFFSET[role])
        obs_val = observe(d.x_val, cfg.data.likelihood, d.levels, rng)
        obs_test = observe(d.x_test, cfg.data.likelihood, d.levels, rng)
        save_domain(paths.domain(role), d, obs_val, obs_test)
        meta["domains"][role] = describe(d)
        log.info("prepare: %s (%s) train/val/test %s, images %s, %d levels", role, d.name,
                 "/".join(str(v) for v in d.counts().values()), "×".join(map(str, d.image_shape)), d.levels)
    write_json(paths.data_meta, meta)

    # Per row 16 images; both domains' first training images plus one observed version of the target,
    # so the figure shows what the models actually see under the chosen likelihood.
    rows = [("source", source.x_train[:16]), ("", source.x_train[16:32]),
            ("target", target.x_train[:16]), ("", target.x_train[16:32]),
            (f"target\n({cfg.data.likelihood})",
             observe(target.x_train[:16], cfg.data.likelihood, target.levels, np.random.default_rng(cfg.seed)))]
    image_rows(rows, paths.figures / "data_examples.png",
               title=f"{source.name} (source) vs {target.name} (target): training images")
    return {role: {"counts": m["counts"], "shape": m["shape"]} for role, m in meta["domains"].items()} | {
        "levels": source.levels, "likelihood": cfg.data.likelihood}
