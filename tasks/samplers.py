"""Stage `samplers`: every generator scored by one measure (the lecture's points 2-3 side by side).

Inputs: data/prepared, models/gmm.npz, models/vae.{pt,json}, models/ae/.
Outputs: metrics/samplers.json and reports/figures/{sampler_grid,sampler_frechet,interpolations,
interpolation_entropy,latent_ae_vae}.png.

Samplers: the data-space mixture (`gmm` stage); the VAE's prior (N(0, I) or its VampPrior); and for the VAE (posterior
means), the AE and the DAE, a single Gaussian and a BIC-chosen Gaussian mixture fitted to the codes of
the training images. Each draws as many images as there are held-out real validation images ('real',
the floor), all compared with the test images by the Fréchet distance of FeatureNet features
(vaeflow/sample_quality.py). Smoothness: decoded straight lines between test codes, scored by the
feature net's predictive entropy along them.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from vaeflow.config import Config
from vaeflow.data import observe
from vaeflow.io import load_npz, load_torch, read_json, save_figure, write_json
from vaeflow.models.ae import MODELS as AE_MODELS, load_autoencoder, load_model
from vaeflow.models.mixture import mixture_from_arrays
from vaeflow.models.vae import VAE
from vaeflow.paths import Paths
from vaeflow.plots import curves, dots, image_rows, pyplot
from vaeflow.prepared import Prepared, load_prepared, to_tensor
from vaeflow.runtime import select_device
from vaeflow.sample_quality import (expected_observation, features, fit_latent_samplers, frechet_distance,
                                    interpolate, predictive_entropy, train_feature_net)

log = logging.getLogger("vaeflow")
SHOWN_PAIRS = 4  # interpolation pairs drawn in the figure (all `samplers.interpolations` are scored)


@torch.no_grad()
def codes(model: VAE, x: np.ndarray, device) -> np.ndarray:
    """Deterministic codes: the AE's f(x), the VAE's posterior mean μ(x)."""
    xt = to_tensor(x, device)
    return torch.cat([model.encode(xt[i:i + 1024])[0] for i in range(0, len(xt), 1024)]).cpu().numpy()


@torch.no_grad()
def decoded(model: VAE, z: np.ndarray, device) -> np.ndarray:
    zt = torch.as_tensor(np.asarray(z), dtype=torch.float32, device=device)
    return torch.cat([model.decode_mean(zt[i:i + 1024]) for i in range(0, len(zt), 1024)]).cpu().numpy()


@torch.no_grad()
def prior_codes(model: VAE, n: int, seed: int, device) -> np.ndarray:
    """n draws from the VAE's own prior p(z): N(0, I), or the VampPrior's mixture over its pseudo-inputs.
    VAE.prior_sample holds both rules, so this stage cannot drift from the model (drawing N(0, I) here would
    score a VampPrior VAE on a distribution it was not trained with). The private generator lives where the model does (torch draws with a generator of the tensor's device); on
    CPU a normal prior gives the same draws as torch.randn with that seed."""
    return model.prior_sample(n, generator=torch.Generator(device=device).manual_seed(seed)).cpu().numpy()


@torch.no_grad()
def reconstruction(model: VAE, x_obs: np.ndarray, device) -> dict:
    """At the deterministic code: per-pixel squared error of the decoder mean, and -log p(x | z) per image."""
    xt, z = to_tensor(x_obs, device), torch.as_tensor(codes(model, x_obs, device), device=device)
    nll = -model.log_px(xt, model.decode(z))
    mse = ((model.decode_mean(z) - xt) ** 2).mean()
    return {"mse": float(mse), "nll_nats": float(nll.mean())}


def data_gmm_images(mix, n: int, seed: int, shape: tuple) -> np.ndarray:
    """Gaussian family: draws clipped to [0, 1]. Bernoulli family: the pixel means of the drawn component,
    E[x | k], as the decoders give E[x | z] (binary draws against grey means would measure the noise)."""
    if mix.family == "gaussian":
        return np.clip(mix.sample(n, seed=seed), 0, 1).reshape(n, *shape).astype(np.float32)
    k = np.random.default_rng(seed).choice(mix.n_components, size=n, p=mix.weights / mix.weights.sum())
    return mix.probs[k].reshape(n, *shape).astype(np.float32)


def load_models(paths: Paths, device) -> dict[str, VAE]:
    # Not prepared.load_vae: building a VAE draws its initial weights from torch's global RNG, which adapt,
    # running beside this stage in the flow, is drawing from.
    out: dict[str, VAE] = {"vae": load_model(VAE, read_json(paths.vae_spec)["spec"], load_torch(paths.vae), device)}
    for name in AE_MODELS:
        out[name] = load_autoencoder(read_json(paths.ae_spec(name))["spec"], load_torch(paths.ae_model(name)), device)
    return out


def generate(cfg: Config, paths: Paths, data: Prepared, models: dict[str, VAE], n: int, device) -> tuple[dict, dict]:
    """{sampler: [n images] × samplers.draws independent draws} and {sampler: fit info}, for every sampler
    but 'real'. Draw r of every sampler uses seed + r, so reruns agree."""
    obs_train = observe(data.unlabelled_train(), cfg.data.likelihood, data.levels, np.random.default_rng(cfg.seed + 3))
    draws = range(cfg.samplers.draws)
    gmm = mixture_from_arrays(load_npz(paths.gmm))
    images = {"data_gmm": [data_gmm_images(gmm, n, cfg.seed + r, data.image_shape) for r in draws]}
    vae = models["vae"]
    images["vae_prior"] = [decoded(vae, prior_codes(vae, n, cfg.seed + 11 + r, device), device) for r in draws]
    info = {"data_gmm": {"n_components": read_json(paths.stage_metrics("gmm"))["n_components"]},
            "vae_prior": {"n_components": 1 if vae.prior == "normal" else len(vae.pseudo_inputs), "prior": vae.prior}}
    for name, model in models.items():
        for kind, (mix, fit) in fit_latent_samplers(codes(model, obs_train, device), cfg.gmm,
                                                    cfg.samplers.latent_components, cfg.seed, name).items():
            images[f"{name}_{kind}"] = [decoded(model, mix.sample(n, seed=cfg.seed + 13 + r), device) for r in draws]
            bic = {"bic": {str(k): float(v) for k, v in fit["bic"].items()}} if kind == "gmm" else {}
            info[f"{name}_{kind}"] = {"n_components": int(fit["n_components"]), "converged": bool(fit["converged"]), **bic}
    return images, info


def smoothness(cfg: Config, models: dict[str, VAE], net, x_test_obs: np.ndarray, real_test: np.ndarray, device):
    """Entropy along decoded straight lines between random pairs of test codes (and, as a reference, the
    straight line in pixel space). Returns metrics and the paths' images {model: (pairs, steps, C, H, W)}."""
    s = cfg.samplers
    rng = np.random.default_rng(cfg.seed + 17)
    i = rng.choice(len(x_test_obs), size=s.interpolations)
    j = (i + rng.integers(1, len(x_test_obs), size=s.interpolations)) % len(x_test_obs)  # two different images
    paths_img, shape = {}, (len(i), s.interp_steps, *x_test_obs.shape[1:])
    for name, model in models.items():
        z = codes(model, x_test_obs, device)
        zz = interpolate(z[i], z[j], s.interp_steps)
        paths_img[name] = decoded(model, zz.reshape(-1, zz.shape[-1]), device).reshape(shape)
    flat = real_test.reshape(len(real_test), -1)
    paths_img["pixels"] = interpolate(flat[i], flat[j], s.interp_steps).reshape(shape)
    out = {"real_test_entropy": float(predictive_entropy(net, real_test, device).mean())}
    mid = {}  # per pair: mean entropy of the interior points
    for name, imgs in paths_img.items():
        ent = predictive_entropy(net, imgs.reshape(-1, *imgs.shape[2:]), device).reshape(imgs.shape[:2])
        mid[name] = ent[:, 1:-1].mean(1)
        curve = ent.mean(0)
        out[name] = {"entropy_mid": float(curve[1:-1].mean()), "entropy_ends": float(curve[[0, -1]].mean()),
                     "entropy_curve": [float(e) for e in curve]}
    for other in ("ae", "dae"):  # paired over the same pairs of test images: mean and standard error
        d = mid["vae"] - mid[other]
        out[f"vae_minus_{other}"] = {"mean": float(d.mean()),
                                     "se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None}
    return out, paths_img


def _scatter(models: dict[str, VAE], x_obs: np.ndarray, labels: np.ndarray, path, device, seed: int) -> None:
    from sklearn.decomposition import PCA

    plt = pyplot()
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4.2))
    for ax, (name, model) in zip(np.atleast_1d(axes), models.items()):
        z = codes(model, x_obs, device)
        z2 = PCA(2, random_state=seed).fit_transform(z) if z.shape[1] > 1 else np.c_[z, np.zeros(len(z))]
        sc = ax.scatter(z2[:, 0], z2[:, 1], c=labels, cmap="tab10", s=5, alpha=0.8)
        ax.set_title(f"{name.upper()} test codes (PCA)" + (": μ(x)" if name == "vae" else ""), fontsize=9)
    ax.legend(*sc.legend_elements(), fontsize=6, title="class", loc="best", markerscale=0.7)
    fig.suptitle("Latent space of the same test images: VAE vs plain AE vs denoising AE", fontsize=10)
    save_figure(fig, path)
    plt.close(fig)


