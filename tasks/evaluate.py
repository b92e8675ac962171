"""Stage `evaluate`: one metrics file and one report that tells the lecture's story with measurements.

Inputs: metrics/{gmm,pretrain,adapt,autoencoders,samplers}.json, data/prepared/meta.json.
Outputs: metrics/metrics.json, reports/report.md, reports/figures/{likelihoods,adapt_accuracy}.png.
"""
from __future__ import annotations

import logging

from vaeflow import sampler_report
from vaeflow.config import Config
from vaeflow.io import read_json, write_json, write_text
from vaeflow.paths import Paths
from vaeflow.plots import bars

log = logging.getLogger("vaeflow")
GMM_KEYS = ("family", "n_components", "test_nll_nats", "test_bits_per_dim", "test_nll_nats_source",
            "test_nll_nats_target", "train_nll_nats", "fit_seconds", "n_test")
VAE_KEYS = ("test_nelbo_nats", "test_nll_nats", "test_nll_stderr", "iwae_samples", "test_bits_per_dim",
            "test_nelbo_bits_per_dim", "test_nll_nats_source", "test_nll_nats_target", "best_epoch", "epochs_run",
            "train_seconds", "n_test")


def collect(paths: Paths) -> dict:
    gmm, vae = read_json(paths.stage_metrics("gmm")), read_json(paths.stage_metrics("pretrain"))
    adapt = read_json(paths.stage_metrics("adapt"))
    keys = ("target_test_acc", "target_test_acc_std", "target_test_acc_runs", "source_test_acc", "n_labelled",
            "train_seconds")
    variants = {v: {k: r[k] for k in keys if k in r} for v, r in adapt["variants"].items()}
    acc = {v: r["target_test_acc"] for v, r in variants.items()}
    checks = {"vae_nll_le_nelbo": vae["test_nll_nats"] <= vae["test_nelbo_nats"],
              "vae_beats_gmm": vae["test_nll_nats"] < gmm["test_nll_nats"]}
    if {"dann", "source_only"} <= acc.keys():
        checks["dann_gt_source_only"] = acc["dann"] > acc["source_only"]
    if {"mean_teacher", "dann"} <= acc.keys():
        checks["mean_teacher_gt_dann"] = acc["mean_teacher"] > acc["dann"]
    if {"finetune", "scratch"} <= acc.keys():
        checks["finetune_gt_scratch"] = acc["finetune"] > acc["scratch"]
    gen = sampler_report.collect(paths)  # issue 14: autoencoders and latent samplers
    checks.update(sampler_report.checks(gen))
    return {**gen, "gmm": {k: gmm[k] for k in GMM_KEYS}, "vae": {k: vae[k] for k in VAE_KEYS}, "adapt": variants,
            "checks": checks,
            "seconds": {"gmm_fit": gmm["fit_seconds"], "vae_train": vae["train_seconds"],
                        "adapt_train": sum(r["train_seconds"] for r in variants.values())}}


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def report(m: dict, meta: dict, cfg: Config, adapt_selection: str) -> str:
    g, v, a = m["gmm"], m["vae"], m["adapt"]
    unit = ("bits/dim of the discrete data, (NLL + D·ln L)/(D·ln 2) with L = %d levels" % meta["domains"]["source"]["levels"]
            if cfg.data.likelihood == "gaussian" else "bits/dim of the binary data, NLL/(D·ln 2)")
    dom = "\n".join(f"| {d} | {i['name']} | " + " | ".join(str(i['counts'][s]) for s in ('train', 'val', 'test')) + " |"
                    for d, i in meta["domains"].items())
    lines = [
        "# vaeflow report", "",
        f"Source `{cfg.data.source}` → target `{cfg.data.target}`, data model `{cfg.data.likelihood}`, "
        f"seed {cfg.seed}, image shape {tuple(meta['domains']['source']['shape'])}.", "",
        "## 1. Data", "", "| domain | dataset | train | val | test |", "|---|---|---|---|---|", dom, "",
        "![examples](figures/data_examples.png)", "",
        "## 2. Baseline: a mixture model fitted by EM (maximum likelihood)", "",
        f"A {g['family']} mixture with K = {g['n_components']} components"
        + (f", chosen by BIC from {cfg.gmm.n_components}" if isinstance(cfg.gmm.n_components, list) else "")
        + f". It is a density estimator and a sampler; its samples show its limits (small capacity, "
          "no notion of translation or stroke).", "",
        "![gmm samples](figures/gmm_samples.png)", "",
        "## 3. VAE: a latent-variable model trained on the ELBO", "",
        f"q(z|x) = N(μ(x), diag σ²(x)) with the reparameterisation trick, latent dimension {cfg.vae.latent_dim}, "
        f"{cfg.data.likelihood} decoder. Best epoch {v['best_epoch']} of {v['epochs_run']} by validation ELBO. "
        f"The test NLL is the IWAE bound with k = {v['iwae_samples']} importance samples (q as the proposal), "
        "which is tighter than the ELBO and converges to log p(x) as k grows.", "",
        "![samples](figures/vae_samples.png)", "", "![reconstructions](figures/vae_reconstructions.png)", "",
        ("The latent space has structure: posterior means group by class. On the default data the two domains "
         "also fall into separate regions (right panel): the VAE encodes the domain as well as the digit, which "
         "is why a classifier on these features trained on source labels transfers poorly, and what DANN's "
         "domain-adversarial loss works against."), "",
        "![latent](figures/vae_latent.png)", "", "![curve](figures/vae_curve.png)", "",
        "## 4. Likelihoods in the same units, on the same test images", "",
        f"Units: nats per image and {unit}.", "",
        "| model | test NLL (nats) | bits/dim | source test | target test |", "|---|---|---|---|---|",
        f"| {g['family']} mixture (K={g['n_components']}) | {g['test_nll_nats']:.2f} | {g['test_bits_per_dim']:.4f} "
        f"| {g['test_nll_nats_source']:.2f} | {g['test_nll_nats_target']:.2f} |",
        f"| VAE, −ELBO (upper bound on NLL) | {v['test_nelbo_nats']:.2f} | {v['test_nelbo_bits_per_dim']:.4f} | | |",
        f"| VAE, IWAE k={v['iwae_samples']} | {v['test_nll_nats']:.2f} ± {v['test_nll_stderr']:.2f} "
        f"| {v['test_bits_per_dim']:.4f} | {v['test_nll_nats_source']:.2f} | {v['test_nll_nats_target']:.2f} |", "",
        "![likelihoods](figures/likelihoods.png)", "",
        "## 5. Learning across domains", "",
        f"Target test accuracy. Model selection: {adapt_selection}.", "",
        "| variant | target test acc (mean ± std over seeds) | source test acc | labelled images | seconds |", "|---|---|---|---|---|",
        *[f"| {k} | {r['target_test_acc']:.3f} ± {r.get('target_test_acc_std', 0.0):.3f} | "
          f"{r['source_test_acc']:.3f} | {r['n_labelled']} | "
          f"{r['train_seconds']:.1f} |" for k, r in a.items()], "",
        *_adapt_notes(a, cfg), "![adaptation](figures/adapt_accuracy.png)", "",
        *sampler_report.section(m),
        "## Checks", "", *[f"- {k}: {'yes' if ok else '**no**'}" for k, ok in m["checks"].items()], "",
    ]
    return "\n".join(lines)


