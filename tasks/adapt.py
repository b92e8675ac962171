"""Stage `adapt`: transfer from the pretrained VAE encoder to target-domain classification.

Inputs: data/prepared, models/vae.pt. Outputs: models/adapt/<variant>.pt, metrics/adapt.json,
metrics/plots/adapt/{confusion,curve}_<variant>.csv.

Variants (all scored on the target test set, selected by nothing: a fixed schedule, last step):
  source_only  warm-started encoder + classifier on source labels
  dann         the same + domain classifier behind a gradient-reversal layer, target train unlabelled
  finetune     warm-started encoder on `labels_per_class` labelled target images per class
  scratch      the same network and labels, random initialisation
  oracle       warm-started, all target training labels (an upper bound)
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from vaeflow.config import Config
from vaeflow.io import file_sha256, save_torch, write_json, write_text
from vaeflow.models.classifier import classifier_from_vae
from vaeflow.paths import Paths
from vaeflow.prepared import load_prepared, load_vae, to_tensor
from vaeflow.progress import epoch_bar
from vaeflow.runtime import seed_everything, select_device
from vaeflow.training.adapt_trainer import accuracy, confusion, predict, steps_for, train_classifier
from vaeflow.training.checkpoint import fingerprint

log = logging.getLogger("vaeflow")


def few_labels(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of `per_class` images of every class, drawn with a fixed seed (fewer if a class is short)."""
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]))


def run(cfg: Config, paths: Paths) -> dict:
    device = select_device(cfg.device)
    data = load_prepared(paths)
    vae = load_vae(paths, device)
    vae_hash = file_sha256(paths.vae)
    a = cfg.adapt
    src, tgt = data.source, data.target
    t = lambda x: to_tensor(x, device)  # noqa: E731
    xs, ys, xt, yt = t(src.x_train), t(src.y_train), t(tgt.x_train), t(tgt.y_train)
    lab = few_labels(tgt.y_train, a.labels_per_class, cfg.seed)
    sets = {
        "source_only": (xs, ys, None),
        "dann": (xs, ys, xt),
        "finetune": (xt[lab], yt[lab], None),
        "scratch": (xt[lab], yt[lab], None),
        "oracle": (xt, yt, None),
    }
    steps = steps_for(len(xs), len(xt), a.batch_size)
    monitor = (t(src.x_val), t(src.y_val))
    x_tt, y_tt = t(tgt.x_test), t(tgt.y_test)
    results: dict[str, dict] = {}
    for i, variant in enumerate(a.variants):
        seed_everything(cfg.seed + 100 + i)
        x_lab, y_lab, x_unl = sets[variant]
        clf = classifier_from_vae(vae, vae.spec, src.n_classes, a.head_hidden,
                                  domain_hidden=a.dann.domain_hidden if variant == "dann" else None,
                                  pretrained=variant != "scratch", backbone=a.backbone).to(device)
        fp = fingerprint(cfg.seed, variant, a.model_dump(), data.hashes, vae_hash)
        with epoch_bar(f"adapt {variant}", a.epochs, show="cls_loss") as advance:
            res = train_classifier(clf, x_lab, y_lab, x_unlab_target=x_unl, epochs=a.epochs, steps_per_epoch=steps,
                                   batch_size=a.batch_size, lr=a.lr, weight_decay=a.weight_decay,
                                   dann_gamma=a.dann.gamma, dann_lambda_max=a.dann.lambda_max, monitor=monitor,
                                   ckpt_path=paths.checkpoint(f"adapt_{variant}"), fingerprint=fp, on_epoch=advance)
        pred = predict(clf, x_tt).cpu().numpy()
        cm = confusion(tgt.y_test, pred, src.n_classes)
        results[variant] = {
            "target_test_acc": float((pred == tgt.y_test).mean()),
            "source_test_acc": accuracy(clf, t(src.x_test), t(src.y_test)),
            "n_labelled": int(len(x_lab)),
            "labelled_domain": "source" if variant in ("source_only", "dann") else "target",
            "train_seconds": res.seconds,
            "confusion": cm.tolist(),
        }
        save_torch(paths.adapt_model(variant), {k: v.cpu() for k, v in res.state.items()})
        write_text(paths.plots / "adapt" / f"confusion_{variant}.csv",
                   "actual,predicted\n" + "".join(f"{a_},{p_}\n" for a_, p_ in zip(tgt.y_test, pred)))
        cols = list(res.history[0]) if res.history else ["epoch"]
        write_text(paths.plots / "adapt" / f"curve_{variant}.csv", ",".join(cols) + "\n" + "".join(
            ",".join(f"{r[c]:.5g}" for c in cols) + "\n" for r in res.history))
        log.info("adapt %-11s target test acc %.3f (source test %.3f, %d labels, %.1fs)", variant,
                 results[variant]["target_test_acc"], results[variant]["source_test_acc"], len(x_lab), res.seconds)
    out = {"variants": results, "steps_per_epoch": steps, "epochs": a.epochs,
           "selection": "fixed schedule: every variant is scored after its last step; no target labels select anything"}
    write_json(paths.stage_metrics("adapt"), out)
    return out
