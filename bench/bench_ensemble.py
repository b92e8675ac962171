"""What averaging two finished predictors' softmax outputs buys: each predictor as the stage scores it, then
two-member ensembles (the mean class probability), between two seeds of one variant and between two variants
of the same seed. Nothing is trained; an ensemble costs both members' training time, so these are scores at
twice a member's budget, the most a budget-matched ensemble of shorter members could hope for.

Fixed before any run was scored: members are equal-weight, scored with the statistics the stage scores them
with; flagged runs are scored as they are (the table says which). It reads target test labels to score: a
measurement, which selects nothing in any run.

    .venv/bin/python bench/bench_ensemble.py RUN_DIR [RUN_DIR ...]

RUN_DIRs are `bench/cpu_runs.sh` jobs on the same prepared data (the same target test set), as for
bench/bench_precise_bn.py.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_precise_bn import finished  # noqa: E402
from vaeflow.runtime import set_threads  # noqa: E402
from vaeflow.tasks.adapt import _scorer  # noqa: E402
from vaeflow.training.augment import NO_AUGMENT  # noqa: E402
from vaeflow.training.tta import predict_proba  # noqa: E402


def collect(runs: list[Path]) -> tuple[dict[tuple[str, int], torch.Tensor], torch.Tensor]:
    """(variant, repeat) -> class probabilities on the target test set, and its labels."""
    probs, labels = {}, None
    for run in runs:
        _, ctx, finished_runs = finished(run)
        x_test, y_test = ctx["target_test"]
        if labels is not None and not torch.equal(labels, y_test):
            raise SystemExit(f"{run}: another target test set than the runs before it")
        labels = y_test
        for variant, r, spec, algo, kept in finished_runs:
            net = _scorer(spec, ctx["sets"]["unlabelled"])(algo, kept)
            probs[(variant, r)] = predict_proba(net, x_test, NO_AUGMENT, views=0)  # each image's own softmax
    return probs, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    set_threads(1)
    probs, y = collect(args.runs)
    acc = lambda p: 100 * float((p.argmax(1) == y).float().mean())  # noqa: E731
    print("| members | member accuracies | ensemble | ensemble − better member |")
    print("|---|---|---|---|")
    for (a, b) in itertools.combinations(sorted(probs), 2):
        if a[0] != b[0] and a[1] != b[1]:
            continue  # two seeds of one variant, or two variants of one seed
        ens, ma, mb = acc((probs[a] + probs[b]) / 2), acc(probs[a]), acc(probs[b])
        print(f"| {a[0]} {a[1]} + {b[0]} {b[1]} | {ma:.2f}, {mb:.2f} | {ens:.2f} | {ens - max(ma, mb):+.2f} |")
    singles = np.array([acc(p) for p in probs.values()])
    print(f"\n{len(probs)} predictors, single accuracies {singles.min():.2f}-{singles.max():.2f}")


if __name__ == "__main__":
    main()