VARIANT_NOTES = {
    "source_only": "source labels only",
    "dann": "source labels + unlabelled target, domain-adversarial features (Ganin et al.)",
    "self_training": "each DANN run + rounds on its confident target pseudo-labels",
    "mean_teacher": "source labels + consistency with an EMA teacher on two augmented views of unlabelled "
                    "target images (French et al.); the teacher is scored",
    "mean_teacher_few": "the same engine on the few target labels + the unlabelled target training set",
    "finetune": "the pretrained encoder on the few target labels", "scratch": "the same network, random init",
    "oracle": "all target training labels (an upper bound)",
    "latent_spreading": "label spreading on the VAE's posterior means (the few target labels)",
}


def _adapt_notes(a: dict, cfg: Config) -> list[str]:
    """What each variant learned from, and the input pipeline they share, so the table reads on its own."""
    ad = cfg.adapt
    aug = ad.augment
    pipeline = (f"Every classifier shares the input pipeline: augmentation (shift ≤ {aug.translate:.0%} of the side, "
                f"rotation and shear ≤ {aug.rotate_deg:g}°/{aug.shear_deg:g}°, zoom ±{aug.scale:.0%}, noise σ "
                f"{aug.noise:g}), per-image standardisation {'on' if ad.standardize else 'off'}, feature BatchNorm "
                f"{'on' if ad.feature_bn else 'off'}, label smoothing {ad.label_smoothing:g}.")
    return [*[f"- `{k}`: {VARIANT_NOTES[k]}" for k in a if k in VARIANT_NOTES], "", pipeline, ""]


def run(cfg: Config, paths: Paths) -> dict:
    m = collect(paths)
    meta = read_json(paths.data_meta)
    adapt = read_json(paths.stage_metrics("adapt"))
    bars({"GMM": m["gmm"]["test_nll_nats"], "VAE −ELBO": m["vae"]["test_nelbo_nats"],
          f"VAE IWAE k={m['vae']['iwae_samples']}": m["vae"]["test_nll_nats"]},
         paths.figures / "likelihoods.png", "test NLL (nats/image, lower is better)", "Same test images, same units",
         fmt="{:.1f}")
    bars({k: r["target_test_acc"] for k, r in m["adapt"].items()}, paths.figures / "adapt_accuracy.png",
         "target test accuracy", "Adaptation variants")
    write_json(paths.all_metrics, m)
    write_text(paths.report, report(m, meta, cfg, adapt["selection"]))
    log.info("evaluate: %s", ", ".join(f"{k}={_fmt(v)}" for k, v in m["checks"].items()))
    return m
