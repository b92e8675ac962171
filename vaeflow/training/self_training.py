"""Self-training on confident target pseudo-labels, after DANN (the `self_training` adapt variant).

Each round labels the unlabelled target training images with the current classifier, keeps those whose
softmax confidence is at least `threshold`, and trains on source labels + those pseudo-labels, with the
DANN domain loss still on. The target's true labels never enter: this module is only ever handed target
images. Rounds, threshold and epochs are a fixed schedule, never chosen on target labels.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch

from vaeflow.models.classifier import Classifier
from vaeflow.training.adapt_trainer import AdaptResult, train_classifier

log = logging.getLogger("vaeflow")


@torch.inference_mode()
def pseudo_labels(clf: Classifier, x: torch.Tensor, threshold: float,
                  batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class, confident mask) of `clf` on `x`: confident = max softmax probability ≥ threshold."""
    clf.eval()
    probs = torch.cat([torch.softmax(clf(x[i:i + batch_size]), dim=1) for i in range(0, len(x), batch_size)])
    conf, pred = probs.max(dim=1)
    return pred, conf >= threshold


def self_train(clf: Classifier, x_src: torch.Tensor, y_src: torch.Tensor, x_tgt: torch.Tensor, *,
               rounds: int, threshold: float, epochs: int, steps_per_epoch: int, batch_size: int, lr: float,
               weight_decay: float, dann_gamma: float, dann_lambda_max: float,
               ckpt_path: Callable[[int], Path], fingerprint: Callable[[int], str],
               on_epoch: Callable[[dict], None] | None = None, **algo_kw) -> tuple[AdaptResult, list[dict]]:
    """`rounds` rounds of pseudo-labelling and training, from `clf` as it is (a trained DANN).

    Each round is its own resumable training run (`ckpt_path(k)`, `fingerprint(k)`): a killed run resumes
    inside the round it was in, and finished rounds are restored from their checkpoints, not retrained.
    Returns the last round's result and, per round, how many target images got a pseudo-label.
    `algo_kw` (augment, label_smoothing) go to each round's DANN."""
    res, history = None, []
    for k in range(rounds):
        pred, keep = pseudo_labels(clf, x_tgt, threshold)
        n = int(keep.sum())
        counts = torch.bincount(pred[keep], minlength=int(y_src.max()) + 1).tolist()
        history.append({"round": k, "pseudo_labelled": n, "fraction": n / len(x_tgt), "per_class": counts})
        log.info("self-training round %d/%d: %d of %d target images pseudo-labelled (confidence ≥ %.2f)",
                 k + 1, rounds, n, len(x_tgt), threshold)
        x_lab = torch.cat([x_src, x_tgt[keep]])
        y_lab = torch.cat([y_src, pred[keep]])
        res = train_classifier(clf, x_lab, y_lab, x_unlab_target=x_tgt, epochs=epochs,
                               steps_per_epoch=steps_per_epoch, batch_size=batch_size, lr=lr,
                               weight_decay=weight_decay, dann_gamma=dann_gamma, dann_lambda_max=dann_lambda_max,
                               ckpt_path=ckpt_path(k), fingerprint=fingerprint(k), on_epoch=on_epoch, **algo_kw)
    assert res is not None
    return res, history

