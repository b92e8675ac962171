"""The report's section on autoencoders as generators, from metrics/{autoencoders,samplers}.json.

Torch-free, so the evaluate stage stays light. Every sentence that compares two models is computed from
the numbers, and says so when the measurement contradicts the lecture.
"""
from __future__ import annotations

from vaeflow.io import read_json
from vaeflow.paths import Paths

# Sampler -> what it draws, in the report's words.
WHAT = {
    "data_gmm": "data-space mixture (`gmm` stage) draws",
    "vae_prior": "VAE decoder, z ~ its prior",
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
    samplers = {k: {kk: vv for kk, vv in v.items() if kk != "frechet_draws"} for k, v in s["samplers"].items()}
    return {"samplers": samplers, "reconstruction": s["reconstruction"], "interpolation": interp,
            "sample_quality": {"feature_net": s["feature_net"], "n_generated": s["n_generated"], "n_test": s["n_test"],
                               "draws": s["draws"]},
            "autoencoders": a}


def checks(m: dict) -> dict[str, bool]:
    fd = {k: v["frechet"] for k, v in m["samplers"].items()}
    return {"samplers_real_is_floor": fd["real"] == min(fd.values())}


def _fd(v: dict) -> str:
    return f"{v['frechet']:.3f}" + (f" ± {v['frechet_std']:.3f}" if v.get("frechet_std") is not None else "")


def _vs(a: str, b: str, s: dict, claim: str, lecture_expects_a_better: bool | None) -> str:
    """One measured comparison: a beats b when its Fréchet distance is lower by more than twice the combined
    spread of the draws; otherwise the two are within noise of each other."""
    fa, fb = s[a]["frechet"], s[b]["frechet"]
    spread = ((s[a].get("frechet_std") or 0.0) ** 2 + (s[b].get("frechet_std") or 0.0) ** 2) ** 0.5
    if abs(fa - fb) <= 2 * spread:
        outcome, verdict = "is within noise of", "not resolved at this sample size"
    else:
        better = fa < fb
        outcome = "beats" if better else "is worse than"
        verdict = ("measured (the lecture makes no claim)" if lecture_expects_a_better is None else
                   "as the lecture says" if better == lecture_expects_a_better else "**contradicts the lecture**")
    return f"- {a} {outcome} {b}: Fréchet {_fd(s[a])} vs {_fd(s[b])}. {claim}: {verdict}."


def _findings(m: dict) -> list[str]:
    s, it = m["samplers"], m["interpolation"]
    lines = [
        _vs("vae_prior", "ae_gaussian", s, "The lecture: an AE's latent space has no structure to sample; the VAE's "
            "prior gives it one", True),
        _vs("ae_gmm", "ae_gaussian", s, "A mixture fitted to the codes (point 2's toy model in latent space) should "
            "supply structure after training", True),
        _vs("vae_prior", "ae_gmm", s, "The lecture expects the VAE's prior to be the better generator", True),
        _vs("vae_gmm", "vae_prior", s, "Ghosh et al. (2020) found that a density fitted to the codes after "
            "training helps even a VAE", None),
        _vs("vae_prior", "data_gmm", s, "The lecture: the pixel-space GMM lacks capacity", True),
    ]
    mid = {k: it[k]["entropy_mid"] for k in ("vae", "ae", "dae")}
    d = it.get("vae_minus_ae", {})
    lines.append(f"- Interpolation: mean classifier entropy inside the path {mid['vae']:.3f} nats (VAE) vs "
                 f"{mid['ae']:.3f} (AE) and {mid['dae']:.3f} (DAE); pixel-space line {it['pixels']['entropy_mid']:.3f}, "
                 f"real test images {it['real_test_entropy']:.3f}.")
    if d.get("se") is not None:
        resolved = abs(d["mean"]) > 2 * d["se"]
        lines.append(f"  VAE − AE over the same pairs: {d['mean']:+.3f} ± {d['se']:.3f} nats (s.e.). The lecture: "
                     "the VAE's latent space is smoother, so its paths stay closer to the data: "
                     + ("not resolved at this number of pairs." if not resolved else
                        "as the lecture says." if d["mean"] < 0 else "**contradicts the lecture**."))
    return lines


def _prior(s: dict) -> str:
    """The VAE's prior as the samplers stage recorded it (runs made before it recorded one drew N(0, I))."""
    r = s.get("vae_prior", {})
    return (f"a VampPrior over {r.get('n_components')} pseudo-inputs" if r.get("prior") == "vampprior"
            else "N(0, I)")


def section(m: dict) -> list[str]:
    """Markdown lines of the report section; `m` is metrics.json (collect()'s keys)."""
    q, f = m["sample_quality"], m["sample_quality"]["feature_net"]
    rec, ae, it = m["reconstruction"], m["autoencoders"], m["interpolation"]
    prior = _prior(m["samplers"])
    rows = [f"| {k} | {WHAT.get(k, k) if k != 'vae_prior' else f'VAE decoder, z ~ {prior} (its prior)'} | {v.get('n_components', '')} | {_fd(v)} | {v['entropy']:.3f} |"
            for k, v in sorted(m["samplers"].items(), key=lambda kv: kv[1]["frechet"])]
    return [
        "## 6. Can an autoencoder generate? AE, denoising AE and VAE as generators", "",
        "A plain autoencoder (ae) and a denoising one (dae, input noise σ = "
        f"{ae['dae']['noise']}) share the VAE's encoder trunk, decoder, latent size and data model, with a "
        "deterministic code and the reconstruction log-likelihood as objective (no KL). Each model's training "
        "codes (the VAE's posterior means) get a single Gaussian and a Gaussian mixture with K chosen by BIC "
        f"(the `gmm` stage's code); the VAE also has its prior, {prior}.", "",
        f"**One measure for every sampler**: the Fréchet distance between features of {q['n_generated']} generated "
        f"images and of the {q['n_test']} test images (both domains), features = the {f['features']} of a fixed "
        f"{f['arch']} trained for {f['epochs']} epochs on the {f['trained_on']} (source test accuracy "
        f"{f['source_test_acc']:.3f}). Images enter it as decoder means E[x|z]; real images as E[x] under the "
        "data model. `real` scores as many held-out validation images: the floor at this sample size. "
        f"Generated samplers: mean ± std over {q['draws']} independent draws. "
        "Entropy: the classifier's mean predictive entropy on the samples (nats; lower = looks like one class).", "",
        "| sampler | what it draws | K | Fréchet ↓ | entropy |", "|---|---|---|---|---|", *rows, "",
        "![samples per sampler](figures/sampler_grid.png)", "", "![frechet](figures/sampler_frechet.png)", "",
        "Measured against the lecture's story:", "", *_findings(m), "",
        "| model | test reconstruction MSE per pixel | −log p(x \\| z = code) (nats) | best epoch / run |",
        "|---|---|---|---|",
        *[f"| {k} | {r['mse']:.5f} | {r['nll_nats']:.2f} | "
          + (f"{ae[k]['best_epoch']} / {ae[k]['epochs_run']} |" if k in ae else "see section 3 |") for k, r in rec.items()],
        "", "Latent smoothness: straight lines between random pairs of test codes, decoded; the classifier's entropy "
        "along them measures how far the path leaves the data (rows: VAE, AE, DAE, and the same line in pixel space).", "",
        "| path | entropy at the ends | entropy inside |", "|---|---|---|",
        *[f"| {k} | {v['entropy_ends']:.3f} | {v['entropy_mid']:.3f} |" for k, v in it.items()
          if isinstance(v, dict) and "entropy_mid" in v], "",
        "![interpolations](figures/interpolations.png)", "",
        "![entropy along the path](figures/interpolation_entropy.png)", "",
        "![AE vs VAE latent](figures/latent_ae_vae.png)", "",
    ]
