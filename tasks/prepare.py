"""Stage `prepare`: build the source and target domains and fix their val/test observations.

Inputs: params (data.*, seed). Outputs: data/prepared/{source,target}.npz, data/prepared/meta.json,
reports/figures/data_examples.png.
Training observes each batch afresh, but validation and test sets are observed once here with a seeded
generator, so every model (GMM, VAE, every epoch) is scored on exactly the same numbers.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

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


def memory_bytes() -> int | None:
    """This machine's memory, or its container's limit where that is lower (cgroup v2); None if unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        return min(total, int(limit)) if limit.isdigit() else total
    except OSError:
        return total


def check_gmm_memory(cfg: Config, shape: tuple[int, ...], device: str, n: int = 1) -> None:
    """Full (or tied) Gaussian mixtures hold K covariance matrices of D × D float64, twice at least during an EM
    step (the sums and the Cholesky factors). On 3×64×64 images (D = 12,288) the default K = 40 needs ~90 GiB,
    and the process would be killed minutes in, without a message; refuse that here, naming the settings.
    On a GPU the mixture lives in its memory, which this does not know: only CPU runs are checked."""
    from vaeflow.models.mixture import components, covariance_type
    from vaeflow.tasks.gmm import family_of

    d = int(np.prod(shape))
    cov = covariance_type(cfg.gmm, n, d)  # n training images (1: auto judged as full, the costlier)
    if family_of(cfg) != "gaussian" or cov not in ("full", "tied") or device != "cpu":
        return
    k = max(components(cfg.gmm)) if cov == "full" else 1
    need, have = 2 * k * d * d * 8, memory_bytes()
    if have is not None and need > have:
        raise DataError(f"gmm: {k} {cov} covariances over D = {d:,} pixels need at least "
                        f"{need / 2**30:.0f} GiB ({k} × D² float64, twice), more than this machine's "
                        f"{have / 2**30:.0f} GiB; set gmm.covariance_type=diag, lower gmm.n_components, or set "
                        "data.image_size smaller")


def run(cfg: Config, paths: Paths) -> dict:
    from vaeflow.runtime import select_device

    source, target = build_domains(cfg)
    check_architectures(cfg, source.image_shape)  # both domains share one shape (build_domains checks it)
    check_gmm_memory(cfg, source.image_shape, select_device(cfg.device).type, len(source.x_train) + len(target.x_train))
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
