"""The report's section on autoencoders as generators (issue 14), from metrics/{autoencoders,samplers}.json.

Torch-free, so the evaluate stage stays light. Every sentence that compares two models is computed from
the numbers, and says so when the measurement contradicts the lecture.
"""
from __future__ import annotations

from vaeflow.io import read_json
from vaeflow.paths import Paths

# Sampler -> what it draws, in the report's words.
WHAT = {
    "data_gmm": "data-space mixture (`gmm` stage) draws",
    "vae_prior": "VAE decoder, z ~ N(0, I) (its prior)",
    "vae_gaussian": "VAE decoder, z ~ one Gaussian fitted to the training μ(x)",
    "vae_gmm": "VAE decoder, z ~ GMM fitted to the training μ(x)",
    "ae_gaussian": "AE decoder, z ~ one Gaussian fitted to the training codes",
    "ae_gmm": "AE decoder, z ~ GMM fitted to the training codes",
    "dae_gaussian": "DAE decoder, z ~ one Gaussian fitted to the training codes",
    "dae_gmm": "DAE decoder, z ~ GMM fitted to the training codes",
    "real": "held-out real images (validation split): the floor",
}


def collect(paths: Paths) -> dict:
    """metrics.json's share: samplers.<name>.frechet, reconstruction.<model>, interpolation, autoencoders."""
    s, a = read_json(paths.stage_metrics("samplers")), read_json(paths.stage_metrics("autoencoders"))
    interp = {k: {kk: vv for kk, vv in v.items() if kk != "entropy_curve"} if isinstance(v, dict) else v
              for k, v in s["interpolation"].items()}
    return {"samplers": s["samplers"], "reconstruction": s["reconstruction"], "interpolation": interp,
            "sample_quality": {"feature_net": s["feature_net"], "n_generated": s["n_generated"], "n_test": s["n_test"]},
            "autoencoders": a}


def checks(m: dict) -> dict[str, bool]:
    fd = {k: v["frechet"] for k, v in m["samplers"].items()}
    return {"samplers_real_is_floor": fd["real"] == min(fd.values())}


def _vs(a: str, b: str, fd: dict, claim: str, agree_if_a_better: bool) -> str:
    better = fd[a] < fd[b]
    verdict = "as the lecture says" if better == agree_if_a_better else "**this contradicts the lecture**"
    return (f"- {a} {'beats' if better else 'does not beat'} {b}: Fréchet {fd[a]:.3f} vs {fd[b]:.3f} "
            f"({claim}: {verdict}).")


def _findings(m: dict) -> list[str]:
    fd = {k: v["frechet"] for k, v in m["samplers"].items()}
    it = m["interpolation"]
    lines = [
        _vs("vae_prior", "ae_gaussian", fd, "the lecture: an AE's latent space has no structure to sample, the "
            "VAE's prior gives it one", True),
        _vs("ae_gmm", "ae_gaussian", fd, "a mixture fitted to the codes (the toy model of point 2 in latent space) "
            "supplies structure after training", True),
        _vs("ae_gmm", "vae_prior", fd, "the lecture expects the VAE's prior to be the better generator", False),
        _vs("vae_prior", "data_gmm", fd, "the lecture: the pixel-space GMM lacks capacity", True),
    ]
    mid = {k: it[k]["entropy_mid"] for k in ("vae", "ae", "dae")}
    smooth = mid["vae"] < mid["ae"]
    lines.append(f"- Interpolation: mean classifier entropy inside the path {mid['vae']:.3f} nats (VAE) vs "
                 f"{mid['ae']:.3f} (AE) and {mid['dae']:.3f} (DAE); pixel-space line {it['pixels']['entropy_mid']:.3f}, "
                 f"real test images {it['real_test_entropy']:.3f}. The VAE's path "
                 + ("stays closer to the data, as the lecture says." if smooth else
                    "does **not** stay closer to the data than the AE's: this contradicts the lecture."))
    return lines


def section(m: dict) -> list[str]:
    """Markdown lines of the report section; `m` is metrics.json (collect()'s keys)."""
    q, f = m["sample_quality"], m["sample_quality"]["feature_net"]
    rec, ae, it = m["reconstruction"], m["autoencoders"], m["interpolation"]
    rows = [f"| {k} | {WHAT.get(k, k)} | {v.get('n_components', '')} | {v['frechet']:.3f} | {v['entropy']:.3f} |"
            for k, v in sorted(m["samplers"].items(), key=lambda kv: kv[1]["frechet"])]
    return [
        "## 6. Can an autoencoder generate? AE, denoising AE and VAE as generators", "",
        "A plain autoencoder (ae) and a denoising one (dae, input noise σ = "
        f"{ae['dae']['noise']}) share the VAE's encoder trunk, decoder, latent size and data model, with a "
        "deterministic code and the reconstruction log-likelihood as objective (no KL). Each model's training "
        "codes (the VAE's posterior means) get a single Gaussian and a Gaussian mixture with K chosen by BIC "
        "(the `gmm` stage's code); the VAE also has its prior N(0, I).", "",
        f"**One measure for every sampler**: the Fréchet distance between features of {q['n_generated']} generated "
        f"images and of the {q['n_test']} test images (both domains), features = the {f['features']} of a fixed "
        f"{f['arch']} trained for {f['epochs']} epochs on the {f['trained_on']} (source test accuracy "
        f"{f['source_test_acc']:.3f}). Images enter it as decoder means E[x|z]; real images as E[x] under the "
        "data model. `real` scores as many held-out validation images: the floor at this sample size. "
        "Entropy: the classifier's mean predictive entropy on the samples (nats; lower = looks like one digit).", "",
        "| sampler | draws | K | Fréchet ↓ | entropy |", "|---|---|---|---|---|", *rows, "",
        "![samples per sampler](figures/sampler_grid.png)", "", "![frechet](figures/sampler_frechet.png)", "",
        "Measured against the lecture's story:", "", *_findings(m), "",
        "| model | test reconstruction MSE per pixel | −log p(x \\| z = code) (nats) | best epoch / run |",
        "|---|---|---|---|",
        *[f"| {k} | {r['mse']:.5f} | {r['nll_nats']:.2f} | "
          + (f"{ae[k]['best_epoch']} / {ae[k]['epochs_run']} |" if k in ae else "see section 3 |") for k, r in rec.items()],
        "", "Latent smoothness: straight lines between random pairs of test codes, decoded; the classifier's entropy "
        "along them measures how far the path leaves the data (rows: VAE, AE, DAE, and the same line in pixel space).", "",
        "| path | entropy at the ends | entropy inside |", "|---|---|---|",
        *[f"| {k} | {v['entropy_ends']:.3f} | {v['entropy_mid']:.3f} |" for k, v in it.items() if isinstance(v, dict)], "",
        "![interpolations](figures/interpolations.png)", "", "![entropy along the path](figures/interpolation_entropy.png)", "",
        "![AE vs VAE latent](figures/latent_ae_vae.png)", "",
    ]
