"""Stage `evaluate`: one metrics file and one report that tells the lecture's story with measurements.

Inputs: metrics/{gmm,pretrain,adapt,autoencoders,samplers}.json, data/prepared/meta.json.
Outputs: metrics/metrics.json, reports/report.md, reports/figures/{likelihoods,adapt_accuracy}.png.
Sentences that compare numbers come from vaeflow.report_prose, computed, never written for one dataset.
"""
from __future__ import annotations

import logging

from vaeflow import report_prose, sampler_report
from vaeflow.config import Config
from vaeflow.io import read_json, write_json, write_text
from vaeflow.paths import Paths
from vaeflow.plots import dots
from vaeflow.results_table import gmm_name
from vaeflow.training.health import IDEAL
from vaeflow.variants import BY_NAME, lineage

log = logging.getLogger("vaeflow")
GMM_KEYS = ("family", "n_components", "test_nll_nats", "test_bits_per_dim", "test_nll_nats_source",
            "test_nll_nats_target", "train_nll_nats", "fit_seconds", "n_test", "covariance_type")
VAE_KEYS = ("test_nelbo_nats", "test_nll_nats", "test_nll_stderr", "iwae_samples", "test_bits_per_dim",
            "test_nelbo_bits_per_dim", "test_nll_nats_source", "test_nll_nats_target", "best_epoch", "epochs_run",
            "train_seconds", "n_test")


def collect(paths: Paths) -> dict:
    gmm, vae = read_json(paths.stage_metrics("gmm")), read_json(paths.stage_metrics("pretrain"))
    adapt = read_json(paths.stage_metrics("adapt"))
    keys = ("target_test_acc", "target_test_acc_std", "target_test_acc_runs", "source_test_acc", "n_labelled",
            "train_seconds")
    variants = {v: {k: r[k] for k in keys if k in r} for v, r in adapt["variants"].items()}
    for v, r in adapt["variants"].items():
        if r.get("settings"):  # what the variant decided ("auto"), as its runs trained with it
            variants[v]["settings"] = r["settings"]
        if r.get("stability"):  # the spread only: the per-epoch curves stay in metrics/adapt.json
            variants[v]["stability"] = {k: r["stability"][k] for k in ("last_epochs", "spread", "std")}
        for check in ("collapse", "source_retention"):  # label-free checks (vaeflow/training/health.py)
            if (r.get(check) or {}).get("flagged"):
                variants[v][check] = r[check]
        if r.get("fallback"):  # adapt.on_flag=fallback scored these runs as a network up the chain
            variants[v]["fallback"] = r["fallback"]
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
    return {**gen, "gmm": {k: gmm[k] for k in GMM_KEYS if k in gmm}, "vae": {k: vae[k] for k in VAE_KEYS}, "adapt": variants,
            "adapt_paired": adapt.get("paired", {}), "adapt_intensity_flip": adapt.get("intensity_flip"),
            "checks": checks,
            "seconds": {"gmm_fit": gmm["fit_seconds"], "vae_train": vae["train_seconds"],
                        "adapt_train": sum(r["train_seconds"] for r in variants.values())}}


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def report(m: dict, meta: dict, cfg: Config, adapt_selection: str) -> str:
    g, v, a = m["gmm"], m["vae"], m["adapt"]
    same = cfg.data.source == cfg.data.target  # two disjoint parts of one dataset: no domain shift to speak of
    bound = "the ELBO" if cfg.pretrain.objective == "elbo" else f"the IWAE bound with k = {cfg.pretrain.k}"
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
        + (f", and {g['covariance_type']} covariances (`gmm.covariance_type: {cfg.gmm.covariance_type}`)"
           if g.get("covariance_type") else "")
        + ". It is a density estimator and a sampler: each component is one template image "
        + ("(a probability per pixel, the pixels independent given the component)" if g["family"] == "bernoulli"
           else "with a covariance")
        + ", every pixel modelled in place, so its samples show how far K templates go.", "",
        "![gmm samples](figures/gmm_samples.png)", "",
        f"## 3. VAE: a latent-variable model trained on {bound}", "",
        f"q(z|x) = N(μ(x), diag σ²(x)) with the reparameterisation trick, latent dimension {cfg.vae.latent_dim}, "
        f"{cfg.data.likelihood} decoder. Best epoch {v['best_epoch']} of {v['epochs_run']} by {bound} on the validation split. "
        f"The test NLL is the IWAE bound with k = {v['iwae_samples']} importance samples (q as the proposal), "
        "which is tighter than the ELBO and converges to log p(x) as k grows.", "",
        "![samples](figures/vae_samples.png)", "", "![reconstructions](figures/vae_reconstructions.png)", "",
        report_prose.latent_figure(same), "",
        *report_prose.domain_gap(a, same),
        "![latent](figures/vae_latent.png)", "", "![curve](figures/vae_curve.png)", "",
        "## 4. Likelihoods in the same units, on the same test images", "",
        f"Units: nats per image and {unit}.", "",
        "| model | test NLL (nats) | bits/dim | source test | target test |", "|---|---|---|---|---|",
        f"| {gmm_name(g)} | {g['test_nll_nats']:.2f} | {g['test_bits_per_dim']:.4f} "
        f"| {g['test_nll_nats_source']:.2f} | {g['test_nll_nats_target']:.2f} |",
        f"| VAE, −ELBO (upper bound on NLL) | {v['test_nelbo_nats']:.2f} | {v['test_nelbo_bits_per_dim']:.4f} | | |",
        f"| VAE, IWAE k={v['iwae_samples']} | {v['test_nll_nats']:.2f} ± {v['test_nll_stderr']:.2f} "
        f"| {v['test_bits_per_dim']:.4f} | {v['test_nll_nats_source']:.2f} | {v['test_nll_nats_target']:.2f} |", "",
        *report_prose.likelihoods(g, v),
        "![likelihoods](figures/likelihoods.png)", "",
        "## 5. Learning across domains", "",
        f"Target test accuracy. Model selection: {adapt_selection}.", "",
        "| variant | target test acc (mean ± std over seeds) | source test acc | labelled images | seconds |", "|---|---|---|---|---|",
        *[f"| {k} | {r['target_test_acc']:.3f} ± {r.get('target_test_acc_std', 0.0):.3f} | "
          f"{r['source_test_acc']:.3f} | {r['n_labelled']} | "
          f"{r['train_seconds']:.1f} |" for k, r in sorted(a.items(), key=lambda kv: -kv[1]["target_test_acc"])], "",
        *report_prose.adaptation(a, m.get("adapt_paired")), *_adapt_notes(a, cfg, m),
        "![adaptation](figures/adapt_accuracy.png)", "",
        *sampler_report.section(m),
        "## Checks", "", *[f"- {k}: {'yes' if ok else '**no**'}" for k, ok in m["checks"].items()], "",
    ]
    return "\n".join(lines)


