"""Stage `adapt`: transfer from the pretrained VAE encoder to target-domain classification.

Inputs: data/prepared, models/vae.pt. Outputs: models/adapt/<variant>.pt, metrics/adapt.json,
metrics/plots/adapt/{confusion,curve}_<variant>.csv.

Every variant is a row of vaeflow/variants.py (its Algorithm, whose labels it reads, whether it sees the
unlabelled target, what it continues, whether its BatchNorm takes the target's statistics); this stage
only hands each one its data, trains it with the one loop (adapt_trainer.fit) and scores it on the target
test set. Which epoch is scored is the configured selection rule's answer (model_selection.py), from a
history without target labels.

Seeds depend on (seed, repeat) only, never on a variant's place in the list: every variant of repeat r
starts from the same random state (common random numbers), so a variant gives the same result whatever
else is listed, and differences between variants are paired by repeat.
"""
from __future__ import annotations

import copy
import logging

import numpy as np
import torch

from vaeflow.tasks.adapt_parallel import n_workers, train_in_workers
from vaeflow.config import Config
from vaeflow.io import file_sha256, save_torch, write_json, write_text
from vaeflow.models.batchnorm import has_bn, preserve_function, reestimate_bn
from vaeflow.models.classifier import classifier_from_vae, standardize
from vaeflow.paths import Paths
from vaeflow.prepared import load_prepared, load_vae, to_tensor
from vaeflow.progress import epoch_bar
from vaeflow.runtime import autocast, seed_everything, select_device
from vaeflow.training.adapt_trainer import AdaptResult, confusion, fit, steps_for
from vaeflow.training.algorithms import DANN, build_algorithm, resolve
from vaeflow.training.augment import resolve_auto
from vaeflow.training.checkpoint import fingerprint
from vaeflow.training.health import (SHARE_IMAGES, class_shares, collapse_check, fallback, ideal_retention,
                                     inherited, retention_check, source_root)
from vaeflow.training.model_selection import RULES
from vaeflow.variants import BY_NAME, VariantSpec, lineage

log = logging.getLogger("vaeflow")
LAST_EPOCHS = 5  # the stability report: spread of the target accuracy over this many last epochs


