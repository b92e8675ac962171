"""Ray Tune on 2 CPUs: the same 4 trials run concurrently (2 at once, 1 CPU and 1 torch thread each) and
sequentially (1 at a time, with `--seq-cpus` CPUs and as many torch threads), in one process on one
local Ray (num_cpus=2), alternating sequential and concurrent `--repeats` times.

    nice -n 10 .venv/bin/python bench/bench_tune.py [--epochs 40] [--repeats 2] [--seq-cpus 1]
    nice -n 5 .venv/bin/python bench/bench_tune.py --workload samples --repeats 1   # issue 23's check
    ... --compare-order   # a third mode: concurrent with tune.order=sampled (the order as drawn)

--workload samples (also spelled issue23, as older results name it) is issue 23's check instead: 4
samples of params.yaml's own search space, tune.max_epochs=400 and grace_period=400 (so ASHA stops
nothing), pretrain.patience as in params.yaml (trials stop early after 7-20 s), cpus_per_trial=1. Both modes draw the same 4 configurations (seeded).
Per-phase timings come from a Tune callback: Ray start, fit start -> first trial start, each trial's
overhead (from its slot being free to its first result, less its first epoch: the trial process start
and imports for the first wave, a reused process later), last result -> fit return, the stage's outputs;
also the driver's and Ray daemons' CPU seconds, and how many driver round trips carried the results.
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
SAMPLES = ("samples", "issue23")  # one workload, two names: earlier results call it issue23


def _phase_callback():
    """A Tune callback that records when each trial starts, first reports, and ends (driver clock)."""
    from ray.tune import Callback

    class Phases(Callback):
        def __init__(self) -> None:
            self.start: dict[str, float] = {}
            self.first: dict[str, float] = {}
            self.end: dict[str, float] = {}
            self.first_epoch_s: dict[str, float] = {}
            self.last: dict[str, float] = {}
            self.results = self.round_trips = 0

        def on_trial_start(self, iteration, trials, trial, **info):
            self.start.setdefault(trial.trial_id, time.perf_counter())

        def on_trial_result(self, iteration, trials, trial, result, **info):
            # Results Tune's driver takes in one call of the trial (buffered) arrive back to back: a gap of
            # under 1 ms from the same trial's previous result counts as the same round trip.
            now = time.perf_counter()
            if now - self.last.get(trial.trial_id, -1.0) > 1e-3:
                self.round_trips += 1
            self.last[trial.trial_id] = now
            self.results += 1
            if trial.trial_id not in self.first:
                self.first[trial.trial_id] = time.perf_counter()
                self.first_epoch_s[trial.trial_id] = result.get("time_this_iter_s", 0.0)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.end[trial.trial_id] = time.perf_counter()

    return Phases()


def _phases(cb, t0: float, t_fit_end: float) -> dict:
    starts, ends = sorted(cb.start.values()), sorted(cb.end.values())
    # Per trial, from the moment its slot was free (fit's start for the first wave, else the latest end of
    # another trial before it) to its first result, less its first epoch: the trial's overhead (a new
    # actor process and its imports for the first wave, a reused actor later; the data from the object
    # store, model construction, Tune's scheduling).
    to_first = []
    for t, first in sorted(cb.first.items(), key=lambda kv: kv[1]):
        free = max([t0] + [e for u, e in cb.end.items() if u != t and e < first])
        to_first.append(first - free - cb.first_epoch_s.get(t, 0.0))
    return {"results": cb.results, "round_trips": cb.round_trips,
            "fit_to_first_trial_s": starts[0] - t0 if starts else None,
            "trial_start_overhead_s": [round(x, 3) for x in to_first],
            "last_end_to_fit_return_s": t_fit_end - ends[-1] if ends else None}


def _cpu_seconds() -> tuple[float, float]:
    """(this driver process, Ray's daemons: GCS, raylet, dashboard agents...) CPU seconds so far. Trial
    workers ("ray::...") are left out: their time is the trials' own."""
    import psutil

    me = psutil.Process()
    t = me.cpu_times()
    daemons = 0.0
    for c in me.children(recursive=True):
        try:
            if not c.name().startswith("ray::") and "default_worker" not in " ".join(c.cmdline()):
                ct = c.cpu_times()
                daemons += ct.user + ct.system
        except psutil.Error:
            pass
    return t.user + t.system, daemons


def _experiment(root: Path, name: str, epochs: int, concurrent: bool, seq_cpus: int, sets: list[str],
                workload: str) -> dict:
    from vaeflow.tasks.tune import tune
    from vaeflow.config import load_config
    from vaeflow.paths import Paths

    mode = (["tune.max_concurrent_trials=2", "tune.cpus_per_trial=1"] if concurrent
            else ["tune.max_concurrent_trials=1", f"tune.cpus_per_trial={seq_cpus}"])
    if workload in SAMPLES:
        work = ["tune.num_samples=4"]
    else:
        work = ["pretrain.patience=1000", "tune.num_samples=1",
                "tune.search_space={lr: {grid: %s}}" % json.dumps(LRS)]
    cfg = load_config(REPO / "params.yaml", [
        "device=cpu", f"tune.max_epochs={epochs}", f"tune.grace_period={epochs}",
        "tune.gpus_per_trial=0", f"tune.experiment_name={name}", *work, *mode, *sets])
    load_before = os.getloadavg()[0]  # other processes' demand on the 2 cores changes the answer
    cb = _phase_callback()
    import vaeflow.tasks.tune as stage

    fit_marks: list[float] = []
    make_tuner = stage.make_tuner

    def timed_make_tuner(*a, **kw):  # marks fit()'s start and end on the same clock as the callback
        tuner = make_tuner(*a, **kw)
        fit = tuner.fit

        def timed_fit():
            fit_marks.append(time.perf_counter())
            try:
                return fit()
            finally:
                fit_marks.append(time.perf_counter())
        tuner.fit = timed_fit
        return tuner

    stage.make_tuner = timed_make_tuner
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    try:
        summary = tune(cfg, Paths(root), callbacks=[cb])
    finally:
        stage.make_tuner = make_tuner
    wall = time.perf_counter() - t0
    cpu1 = _cpu_seconds()
    import pandas as pd

    table = pd.read_csv(root / "metrics" / "tune_trials.csv")
    assert len(table) == 4, table
    if workload not in SAMPLES:
        assert set(table["epochs"]) == {epochs}, table
    return {"wall_s": wall, "trial_seconds_sum": float(table["seconds"].sum()), "best": summary["best_val_nelbo"],
            "epochs": sorted(int(e) for e in table["epochs"]),
            "driver_cpu_s": cpu1[0] - cpu0[0], "ray_daemons_cpu_s": cpu1[1] - cpu0[1],
            "before_fit_s": fit_marks[0] - t0, "outputs_s": time.perf_counter() - fit_marks[1],
            **_phases(cb, fit_marks[0], fit_marks[1]),
            "load_avg_1m_before": load_before, "load_avg_1m_after": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2, help="alternate sequential/concurrent this many times")
    ap.add_argument("--seq-cpus", type=int, default=1, choices=(1, 2),
                    help="CPUs (and torch threads) of a trial in the sequential mode")
    ap.add_argument("--workload", choices=("lrs", *SAMPLES), default="lrs",
                    help="lrs: 4 fixed learning rates, no early stopping; samples (or issue23): 4 samples of the "
                    "default space")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="a params override for both modes")
    ap.add_argument("--compare-order", action="store_true",
                    help="also run the concurrent mode with tune.order=sampled (a third mode, same process)")
    args = ap.parse_args()
    import logging

    import ray

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("vaeflow").setLevel(logging.INFO)  # the stage's own lines: the probe's costs and the order

    from vaeflow.tasks import prepare
    from vaeflow.config import load_config
    from vaeflow.paths import Paths
    from vaeflow.tuning.cluster import start_local

    root = Path(tempfile.mkdtemp(prefix="bench_tune_"))
    prepare.run(load_config(REPO / "params.yaml", ["device=cpu"]), Paths(root))
    t_ray = time.perf_counter()
    start_local(num_cpus=2, num_gpus=0)
    ray_start_s = time.perf_counter() - t_ray
    modes = ("sequential", "concurrent") + (("concurrent_sampled",) if args.compare_order else ())
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    try:
        for r in range(args.repeats):
            for mode in modes:
                # --compare-order's third mode: concurrent, the trials in the order they were sampled
                sets = args.sets + (["tune.order=sampled"] if mode == "concurrent_sampled" else [])
                res = _experiment(root, f"{mode}_{r}", args.epochs, mode != "sequential", args.seq_cpus,
                                  sets, args.workload)
                runs[mode].append(res)
                print(f"{mode:>10} run {r}: {res['wall_s']:.1f} s wall, trials' own training "
                      f"{res['trial_seconds_sum']:.1f} s, load {res['load_avg_1m_before']:.1f} -> "
                      f"{res['load_avg_1m_after']:.1f}; CPU: driver {res['driver_cpu_s']:.1f} s, Ray daemons "
                      f"{res['ray_daemons_cpu_s']:.1f} s; {res['results']} results in {res['round_trips']} driver "
                      f"round trips; phases: before fit {res['before_fit_s']:.2f} s, fit -> first "
                      f"trial {res['fit_to_first_trial_s']:.2f} s, per-trial overhead "
                      f"{res['trial_start_overhead_s']} s, last end -> fit return "
                      f"{res['last_end_to_fit_return_s']:.2f} s, outputs {res['outputs_s']:.2f} s", flush=True)
    finally:
        ray.shutdown()
    seq = statistics.median(x["wall_s"] for x in runs["sequential"])
    conc = statistics.median(x["wall_s"] for x in runs["concurrent"])
    out = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
           "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "load_avg_1m_at_end": os.getloadavg()[0], "epochs": args.epochs, "workload": args.workload,
           "ray_start_s": ray_start_s, "trials": len(LRS),
           "seq_cpus": args.seq_cpus, "overrides": args.sets,
           "sequential_wall_s": seq, "concurrent_wall_s": conc, "speedup": seq / conc, "runs": runs}
    if args.compare_order:
        sampled = statistics.median(x["wall_s"] for x in runs["concurrent_sampled"])
        out.update(concurrent_sampled_wall_s=sampled, speedup_sampled_order=seq / sampled)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