def _adapt_notes(a: dict, cfg: Config, m: dict) -> list[str]:
    """What each variant learned from, and the input pipeline they share, so the table reads on its own."""
    ad = cfg.adapt
    aug = ad.augment
    pipeline = (f"Every classifier shares the input pipeline: augmentation (shift ≤ {aug.translate:.0%} of the side, "
                f"rotation and shear ≤ {aug.rotate_deg:g}°/{aug.shear_deg:g}°, zoom ±{aug.scale:.0%}, noise σ "
                f"{aug.noise:g}{_flip_text(aug.intensity_flip, m.get('adapt_intensity_flip'))}), "
                f"per-image standardisation {'on' if ad.standardize else 'off'}, feature BatchNorm "
                f"{'on' if ad.feature_bn else 'off'}, label smoothing {ad.label_smoothing:g}.")
    pipeline += (f" BatchNorm after every trunk layer {'on' if ad.layer_bn else 'off'}; variants marked AdaBN are "
                 "scored with BatchNorm statistics re-estimated on the unlabelled target training images.")
    notes = [f"- `{k}`: {BY_NAME[k].note}" + (" (AdaBN)" if BY_NAME[k].target_bn else "") + _settings_text(a[k])
             for k in a if k in BY_NAME]
    return [*notes, "", pipeline, "", *_paired_lines(m.get("adapt_paired") or {}), *_stability_lines(a),
            *_collapse_lines(a), *_retention_lines(a)]


def _settings_text(r: dict) -> str:
    """The settings a variant resolved for itself (Algorithm.resolved), e.g. the mean teacher's align_floor "auto"."""
    kv = r.get("settings") or {}
    return f" [trained with {', '.join(f'{k} {str(v).lower()}' for k, v in kv.items())}]" if kv else ""


def _flip_text(setting: float | str, resolved: float | None) -> str:
    """The intensity flip as the runs trained with it: "auto" is resolved by the adapt stage, which records the value
    in metrics/adapt.json; the report says both."""
    p = resolved if isinstance(resolved, (int, float)) else setting
    if setting == "auto":
        return f", intensity flip {p:g} (auto)" if isinstance(p, (int, float)) else ", intensity flip auto"
    return f", intensity flip {p:g}" if p else ""


def _paired_lines(paired: dict) -> list[str]:
    """Paired differences against the reference variant (the repeats share their seeds)."""
    if not paired:
        return []
    ref = next(iter(paired.values()))["reference"]
    rows = [f"| `{v}` | {d['mean'] * 100:+.2f} | {d['se'] * 100:.2f} |" for v, d in paired.items()]
    return [f"Paired differences in target accuracy against `{ref}` (points; same seed per repeat):", "",
            "| variant | mean difference | standard error |", "|---|---|---|", *rows, ""]


def _stability_lines(a: dict) -> list[str]:
    rows = [f"| `{v}` | {r['stability']['last_epochs']} | {r['stability']['spread'] * 100:.2f} |"
            for v, r in a.items() if r.get("stability")]
    if not rows:
        return []
    return ["Stability: spread (max − min) of the target test accuracy over the last epochs, mean over repeats "
            "(logged for this report only; it selects nothing):", "",
            "| variant | last epochs | spread (points) |", "|---|---|---|", *rows, ""]


