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
  mean_teacher (opt-in) self-ensembling: source labels + consistency with an EMA teacher on the unlabelled
               target training images (French et al., 2018); the teacher is scored
  mean_teacher_few  (opt-in) the same engine on the labels_per_class target labels + the target training images

Each method is an Algorithm (vaeflow/training/algorithms.py); RECIPES says which data each variant gets.
Model selection: vaeflow/training/model_selection.py (LastStep).
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
from vaeflow.training.adapt_trainer import accuracy, confusion, fit, predict, steps_for
from vaeflow.training.algorithms import build_algorithm
from vaeflow.training.checkpoint import fingerprint
from vaeflow.training.model_selection import LastStep
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


# variant -> (algorithm, labelled set, unlabelled set). Labelled sets: "source" (source training labels),
# "few" (labels_per_class target labels), "target" (all target training labels, the oracle); the
# unlabelled set is the target's training images. One engine per algorithm serves every setting.
RECIPES: dict[str, tuple[str, str, str | None]] = {
    "source_only": ("erm", "source", None),
    "dann": ("dann", "source", "target"),
    "self_training": ("dann", "source", "target"),  # continues each dann run (self_training.py)
    "mean_teacher": ("mean_teacher", "source", "target"),
    "finetune": ("erm", "few", None),
    "scratch": ("erm", "few", None),
    "oracle": ("erm", "target", None),
    "mean_teacher_few": ("mean_teacher", "few", "target"),
}
UNSUPERVISED = tuple(v for v, (_, lab, _) in RECIPES.items() if lab == "source")  # read no target label
RULE = LastStep()  # vaeflow/training/model_selection.py


def _train(variant: str, r: int, cfg: Config, paths: Paths, vae, data, sets: dict, fp: str, steps: int,
           monitor, dann_states: list) -> tuple[object, object, list | None]:
    """One seed of one classifier-training variant: (the network to score, result, self-training rounds)."""
    a = cfg.adapt
    algo_name, lab_set, unl_set = RECIPES[variant]
    x_lab, y_lab = sets[lab_set]
    x_unl = sets["unlabelled"] if unl_set else None
    clf = classifier_from_vae(vae, vae.spec, data.source.n_classes, a.head_hidden,
                              domain_hidden=a.dann.domain_hidden if algo_name == "dann" else None,
                              pretrained=variant != "scratch", backbone=a.backbone,
                              standardize=a.standardize, feature_bn=a.feature_bn).to(x_lab.device)
    tag = f"adapt {variant}" + (f" {r + 1}/{a.repeats}" if a.repeats > 1 else "")
    if variant == "self_training":
        clf.load_state_dict(dann_states[r])
        st = a.self_training
        with epoch_bar(tag, st.rounds * st.epochs, show="cls_loss") as advance:
            res, rounds = self_train(
                clf, x_lab, y_lab, x_unl, rounds=st.rounds, threshold=st.threshold, epochs=st.epochs,
                steps_per_epoch=steps, batch_size=a.batch_size, lr=st.lr, weight_decay=a.weight_decay,
                dann_gamma=a.dann.gamma, dann_lambda_max=a.dann.lambda_max,
                ckpt_path=lambda k: paths.checkpoint(f"adapt_{variant}_{r}_round{k}"),
                fingerprint=lambda k: fingerprint(fp, k), on_epoch=advance,
                augment=a.augment, label_smoothing=a.label_smoothing)
        return clf, res, rounds  # self_train trains clf in place: its weights are the last round's
    algo = build_algorithm(algo_name, clf, a).to(x_lab.device)
    with epoch_bar(tag, a.epochs, show="cls_loss") as advance:
        res = fit(algo, x_lab, y_lab, x_unl, epochs=a.epochs, steps_per_epoch=steps, batch_size=a.batch_size,
                  monitor=monitor, ckpt_path=paths.checkpoint(f"adapt_{variant}_{r}"), fingerprint=fp,
                  on_epoch=advance)
    return algo.predictor(), res, None


