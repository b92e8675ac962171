"""Ray Tune on 2 CPUs: the same 4 trials run concurrently (2 at once, 1 CPU and 1 torch thread each) and
sequentially (1 at a time, with `--seq-cpus` CPUs and as many torch threads), in one process on one
local Ray (num_cpus=2), alternating sequential and concurrent `--repeats` times.

    nice -n 10 .venv/bin/python bench/bench_tune.py [--epochs 40] [--repeats 2] [--seq-cpus 1]

ASHA is switched off (grace_period = max_epochs), so both modes do exactly the same work: 4 fixed
learning rates x `--epochs` epochs of the default VAE on the digits. Reported: wall time of each
experiment (prepare excluded, Ray already running, trial processes started inside it), the median
speedup sequential / concurrent, and the trials' own summed training time, which shows how much each
trial slowed down by sharing the machine. With --seq-cpus 1 the ideal speedup is 2.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LRS = [0.003, 0.002, 0.001, 0.0005]


def _experiment(root: Path, name: str, epochs: int, concurrent: bool, seq_cpus: int, sets: list[str]) -> dict:
    from tasks.tune import tune
    from vaeflow.config import load_config
    from vaeflow.paths import Paths

    mode = (["tune.max_concurrent_trials=2", "tune.cpus_per_trial=1"] if concurrent
            else ["tune.max_concurrent_trials=1", f"tune.cpus_per_trial={seq_cpus}"])
    cfg = load_config(REPO / "params.yaml", [
        "device=cpu", "pretrain.patience=1000", f"tune.max_epochs={epochs}", f"tune.grace_period={epochs}",
        "tune.num_samples=1", "tune.gpus_per_trial=0", f"tune.experiment_name={name}",
        "tune.search_space={lr: {grid: %s}}" % json.dumps(LRS), *mode, *sets])
    load_before = os.getloadavg()[0]  # other processes' demand on the 2 cores changes the answer
    t0 = time.perf_counter()
    summary = tune(cfg, Paths(root))
    wall = time.perf_counter() - t0
    import pandas as pd

    table = pd.read_csv(root / "metrics" / "tune_trials.csv")
    assert len(table) == len(LRS) and set(table["epochs"]) == {epochs}, table
    return {"wall_s": wall, "trial_seconds_sum": float(table["seconds"].sum()), "best": summary["best_val_nelbo"],
            "load_avg_1m_before": load_before, "load_avg_1m_after": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2, help="alternate sequential/concurrent this many times")
    ap.add_argument("--seq-cpus", type=int, default=1, choices=(1, 2),
                    help="CPUs (and torch threads) of a trial in the sequential mode")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="a params override for both modes")
    args = ap.parse_args()
    import ray

    from tasks import prepare
    from vaeflow.config import load_config
    from vaeflow.paths import Paths
    from vaeflow.tuning.cluster import start_local

    root = Path(tempfile.mkdtemp(prefix="bench_tune_"))
    prepare.run(load_config(REPO / "params.yaml", ["device=cpu"]), Paths(root))
    start_local(num_cpus=2, num_gpus=0)
    runs: dict[str, list[dict]] = {"sequential": [], "concurrent": []}
    try:
        for r in range(args.repeats):
            for mode in ("sequential", "concurrent"):
                res = _experiment(root, f"{mode}_{r}", args.epochs, mode == "concurrent", args.seq_cpus,
                                  args.sets)
                runs[mode].append(res)
                print(f"{mode:>10} run {r}: {res['wall_s']:.1f} s wall, trials' own training "
                      f"{res['trial_seconds_sum']:.1f} s, load {res['load_avg_1m_before']:.1f} -> "
                      f"{res['load_avg_1m_after']:.1f}", flush=True)
    finally:
        ray.shutdown()
    seq = statistics.median(x["wall_s"] for x in runs["sequential"])
    conc = statistics.median(x["wall_s"] for x in runs["concurrent"])
    out = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
           "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "load_avg_1m_at_end": os.getloadavg()[0], "epochs": args.epochs, "trials": len(LRS),
           "seq_cpus": args.seq_cpus, "overrides": args.sets,
           "sequential_wall_s": seq, "concurrent_wall_s": conc, "speedup": seq / conc, "runs": runs}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