def few_labels(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of `per_class` images of every class, drawn with a fixed seed (fewer if a class is short)."""
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]))


def _network(spec: VariantSpec, cfg: Config, vae, n_classes: int, device, calibration: torch.Tensor):
    """The variant's classifier, untrained: the VAE encoder's weights or a random initialisation (a
    continuation's weights are loaded by the caller). A domain head only for DANN-family methods."""
    a = cfg.adapt
    root = spec if not spec.continues else BY_NAME[spec.continues]
    needs_domain = issubclass(resolve(spec.algorithm), DANN)
    pretrained = a.warm_start and root.init == "pretrained"
    clf = classifier_from_vae(vae, vae.spec, n_classes, a.head_hidden,
                              domain_hidden=a.dann.domain_hidden if needs_domain else None, pretrained=pretrained,
                              backbone=a.backbone, layer_bn=a.layer_bn, width=a.width, standardize=a.standardize,
                              feature_bn=a.feature_bn).to(device)
    if a.layer_bn and pretrained and a.bn_init == "identity":
        x = calibration  # the images the VAE was trained on (both domains' training images, a fixed subset)
        preserve_function(clf.trunk, standardize(x) if clf.standardize else x)
    return clf


def _scorer(spec: VariantSpec, x_unl: torch.Tensor):
    """Put an algorithm's predictor as it will be scored: with the target's BatchNorm statistics (AdaBN)
    where the variant asks for them. Returns (network state dict, predict function)."""
    def prepare(algo, state: dict | None = None):
        net = copy.deepcopy(algo.predictor())
        if state is not None:
            net.load_state_dict(state)
        if spec.target_bn and has_bn(net):
            reestimate_bn(net, x_unl)
        return net
    return prepare


@torch.inference_mode()
def _predict(net, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    net.eval()
    return torch.cat([net(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def _train_one(variant: str, r: int, cfg: Config, paths: Paths, ctx: dict) -> dict:
    """One repeat of one variant: train (or continue), select, score. Returns the run's record."""
    a, spec = cfg.adapt, BY_NAME[variant]
    sets, vae, tgt_test, src_test = ctx["sets"], ctx["vae"], ctx["target_test"], ctx["source_test"]
    seed_everything(cfg.seed + 100 * r)
    clf = _network(spec, cfg, vae, ctx["n_classes"], ctx["device"], ctx["calibration"])
    parent_fp = ""
    if spec.continues:
        parent = ctx["trained"][(spec.continues, r)]
        # A DANN network's domain head stays behind when a method without one continues it (dann_mean_teacher).
        own = clf.state_dict().keys()
        clf.load_state_dict({k: v for k, v in parent["network"].items() if k in own or not k.startswith("domain_head.")})
        parent_fp = parent["fp"]
    cls = resolve(spec.algorithm)
    # "joint" (joint_oracle): an oracle's every target training label, for the target batches of its own
    joint = {"y_unl": sets["target"][1]} if spec.labelled == "joint" else {}
    algo = build_algorithm(variant, clf, a, vae=vae, **joint).to(ctx["device"])
    x_lab, y_lab = sets[spec.labelled] if spec.labelled else sets["source"]
    x_unl = sets["unlabelled"]
    prepare = _scorer(spec, x_unl)
    trace = None
    if a.trace and cls.schedule(a) > 0:
        trace = lambda al: {"target_test_acc": float((_predict(prepare(al), tgt_test[0]) == tgt_test[1])  # noqa: E731
                                                      .float().mean())}
    # the variant list is not part of one run's fingerprint: a variant's run is the same whatever else is listed
    # "algorithm-vN": bumped when an Algorithm's checkpointed state changes shape or meaning (v4: FixMatch's step
    # count; v5: the warmed-up EMA of the mean teacher and SHOT, with their step counts; v6: DANN's step count)
    fp = fingerprint(cfg.seed, variant, r, a.fingerprint_dump("variants"), ctx["hashes"], parent_fp, "algorithm-v6")
    tag = f"adapt {variant}" + (f" {r + 1}/{a.repeats}" if a.repeats > 1 else "")
    epochs = cls.schedule(a)
    with epoch_bar(tag, max(epochs, 1), show="cls_loss") as advance:
        res: AdaptResult = fit(algo, x_lab, y_lab, x_unl if algo.uses_unlabelled else None, epochs=epochs,
                               steps_per_epoch=ctx["steps"], batch_size=a.batch_size, monitor=ctx["monitor"],
                               rule=RULES[a.selection], trace=trace,
                               ckpt_path=paths.checkpoint(f"adapt_{variant}_{r}"), fingerprint=fp, on_epoch=advance,
                               checkpoint_every_s=a.checkpoint_every_s, precision=a.precision)
    if isinstance(algo.predictor(), type(clf)):
        ctx["trained"][(variant, r)] = {"network": {k: v.clone() for k, v in algo.continued().state_dict().items()},
                                        "fp": fp}
        net = prepare(algo, res.state)
        predict = lambda x: _predict(net, x)  # noqa: E731
        state = net.state_dict()
    else:  # a method without a network of its own (latent_spreading)
        predict, state = algo.predict, {}
    pred = predict(tgt_test[0]).cpu().numpy()
    shares = class_shares(predict(x_unl[:SHARE_IMAGES]).cpu().numpy(), ctx["n_classes"])
    acc = lambda xy: float((predict(xy[0]) == xy[1]).float().mean())  # noqa: E731
    return {"pred": pred, "shares": shares, "acc": float((pred == tgt_test[1].cpu().numpy()).mean()), "res": res,
            "state": state, "seconds": res.seconds, "source_test_acc": acc(src_test),
            "source_val_acc": acc(ctx["monitor"]),  # the retention check's (vaeflow/training/health.py)
            "settings": algo.resolved()}


def context(cfg: Config, paths: Paths) -> dict:
    """What every training of the stage reads: the data sets, the VAE, the device, the scoring sets. Built
    once per process (the stage's, or each worker's: tasks/adapt_parallel.py)."""
    device = select_device(cfg.device)
    autocast(device, cfg.adapt.precision)  # an unsupported adapt.precision is refused before anything is read
    data = load_prepared(paths)
    vae = load_vae(paths, device)
    a = cfg.adapt
    src, tgt = data.source, data.target
    t = lambda x: to_tensor(x, device)  # noqa: E731
    xs, ys, xt = t(src.x_train), t(src.y_train), t(tgt.x_train)
    lab = few_labels(tgt.y_train, a.labels_per_class, cfg.seed)
    # Target training labels are read only where a variant's row asks for them ("few", "target", "joint"): the
    # unsupervised variants never touch them (tests/test_adapt_protocol.py permutes them to check).
    sets = {"source": (xs, ys), "unlabelled": xt,
            "few": (xt[lab], t(tgt.y_train[lab])), "target": (xt, t(tgt.y_train)), "joint": (xs, ys)}
    return {"sets": sets, "vae": vae, "device": device, "n_classes": src.n_classes, "trained": {}, "data": data,
            "steps": steps_for(len(xs), len(xt), a.batch_size), "monitor": (t(src.x_val), t(src.y_val)),
            "target_test": (t(tgt.x_test), t(tgt.y_test)), "source_test": (t(src.x_test), t(src.y_test)),
            "hashes": (data.hashes, file_sha256(paths.vae)), "calibration": torch.cat([xs[:2048], xt[:2048]])}


def chains(variants: list[str], repeats: int) -> list[list[tuple[str, int]]]:
    """The stage's trainings as independent chains: a variant with the listed variants that continue it,
    for one repeat (source_only → adabn, shot; dann → self_training). Chains share nothing but the inputs,
    so they may run in any order, in any process, with the same results (each training seeds itself)."""
    out: dict[tuple[str, int], list[tuple[str, int]]] = {}
    for r in range(repeats):
        for v in variants:
            root = next(s.name for s in reversed(lineage(v)) if s.name in variants)
            out.setdefault((root, r), []).append((v, r))
    return list(out.values())


def train_chain(chain: list[tuple[str, int]], cfg: Config, paths: Paths, ctx: dict) -> dict:
    return {(v, r): _train_one(v, r, cfg, paths, ctx) for v, r in chain}


def run(cfg: Config, paths: Paths) -> dict:
    ctx = context(cfg, paths)
    # "auto" settings become numbers here, once (and logged once): every training, in this process or a worker,
    # then reads the same resolved section, and the runs' fingerprints record the value they trained with
    cfg = cfg.model_copy(update={"adapt": resolve_auto(cfg.adapt, ctx["sets"]["source"][0], ctx["sets"]["unlabelled"])})
    a = cfg.adapt
    tgt, work = ctx["data"].target, chains(a.variants, a.repeats)
    records: dict[tuple[str, int], dict] = {}
    results: dict[str, dict] = {}

    def finished(chain_records: dict) -> None:
        """Take a chain's records; summarise and write each variant whose repeats are all done (so a killed
        stage leaves the variants it finished, as it did before chains ran in workers)."""
        records.update(chain_records)
        for variant in a.variants:
            if variant in results or any((variant, r) not in records for r in range(a.repeats)):
                continue
            runs = [records[(variant, r)] for r in range(a.repeats)]
            checks = _checks(variant, runs, a.variants, records, results, ctx)  # on the runs as trained
            fell = None
            # a variant that continues nothing has no network up its chain to be scored as: it stays as trained
            flagged = checks.get("source_retention", {}).get("flagged")
            if a.on_flag == "fallback" and BY_NAME[variant].continues and flagged:
                runs, fell = fallback(variant, runs, flagged, results, records)
            results[variant] = res = {**_summary(variant, runs, ctx["sets"], tgt, ctx["n_classes"]), **checks}
            if fell:
                res["fallback"] = fell
            _write_variant(paths, variant, runs[0], tgt)
            log.info("adapt %-16s target test acc %.3f ± %.3f over %d seeds (source test %.3f, %d labels, %.1fs)",
                     variant, res["target_test_acc"], res["target_test_acc_std"], len(runs),
                     res["source_test_acc"], res["n_labelled"], res["train_seconds"])

    n = n_workers(cfg, ctx["device"], len(work))
    if n > 1:
        train_in_workers(work, cfg, paths, n, finished)
    else:
        for c in work:
            finished(train_chain(c, cfg, paths, ctx))
    results = {v: results[v] for v in a.variants}  # the listed order, whatever order chains ended in
    rule = RULES[a.selection]
    out = {"variants": results, "paired": paired_differences(results), "steps_per_epoch": ctx["steps"],
           "epochs": a.epochs, "repeats": a.repeats, "selection_rule": rule.name,
           "intensity_flip": a.augment.intensity_flip,
           "selection": rule.description.format(repeats=a.repeats)}
    write_json(paths.stage_metrics("adapt"), out)
    return out


def _checks(variant: str, runs: list[dict], listed: list[str], records: dict, results: dict, ctx: dict) -> dict:
    """The label-free health checks of a variant's runs (vaeflow/training/health.py), before any fallback."""
    spec, n = BY_NAME[variant], ctx["n_classes"]
    out: dict = {"source_val_acc_runs": [float(u["source_val_acc"]) for u in runs]}
    lab = spec.labelled or (BY_NAME[spec.continues].labelled if spec.continues else None)
    if lab:
        out["collapse"] = collapse_check(variant, runs, class_shares(ctx["sets"][lab][1].cpu().numpy(), n))
    if (root := source_root(variant, listed)) != variant:
        out["source_retention"] = retention_check(
            variant, runs, root, [records[(root, r)] for r in range(len(runs))], n,
            inherited(results[spec.continues]))
    elif spec.labelled == "source":  # nothing up its chain to compare with: a perfect reading is the reference
        out["source_retention"] = ideal_retention(variant, runs, n)
    return out


def paired_differences(results: dict[str, dict]) -> dict[str, dict]:
    """Each variant minus the reference (source_only if listed, else the first), repeat by repeat: the
    repeats share their seeds, so the difference's standard error is that of paired samples."""
    if not results:
        return {}
    ref = "source_only" if "source_only" in results else next(iter(results))
    base = np.array(results[ref]["target_test_acc_runs"])
    out = {}
    for v, res in results.items():
        runs = np.array(res["target_test_acc_runs"])
        if v == ref or len(runs) != len(base):
            continue
        d = runs - base
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
        out[v] = {"reference": ref, "mean": float(d.mean()), "se": se, "runs": d.tolist()}
    return out


def _stability(runs: list[dict]) -> dict | None:
    """Spread (max − min) of the target test accuracy over each run's last LAST_EPOCHS epochs, averaged."""
    traces = [[row["target_test_acc"] for row in u["res"].trace] for u in runs if u["res"].trace]
    if not traces:
        return None
    tails = [tr[-LAST_EPOCHS:] for tr in traces]
    return {"last_epochs": len(tails[0]), "spread": float(np.mean([max(t) - min(t) for t in tails])),
            "std": float(np.mean([np.std(t) for t in tails])), "curves": traces}


def _summary(variant: str, runs: list[dict], sets: dict, tgt, n_classes: int) -> dict:
    spec = BY_NAME[variant]
    accs = np.array([u["acc"] for u in runs])
    lab = [s.labelled for s in (spec, *(() if not spec.continues else (BY_NAME[spec.continues],))) if s.labelled]
    kind = lab[0] if lab else None
    n_labelled = 0 if kind is None else len(sets[kind][1]) + (len(sets["target"][1]) if kind == "joint" else 0)
    out = {
        "target_test_acc": float(accs.mean()),
        "target_test_acc_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
        "target_test_acc_runs": accs.tolist(),
        "source_test_acc": float(np.mean([u["source_test_acc"] for u in runs])),
        "n_labelled": n_labelled,
        "labelled_domain": {"source": "source", "joint": "both", None: "none"}.get(kind, "target"),
        "train_seconds": float(sum(u["seconds"] for u in runs)),
        "seconds_per_run": [float(u["seconds"]) for u in runs],
        "selected_epochs": [u["res"].selected_epoch for u in runs],
        "confusion": confusion(tgt.y_test, runs[0]["pred"], n_classes).tolist(),
    }
    if runs[0].get("settings"):  # e.g. the mean teacher's alignment as "auto" resolved it for this variant
        out["settings"] = runs[0]["settings"]
    stab = _stability(runs)
    if stab:
        out["stability"] = stab
    rounds = [[row for row in u["res"].history if "pseudo_labelled" in row] for u in runs]
    if any(rounds):  # pseudo-labels per round, per repeat (counts only: no label is read)
        out["rounds"] = [[{k: row[k] for k in ("round", "pseudo_labelled", "per_class") if k in row} for row in rr]
                         for rr in rounds]
    return out


def _write_variant(paths: Paths, variant: str, first: dict, tgt) -> None:
    """The saved model and the plotted curves are the first repeat's (seed = params seed)."""
    if first["state"]:
        save_torch(paths.adapt_model(variant), {k: v.cpu() for k, v in first["state"].items()})
    write_text(paths.plots / "adapt" / f"confusion_{variant}.csv",
               "actual,predicted\n" + "".join(f"{a_},{p_}\n" for a_, p_ in zip(tgt.y_test, first["pred"])))
    hist = first["res"].history
    cols = list(dict.fromkeys(c for row in hist for c, v in row.items() if isinstance(v, (int, float)))) or ["epoch"]
    write_text(paths.plots / "adapt" / f"curve_{variant}.csv", ",".join(cols) + "\n" + "".join(
        ",".join(f"{row.get(c, float('nan')):.5g}" for c in cols) + "\n" for row in hist))
