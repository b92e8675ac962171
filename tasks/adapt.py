"""Stage `adapt`: transfer from the pretrained VAE encoder to target-domain classification.

Inputs: data/prepared, models/vae.pt. Outputs: models/adapt/<variant>.pt, metrics/adapt.json,
metrics/plots/adapt/{confusion,curve}_<variant>.csv.

Variants (all scored on the target test set, selected by nothing: a fixed schedule, last step):
  source_only  warm-started encoder + classifier on source labels
  dann         the same + domain classifier behind a gradient-reversal layer, target train unlabelled
  finetune     warm-started encoder on `labels_per_class` labelled target images per class
  scratch      the same network and labels, random initialisation
  oracle       warm-started, all target training labels (an upper bound)
  latent_spreading  (opt-in) no classifier: label spreading (Zhou et al., 2004) on a kNN graph of the VAE's
               posterior means of the target training images, with the same labelled images as finetune
  self_training  (opt-in) each dann run, continued for adapt.self_training.rounds rounds on source labels +
               the target images it labels with confidence ≥ threshold (no target label is ever read)
"""
from __future__ import annotations

import logging
import time

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
from vaeflow.training.self_training import self_train

log = logging.getLogger("vaeflow")


def few_labels(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of `per_class` images of every class, drawn with a fixed seed (fewer if a class is short)."""
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]))


@torch.inference_mode()
def _latent(vae, x: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    vae.eval()
    return torch.cat([vae.encode(x[i:i + batch_size])[0] for i in range(0, len(x), batch_size)]).cpu().numpy()


def latent_spreading(vae, data, lab: np.ndarray, device) -> tuple[np.ndarray, float, float]:
    """Target-test predictions, source-test accuracy and seconds of label spreading in the VAE latent space.

    The graph holds every target training image (labelled: `lab`; the rest unlabelled, -1); test images
    are classified by the fitted model's kNN vote over that graph's labels."""
    from sklearn.semi_supervised import LabelSpreading

    t0 = time.perf_counter()
    src, tgt = data.source, data.target
    z = _latent(vae, to_tensor(tgt.x_train, device))
    y = np.full(len(z), -1)
    y[lab] = tgt.y_train[lab]
    model = LabelSpreading(kernel="knn", n_neighbors=10, alpha=0.2, max_iter=100).fit(z, y)
    pred = model.predict(_latent(vae, to_tensor(tgt.x_test, device)))
    src_acc = float((model.predict(_latent(vae, to_tensor(src.x_test, device))) == src.y_test).mean())
    return pred, src_acc, time.perf_counter() - t0


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
        "self_training": (xs, ys, xt),
        "finetune": (xt[lab], yt[lab], None),
        "scratch": (xt[lab], yt[lab], None),
        "oracle": (xt, yt, None),
    }
    steps = steps_for(len(xs), len(xt), a.batch_size)
    monitor = (t(src.x_val), t(src.y_val))
    x_tt, y_tt = t(tgt.x_test), t(tgt.y_test)
    results: dict[str, dict] = {}
    dann_states: list[dict] = []  # each dann run's final weights: where its self_training run starts
    for i, variant in enumerate(a.variants):
        x_lab, y_lab, x_unl = sets.get(variant, sets["finetune"])
        runs = []
        # Every variant is trained `a.repeats` times from different seeds: on a few hundred images one
        # run's accuracy moves by several points with the seed, more than some gaps between variants.
        for r in range(1 if variant == "latent_spreading" else a.repeats):  # spreading is deterministic
            seed_everything(cfg.seed + 100 * r + i)
            if variant == "latent_spreading":
                pred, src_acc, secs = latent_spreading(vae, data, lab, device)
                runs.append({"pred": pred, "acc": float((pred == tgt.y_test).mean()), "res": None,
                             "seconds": secs, "source_test_acc": src_acc})
                continue
            adversarial = variant in ("dann", "self_training")
            clf = classifier_from_vae(vae, vae.spec, src.n_classes, a.head_hidden,
                                      domain_hidden=a.dann.domain_hidden if adversarial else None,
                                      pretrained=variant != "scratch", backbone=a.backbone).to(device)
            fp = fingerprint(cfg.seed, variant, r, a.model_dump(), data.hashes, vae_hash)
            tag = f"adapt {variant}" + (f" {r + 1}/{a.repeats}" if a.repeats > 1 else "")
            rounds = None
            if variant == "self_training":
                clf.load_state_dict(dann_states[r])
                st = a.self_training
                with epoch_bar(tag, st.rounds * st.epochs, show="cls_loss") as advance:
                    res, rounds = self_train(
                        clf, x_lab, y_lab, x_unl, rounds=st.rounds, threshold=st.threshold, epochs=st.epochs,
                        steps_per_epoch=steps, batch_size=a.batch_size, lr=st.lr, weight_decay=a.weight_decay,
                        dann_gamma=a.dann.gamma, dann_lambda_max=a.dann.lambda_max,
                        ckpt_path=lambda k: paths.checkpoint(f"adapt_{variant}_{r}_round{k}"),
                        fingerprint=lambda k: fingerprint(fp, k), on_epoch=advance)
            else:
                with epoch_bar(tag, a.epochs, show="cls_loss") as advance:
                    res = train_classifier(clf, x_lab, y_lab, x_unlab_target=x_unl, epochs=a.epochs,
                                           steps_per_epoch=steps, batch_size=a.batch_size, lr=a.lr,
                                           weight_decay=a.weight_decay, dann_gamma=a.dann.gamma,
                                           dann_lambda_max=a.dann.lambda_max, monitor=monitor,
                                           ckpt_path=paths.checkpoint(f"adapt_{variant}_{r}"), fingerprint=fp,
                                           on_epoch=advance)
            if variant == "dann":
                dann_states.append(res.state)
            pred = predict(clf, x_tt).cpu().numpy()
            runs.append({"pred": pred, "acc": float((pred == tgt.y_test).mean()), "res": res, "seconds": res.seconds,
                         "source_test_acc": accuracy(clf, t(src.x_test), t(src.y_test)), "rounds": rounds})
        accs = np.array([u["acc"] for u in runs])
        first = runs[0]
        results[variant] = {
            "target_test_acc": float(accs.mean()),
            "target_test_acc_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
            "target_test_acc_runs": accs.tolist(),
            "source_test_acc": float(np.mean([u["source_test_acc"] for u in runs])),
            "n_labelled": int(len(x_lab)),
            "labelled_domain": "source" if variant in ("source_only", "dann", "self_training") else "target",
            "train_seconds": float(sum(u["seconds"] for u in runs)),
            "confusion": confusion(tgt.y_test, first["pred"], src.n_classes).tolist(),
        }
        if variant == "self_training":  # pseudo-labels per round, per repeat (counts only: no label is read)
            results[variant]["rounds"] = [u["rounds"] for u in runs]
        # The saved model and the plotted curves are the first repeat's (seed = params seed).
        if first["res"] is not None:
            save_torch(paths.adapt_model(variant), {k: v.cpu() for k, v in first["res"].state.items()})
        write_text(paths.plots / "adapt" / f"confusion_{variant}.csv",
                   "actual,predicted\n" + "".join(f"{a_},{p_}\n" for a_, p_ in zip(tgt.y_test, first["pred"])))
        hist = first["res"].history if first["res"] is not None else []
        cols = list(hist[0]) if hist else ["epoch"]
        write_text(paths.plots / "adapt" / f"curve_{variant}.csv", ",".join(cols) + "\n" + "".join(
            ",".join(f"{row[c]:.5g}" for c in cols) + "\n" for row in hist))
        log.info("adapt %-11s target test acc %.3f ± %.3f over %d seeds (source test %.3f, %d labels, %.1fs)",
                 variant, accs.mean(), results[variant]["target_test_acc_std"], len(accs),
                 results[variant]["source_test_acc"], len(x_lab), results[variant]["train_seconds"])
    out = {"variants": results, "steps_per_epoch": steps, "epochs": a.epochs,
           "repeats": a.repeats,
           "selection": ("fixed schedule: every variant is scored after its last step; no target labels select "
                         "anything. Accuracies are means over adapt.repeats seeds")}
    write_json(paths.stage_metrics("adapt"), out)
    return out
