"""Score finished adaptation runs twice: with the BatchNorm statistics their predictor ended with, and with
statistics re-estimated on the unlabelled target training images (AdaBN / "precise BN"). Nothing is trained.

Why: a mean teacher's teacher (and SHOT's, which copies the student's) scores with running statistics, a
moving average (momentum 0.1) of the last few dozen target batches while its weights were still moving. DANN
and AdaBN are scored with statistics over the whole unlabelled target training set. This measures, on the
same weights, what that difference is worth. It reads target test labels (to score): a diagnosis, which
selects nothing in any run.

    .venv/bin/python bench/bench_precise_bn.py runs/cpu/runs/RUN_DIR [...]

Each RUN_DIR is one `bench/cpu_runs.sh` job (its command.txt: a preset and --set overrides; its prepared
data, models/vae.pt and per-repeat checkpoints runs/checkpoints/adapt_<variant>_<r>.pt).
"""
from __future__ import annotations

import copy
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vaeflow.config import load_config  # noqa: E402
from vaeflow.io import load_torch  # noqa: E402
from vaeflow.models.batchnorm import reestimate_bn  # noqa: E402
from vaeflow.paths import Paths  # noqa: E402
from vaeflow.runtime import set_threads  # noqa: E402
from vaeflow.tasks.adapt import _network, _predict, context  # noqa: E402
from vaeflow.training.algorithms import resolve  # noqa: E402
from vaeflow.variants import BY_NAME  # noqa: E402


def run_config(run: Path):
    words = shlex.split((run / "command.txt").read_text())
    preset, sets = words[0], [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    return load_config(REPO / preset, sets)


def finished(run: Path):
    """(cfg, ctx) of a run, then (variant, repeat, spec, algorithm, kept weights) for each of its finished
    checkpoints, loaded as the stage built them (bench/bench_tta.py reads runs the same way)."""
    cfg = run_config(run)
    paths = Paths(run)
    ctx = context(cfg, paths)

    def runs():
        for variant in cfg.adapt.variants:
            spec = BY_NAME[variant]
            for r in range(cfg.adapt.repeats):
                ckpt = paths.checkpoint(f"adapt_{variant}_{r}")
                if not ckpt.exists():
                    continue
                c = load_torch(ckpt)
                clf = _network(spec, cfg, ctx["vae"], ctx["n_classes"], ctx["device"], ctx["calibration"])
                joint = {"y_unl": ctx["sets"]["target"][1]} if spec.labelled == "joint" else {}
                algo = resolve(spec.algorithm).from_config(clf, cfg.adapt, vae=ctx["vae"], **joint)
                algo.load_state_dict(c["model"])
                yield variant, r, spec, algo, c["state"].get("kept")
    return cfg, ctx, runs()


def score_both(run: Path) -> list[tuple[str, int, float, float]]:
    _, ctx, runs = finished(run)
    x_unl, (x_test, y_test) = ctx["sets"]["unlabelled"], ctx["target_test"]
    acc = lambda net: float((_predict(net, x_test) == y_test).float().mean())  # noqa: E731
    rows = []
    for variant, r, _, algo, kept in runs:
        net = copy.deepcopy(algo.predictor())
        if kept is not None:
            net.load_state_dict(kept)
        own = acc(net)
        reestimate_bn(net, x_unl)
        rows.append((variant, r, own, acc(net)))
    return rows


def main(runs: list[str]) -> None:
    set_threads(1)
    print("| run | variant | own statistics | target statistics (re-estimated) | Δ per seed | mean Δ ± std |")
    print("|---|---|---|---|---|---|")
    for run in map(Path, runs):
        rows = score_both(run)
        for variant in dict.fromkeys(v for v, *_ in rows):
            own = np.array([o for v, _, o, _ in rows if v == variant]) * 100
            new = np.array([n for v, _, _, n in rows if v == variant]) * 100
            d = new - own
            sd = lambda a: a.std(ddof=1) if len(a) > 1 else 0.0  # noqa: E731
            print(f"| {run.name} | {variant} | {own.mean():.2f} ± {sd(own):.2f} | {new.mean():.2f} ± {sd(new):.2f} "
                  f"| {', '.join(f'{x:+.2f}' for x in d)} | {d.mean():+.2f} ± {sd(d):.2f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