def _figures(paths: Paths, images: dict, fd: dict, interp: dict, paths_img: dict, steps: int) -> None:
    fig = paths.figures
    image_rows([(f"{k} ({np.mean(fd[k]):.2f})", v[0][:16]) for k, v in images.items()], fig / "sampler_grid.png",
               title="16 samples per sampler (label: Fréchet distance to the test images)")
    # one row per sampler, best first, coloured by the model that decodes it, the real images' floor dashed
    dots({k: float(np.mean(v)) for k, v in fd.items()}, fig / "sampler_frechet.png",
         "Fréchet distance to the test images' features (error bar: std over draws)",
         "Sample quality, one measure (lower is better)", lower_is_better=True, fmt="{:.2f}", ref="real",
         errors={k: float(np.std(v, ddof=1)) for k, v in fd.items() if len(v) > 1},
         groups={k: {"data": "pixel-space mixture", "real": "real images"}.get(k.split("_")[0],
                                                                               f"{k.split('_')[0].upper()} decoder")
                 for k in fd})
    rows = [(f"{m} #{p + 1}", paths_img[m][p]) for p in range(min(SHOWN_PAIRS, len(paths_img["vae"])))
            for m in ("vae", "ae", "dae", "pixels")]
    image_rows(rows, fig / "interpolations.png", ncol=steps,
               title="Straight lines between two test codes, decoded (pixels: the line in data space)")
    t = list(np.linspace(0, 1, steps))
    curves({m: (t, r["entropy_curve"]) for m, r in interp.items() if isinstance(r, dict) and "entropy_curve" in r},
           fig / "interpolation_entropy.png", "t along the line", "classifier entropy (nats)",
           "How far the decoded path leaves the data")


