"""Per-step (so per-epoch) time of mean_teacher against DANN at the same batch size, paired in one run.

    python bench/bench_adapt_speed.py [--size 28] [--channels 1] [--steps 40] [--repeats 7]

The LeNet classifier of the digit presets, with the presets' augmentation, standardisation and feature BN.
Blocks of `steps` optimiser steps alternate between the two algorithms; the ratio of the medians is the
figure (the machine is noisy, so only ratios within one run are compared). Goal (issue 12): ≤ 2× DANN.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from common import median, record

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from vaeflow.config import load_config  # noqa: E402
from vaeflow.models.classifier import Classifier  # noqa: E402
from vaeflow.models.lenet import LeNetTrunk  # noqa: E402
from vaeflow.training.algorithms import build_algorithm  # noqa: E402


def block(algo, x, y, xu, steps: int, batch: int) -> float:
    t0 = time.perf_counter()
    for s in range(steps):
        i = torch.randint(len(x), (batch,))
        j = torch.randint(len(xu), (batch,))
        algo.update(x[i], y[i], xu[j], s / steps)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = load_config("../configs/mnist_usps.yaml").adapt
    torch.manual_seed(0)
    x = torch.rand(2048, a.channels, a.size, a.size)
    y = torch.randint(0, 10, (2048,))
    xu = torch.rand(2048, a.channels, a.size, a.size)

    def make(name):
        trunk = LeNetTrunk(a.channels, a.size)
        clf = Classifier(trunk, trunk.feature_dim, 10, cfg.head_hidden, cfg.dann.domain_hidden if name == "dann" else None,
                         standardize=cfg.standardize, feature_bn=cfg.feature_bn)
        algo = build_algorithm(name, clf, cfg)
        algo.train()
        return algo

    algos = {"dann": make("dann"), "mean_teacher": make("mean_teacher")}
    times: dict[str, list[float]] = {k: [] for k in algos}
    for name, algo in algos.items():  # warm-up
        block(algo, x, y, xu, 5, cfg.batch_size)
    for _ in range(a.repeats):
        for name, algo in algos.items():
            times[name].append(block(algo, x, y, xu, a.steps, cfg.batch_size))
    d, m = median(times["dann"]), median(times["mean_teacher"])
    body = (f"LeNet classifier, {a.channels}×{a.size}×{a.size}, batch {cfg.batch_size}, {a.threads} thread(s), "
            f"{a.repeats} interleaved blocks of {a.steps} steps.\n\n"
            f"| algorithm | median ms/step | ratio to DANN |\n|---|---|---|\n"
            f"| dann | {1e3 * d:.1f} | 1.00 |\n| mean_teacher | {1e3 * m:.1f} | {m / d:.2f} |\n\n"
            f"Goal ≤ 2.00×: {'met' if m / d <= 2 else 'missed'}. Mean teacher runs three passes per step (student on "
            "the labelled batch, student and teacher on two views of the unlabelled batch, the teacher without a "
            "backward pass); DANN runs two with backward passes plus the domain head.")
    print(body)
    if not a.no_record:
        record("Mean teacher against DANN: time per step (issue 12)", body,
               "cd bench && python bench_adapt_speed.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