def _collapse_lines(a: dict) -> list[str]:
    rows = [f"| `{v}` | {', '.join(str(i + 1) for i in r['collapse']['flagged'])} | "
            f"{min(r['collapse']['min_share_ratio_runs']):.3f} |" for v, r in a.items() if r.get("collapse")]
    if not rows:
        return []
    thr = next(r["collapse"].get("threshold", 0.25) for r in a.values() if r.get("collapse"))  # tasks/adapt.py's
    return ["**Possible class collapse** (label-free: some class's share of the predictions on unlabelled target "
            f"images fell below {thr:g} of its share of the labelled set; see the stage's log):", "",
            "| variant | runs | lowest share ÷ labelled share |", "|---|---|---|", *rows, ""]


def _retention_lines(a: dict) -> list[str]:
    def scored(r: dict) -> str:  # adapt.on_flag=fallback: each flagged run scored as a network up its chain
        f = r.get("fallback")
        if not f:  # warn only, or nothing up its chain to be scored as (held to a perfect reading)
            return "as trained" + ("" if r["source_retention"]["reference"] == IDEAL else " (on_flag=warn)")
        return ", ".join(f"run {i + 1} as `{p}`" for i, p in zip(f["runs"], f["to"]))
    rows = [f"| `{v}` | {', '.join(str(i + 1) for i in c['flagged'])} | `{c['reference']}` | "
            f"{min((q for q in c['retained_runs'] if q is not None), default=float('nan')):.2f} | {scored(r)} |"
            for v, r in a.items() if (c := r.get("source_retention"))]
    if not rows:
        return []
    thr = next(r["source_retention"]["threshold"] for r in a.values() if r.get("source_retention"))
    return ["**Source lost** (label-free: a run kept less than " f"{thr:g} of its source network's source-validation "
            "accuracy above chance (of a perfect reading, where no source network is up its chain), or continues "
            "such a run; its target classes may be permuted; see the stage's "
            "log):", "", "| variant | runs | source network | lowest retained share | scored |", "|---|---|---|---|---|",
            *rows, ""]


def figures(m: dict, paths: Paths) -> None:
    """Dot plots (vaeflow.plots.dots): best first, error bars where there is a spread, axes fitted to the values."""
    g, v, a = m["gmm"], m["vae"], m["adapt"]
    iwae = f"VAE, IWAE k={v['iwae_samples']}"
    dots({f"{gmm_name(g)} (EM)": g["test_nll_nats"], "VAE, −ELBO (a bound)":
          v["test_nelbo_nats"], iwae: v["test_nll_nats"]}, paths.figures / "likelihoods.png",
         "test NLL (nats/image); error bar: s.e. of the IWAE estimate",
         f"Likelihood on the same {v['n_test']} test images (lower is better)",
         errors={iwae: v["test_nll_stderr"]}, lower_is_better=True, fmt="{:.2f}", relative="vs best")
    seeds = max(len(r.get("target_test_acc_runs", [])) for r in a.values())
    dots({k: r["target_test_acc"] for k, r in a.items()}, paths.figures / "adapt_accuracy.png",
         f"target test accuracy (mean ± std over {seeds} seeds)", "Adaptation variants, best first",
         errors={k: r.get("target_test_acc_std") for k, r in a.items() if len(r.get("target_test_acc_runs", [])) > 1},
         groups={k: _labels_used(k, r) for k, r in a.items()}, ref="source_only")


_LABELS = {"source": "source labels", "few": "a few target labels", "target": "all target labels",
           "joint": "source + all target labels"}


def _labels_used(name: str, r: dict) -> str:
    """The chart's colour: whose labels a variant learned from, through the variants it continues too
    (the registry's `labelled`), so that e.g. the oracle's 540 target labels and source_only's 540 source
    labels are told apart; a name the registry lacks falls back to its count of labelled images."""
    if name not in BY_NAME:
        return f"{r.get('n_labelled', '?')} labelled images"
    kinds = [v.labelled for v in lineage(name) if v.labelled]
    return _LABELS.get(kinds[0], kinds[0]) if kinds else "no labels"


def headline(m: dict) -> dict:
    """The few numbers `dvc metrics show` and `dvc exp show` list: flat, one column each."""
    out = {"gmm_test_nll": m["gmm"]["test_nll_nats"], "vae_test_nelbo": m["vae"]["test_nelbo_nats"],
           "vae_test_nll": m["vae"]["test_nll_nats"]}
    out.update({f"acc_{v}": r["target_test_acc"] for v, r in m["adapt"].items()})
    return {k: round(float(v), 4) for k, v in out.items()}


def run(cfg: Config, paths: Paths) -> dict:
    m = collect(paths)
    meta = read_json(paths.data_meta)
    adapt = read_json(paths.stage_metrics("adapt"))
    figures(m, paths)
    write_json(paths.all_metrics, m)
    write_json(paths.summary, headline(m))
    write_text(paths.report, report(m, meta, cfg, adapt["selection"]))
    log.info("evaluate: %s", ", ".join(f"{k}={_fmt(v)}" for k, v in m["checks"].items()))
    return m