def run(cfg: Config, paths: Paths) -> dict:
    device = select_device(cfg.device)  # no seed_everything: every draw here has its own seeded generator
    data = load_prepared(paths)
    lik, L, s = cfg.data.likelihood, data.levels, cfg.samplers
    src, tgt = data.source, data.target
    net = train_feature_net(expected_observation(src.x_train, lik, L), src.y_train, s.classifier_hidden,
                            src.n_classes, s.classifier_epochs, cfg.seed, device)
    real_test = expected_observation(np.concatenate([src.x_test, tgt.x_test]), lik, L)
    real_val = expected_observation(np.concatenate([src.x_val, tgt.x_val]), lik, L)
    with torch.no_grad():  # a sanity figure for the report; nothing is selected on it
        src_acc = float((net(torch.as_tensor(real_test[:len(src.x_test)], device=device)).argmax(1).cpu().numpy()
                         == src.y_test).mean())
    models = load_models(paths, device)
    images, info = generate(cfg, paths, data, models, len(real_val), device)
    images["real"] = [real_val]  # one set: the held-out images there are
    f_test = features(net, real_test, device)
    fd = {k: [frechet_distance(features(net, x, device), f_test) for x in v] for k, v in images.items()}
    ent = {k: float(np.mean([predictive_entropy(net, x, device).mean() for x in v])) for k, v in images.items()}
    x_test_obs, _ = data.likelihood_split("test")
    interp, paths_img = smoothness(cfg, models, net, x_test_obs, real_test, device)
    labels = np.concatenate([src.y_test, tgt.y_test])
    _figures(paths, images, fd, interp, paths_img, s.interp_steps)
    _scatter(models, x_test_obs, labels, paths.figures / "latent_ae_vae.png", device, cfg.seed)
    metrics = {
        # frechet: the mean over draws; frechet_std: their spread (null for 'real', a single set)
        "samplers": {k: {"frechet": float(np.mean(fd[k])), "frechet_std": float(np.std(fd[k], ddof=1)) if len(fd[k]) > 1
                         else None, "frechet_draws": fd[k], "entropy": ent[k], **info.get(k, {})} for k in images},
        "reconstruction": {k: reconstruction(m, x_test_obs, device) for k, m in models.items()},
        "interpolation": interp,
        "n_generated": len(real_val), "n_test": len(real_test), "draws": s.draws,
        "feature_net": {"arch": f"MLP {data.dim}-{'-'.join(map(str, s.classifier_hidden))}-{src.n_classes}, ReLU",
                        "features": f"last hidden layer ({s.classifier_hidden[-1]})",
                        "trained_on": "source training labels",
                        "epochs": s.classifier_epochs, "source_test_acc": src_acc},
    }
    write_json(paths.stage_metrics("samplers"), metrics)
    log.info("samplers: Fréchet %s", ", ".join(f"{k}={np.mean(v):.2f}" for k, v in fd.items()))
    return metrics
