"""Adaptation and few-label accuracy at an equal, reduced CPU budget: every variant of a preset gets the same
epochs (steps) and batch size, 3 seeds each, through the real stages (`vaeflow stage prepare|pretrain|adapt`).

    cd bench && python bench_adapt.py --subset 3000 --epochs 4 --pretrain-epochs 2 [--presets mnist_usps usps_mnist mnist_100labels]

Writes bench/out/adapt_<preset>.json and the "Adaptation at equal CPU budget" section of RESULTS.md. The
budget is far below the presets' schedules: the figures show the direction at equal budget, not the
full-schedule accuracy (that needs the lent GPU, bench/gpu_runs.sh).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import record

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"mnist_usps": "[source_only, dann, self_training, mean_teacher]",
            "usps_mnist": "[source_only, dann, self_training, mean_teacher]",
            "mnist_100labels": "[finetune, latent_spreading, mean_teacher_few]"}


def run_preset(preset: str, epochs: int, pretrain_epochs: int, work: Path, subset: int | None) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    sets = ["threads=1", f"data.subset={subset if subset else 'null'}", f"pretrain.epochs={pretrain_epochs}", "eval.iwae_samples=5", "eval.iwae_chunk=5",
            f"adapt.epochs={epochs}", "adapt.self_training.rounds=1", "adapt.self_training.epochs=1",
            f"adapt.variants={VARIANTS[preset]}", f"data.root={REPO.parent / 'shared' / 'data'}"]
    args = [a for s in sets for a in ("--set", s)]
    t0 = time.time()
    for stage in ("prepare", "pretrain", "adapt"):
        cmd = [sys.executable, "-m", "vaeflow", "stage", stage, "--params", str(REPO / "configs" / f"{preset}.yaml"),
               *args]
        with open(work / f"{stage}.log", "w") as log:
            subprocess.run(cmd, cwd=work, check=True, stdout=log, stderr=subprocess.STDOUT,
                           env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "COLUMNS": "200"})
    m = json.loads((work / "metrics" / "adapt.json").read_text())
    m["wall_seconds"] = time.time() - t0
    m["overrides"] = sets
    return m


def table(results: dict[str, dict]) -> str:
    lines = ["| preset | variant | target test acc (%) | per seed | source test acc (%) | labels | train s (3 seeds) |",
             "|---|---|---|---|---|---|---|"]
    for preset, m in results.items():
        for v, r in m["variants"].items():
            runs = ", ".join(f"{100 * a:.2f}" for a in r["target_test_acc_runs"])
            lines.append(f"| {preset} | {v} | {100 * r['target_test_acc']:.2f} ± {100 * r['target_test_acc_std']:.2f} "
                         f"| {runs} | {100 * r['source_test_acc']:.2f} | {r['n_labelled']} | {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", nargs="+", default=list(VARIANTS))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--pretrain-epochs", type=int, default=2)
    ap.add_argument("--subset", type=int, default=None, help="cap on training images per domain")
    ap.add_argument("--work", type=Path, default=Path("/tmp/vaeflow-bench-adapt"))
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--from-json", action="store_true", help="record bench/out/adapt_<preset>.json, no training")
    a = ap.parse_args()
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    results = {}
    for preset in a.presets:
        if a.from_json:  # re-record what an earlier run of this script wrote, without training again
            results[preset] = json.loads((out / f"adapt_{preset}.json").read_text())
            continue
        results[preset] = run_preset(preset, a.epochs, a.pretrain_epochs, a.work / preset, a.subset)
        (out / f"adapt_{preset}.json").write_text(json.dumps(results[preset], indent=1))
        print(table({preset: results[preset]}), flush=True)
    if not a.no_record:
        body = (f"Training images capped at {a.subset or 'none'} per domain (data.subset; test sets whole). "
                f"Every variant: adapt.epochs={a.epochs} (one epoch = one pass over the larger training set, batch 64), "
                f"3 seeds, VAE pretrained {a.pretrain_epochs} epochs; self_training = each DANN run + 1 round of 1 "
                "epoch (so it has one epoch more than the others). Settings otherwise the presets' (augmentation, "
                "standardisation, feature BN fixed a priori). Selection: last step, no target label.\n\n"
                + table(results))
        record("Adaptation at equal CPU budget (issue 12)", body,
               "cd bench && python bench_adapt.py " + " ".join(x for x in sys.argv[1:] if x != "--from-json"))


if __name__ == "__main__":
    main()