def run(cfg: Config, paths: Paths) -> dict:
    device = select_device(cfg.device)
    data = load_prepared(paths)
    vae = load_vae(paths, device)
    vae_hash = file_sha256(paths.vae)
    a = cfg.adapt
    src, tgt = data.source, data.target
    t = lambda x: to_tensor(x, device)  # noqa: E731
    xs, ys, xt = t(src.x_train), t(src.y_train), t(tgt.x_train)
    lab = few_labels(tgt.y_train, a.labels_per_class, cfg.seed)
    # Target training labels are read only where a variant's recipe asks for them ("few", "target"): the
    # unsupervised variants never touch them (tests/test_adapt_protocol.py permutes them to check).
    sets = {"source": (xs, ys), "unlabelled": xt,
            "few": (xt[lab], t(tgt.y_train[lab])), "target": (xt, t(tgt.y_train))}
    steps = steps_for(len(xs), len(xt), a.batch_size)
    monitor = (t(src.x_val), t(src.y_val))
    x_tt = t(tgt.x_test)
    results: dict[str, dict] = {}
    dann_states: list[dict] = []  # each dann run's final weights: where its self_training run starts
    for i, variant in enumerate(a.variants):
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
            fp = fingerprint(cfg.seed, variant, r, a.model_dump(), data.hashes, vae_hash, "algorithm-v2")
            clf, res, rounds = _train(variant, r, cfg, paths, vae, data, sets, fp, steps, monitor, dann_states)
            if variant == "dann":
                dann_states.append(res.state)
            pred = predict(clf, x_tt).cpu().numpy()
            runs.append({"pred": pred, "acc": float((pred == tgt.y_test).mean()), "res": res, "seconds": res.seconds,
                         "source_test_acc": accuracy(clf, t(src.x_test), t(src.y_test)), "rounds": rounds})
        results[variant] = _summary(variant, runs, sets, tgt, src.n_classes)
        _write_variant(paths, variant, runs[0], tgt)
        log.info("adapt %-11s target test acc %.3f ± %.3f over %d seeds (source test %.3f, %d labels, %.1fs)",
                 variant, results[variant]["target_test_acc"], results[variant]["target_test_acc_std"], len(runs),
                 results[variant]["source_test_acc"], results[variant]["n_labelled"],
                 results[variant]["train_seconds"])
    out = {"variants": results, "steps_per_epoch": steps, "epochs": a.epochs, "repeats": a.repeats,
           "selection_rule": RULE.name, "selection": RULE.description}
    write_json(paths.stage_metrics("adapt"), out)
    return out


def _summary(variant: str, runs: list[dict], sets: dict, tgt, n_classes: int) -> dict:
    accs = np.array([u["acc"] for u in runs])
    lab_set = RECIPES[variant][1] if variant in RECIPES else "few"
    out = {
        "target_test_acc": float(accs.mean()),
        "target_test_acc_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
        "target_test_acc_runs": accs.tolist(),
        "source_test_acc": float(np.mean([u["source_test_acc"] for u in runs])),
        "n_labelled": int(len(sets[lab_set][1])),
        "labelled_domain": "source" if lab_set == "source" else "target",
        "train_seconds": float(sum(u["seconds"] for u in runs)),
        "confusion": confusion(tgt.y_test, runs[0]["pred"], n_classes).tolist(),
    }
    if variant == "self_training":  # pseudo-labels per round, per repeat (counts only: no label is read)
        out["rounds"] = [u["rounds"] for u in runs]
    return out


def _write_variant(paths: Paths, variant: str, first: dict, tgt) -> None:
    """The saved model and the plotted curves are the first repeat's (seed = params seed)."""
    if first["res"] is not None:
        save_torch(paths.adapt_model(variant), {k: v.cpu() for k, v in first["res"].state.items()})
    write_text(paths.plots / "adapt" / f"confusion_{variant}.csv",
               "actual,predicted\n" + "".join(f"{a_},{p_}\n" for a_, p_ in zip(tgt.y_test, first["pred"])))
    hist = first["res"].history if first["res"] is not None else []
    cols = list(hist[0]) if hist else ["epoch"]
    write_text(paths.plots / "adapt" / f"curve_{variant}.csv", ",".join(cols) + "\n" + "".join(
        ",".join(f"{row.get(c, float('nan')):.5g}" for c in cols) + "\n" for row in hist))
