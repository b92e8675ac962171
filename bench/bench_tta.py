"""Score finished adaptation runs with and without test-time augmentation (vaeflow/training/tta.py): each
predictor as the stage scores it (its kept weights; target BatchNorm statistics where its variant asks), then
the mean softmax over the image and VIEWS random views of `adapt.augment`. Nothing is trained.

Fixed before any run was scored: 8 views, the training warp and noise as configured. It reads target test
labels (to score): a measurement of a scoring rule, which selects nothing in any run.

    .venv/bin/python bench/bench_tta.py [--views 8] runs/cpu/runs/RUN_DIR [...]

Each RUN_DIR is one `bench/cpu_runs.sh` job (as for bench/bench_precise_bn.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_precise_bn import finished  # noqa: E402
from vaeflow.runtime import set_threads  # noqa: E402
from vaeflow.tasks.adapt import _scorer  # noqa: E402
from vaeflow.training.tta import predict_proba  # noqa: E402


def score(run: Path, views: int) -> list[tuple[str, int, float, float]]:
    """(variant, repeat, accuracy as the stage scores it, accuracy with TTA) for every finished run."""
    cfg, ctx, runs = finished(run)
    x_test, y_test = ctx["target_test"]
    acc = lambda net, k: float((predict_proba(net, x_test, cfg.adapt.augment, k).argmax(1)  # noqa: E731
                                == y_test).float().mean())
    rows = []
    for variant, r, spec, algo, kept in runs:
        net = _scorer(spec, ctx["sets"]["unlabelled"])(algo, kept)
        rows.append((variant, r, acc(net, 0), acc(net, views)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    set_threads(1)
    print(f"| run | variant | as scored | TTA, {args.views} views | Δ per seed | mean Δ ± std |")
    print("|---|---|---|---|---|---|")
    sd = lambda a: a.std(ddof=1) if len(a) > 1 else 0.0  # noqa: E731
    for run in args.runs:
        rows = score(run, args.views)
        for variant in dict.fromkeys(v for v, *_ in rows):
            own = np.array([o for v, _, o, _ in rows if v == variant]) * 100
            new = np.array([n for v, _, _, n in rows if v == variant]) * 100
            d = new - own
            print(f"| {run.name} | {variant} | {own.mean():.2f} ± {sd(own):.2f} | {new.mean():.2f} ± {sd(new):.2f} "
                  f"| {', '.join(f'{x:+.2f}' for x in d)} | {d.mean():+.2f} ± {sd(d):.2f} |", flush=True)


if __name__ == "__main__":
    main()
