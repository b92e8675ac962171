"""What a Tune experiment leaves behind for people and for the pipeline.

best_config.json (what pretrain.use_tuned reads), metrics/tune.json, a trials table, per-epoch curves
(CSV for `dvc plots`, and a figure). The same files are copied into the experiment's storage
(`<tune.storage_path>/<tune.experiment_name>/outputs/`), where a run on a cluster can be fetched from.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

from vaeflow.config import Config
from vaeflow.io import save_figure, write_bytes, write_json, write_text
from vaeflow.paths import Paths
from vaeflow.tuning.experiment import METRIC
from vaeflow.tuning.storage import read_file, storage_fs, write_file
from vaeflow.tuning.space import plain

log = logging.getLogger("vaeflow")


class TuneIncomplete(RuntimeError):
    """The experiment stopped before every trial finished (interrupted driver, or every trial failed)."""


def outputs(paths: Paths) -> dict[str, Path]:
    """File name in the experiment's outputs/ folder -> where it lives in the project."""
    return {"best_config.json": paths.tuned, "tune.json": paths.stage_metrics("tune"),
            "tune_trials.csv": paths.metrics / "tune_trials.csv",
            "tune_curves.csv": paths.plots / "tune_curves.csv",
            "tune_curves.png": paths.figures / "tune_curves.png"}


def _progress(r: Any) -> Any:
    """A trial's every report, from Ray's progress.csv. (Result.metrics_dataframe comes from result.json,
    which a trial restored after a failure rewrites without the reports before it.)"""
    import pandas as pd

    path = f"{r.path}/progress.csv"
    if r.filesystem.get_file_info(path).type.name == "NotFound":
        return None
    with r.filesystem.open_input_stream(path) as f:
        return pd.read_csv(f, dtype={"node_id": str})  # a hex id that is all digits stays a string


def _trial(r: Any, max_epochs: int) -> dict:
    """One trial's row. Epochs count from 0 as in pretrain's history; a trial that never started has no metrics."""
    m, df = r.metrics or {}, _progress(r)
    # progress.csv holds each epoch once (progress.py), but an experiment another logger wrote (Tune's own,
    # e.g. a --resume of one started elsewhere) has a retried trial's rerun epochs twice: keep the last.
    hist = [] if df is None or METRIC not in df else sorted(
        {int(e): float(v) for e, v in zip(df["epoch"], df[METRIC]) if math.isfinite(v)}.items())
    best = min(hist, key=lambda h: h[1]) if hist else (-1, math.inf)
    # Every Ray node the trial ran on, in order: more than one when it was restarted on another node.
    nodes = [] if df is None or "node_id" not in df else list(dict.fromkeys(df["node_id"].dropna().astype(str)))
    status = ("error" if r.error is not None else "unfinished" if not m.get("done")
              else "completed" if m.get("training_iteration", 0) >= max_epochs else "stopped_early")
    return {"trial_id": m.get("trial_id") or Path(r.path).name,
            "config": {k: plain(v) for k, v in (r.config or {}).items()}, "status": status,
            "epochs": len(hist), "best_val_nelbo": best[1], "best_epoch": best[0],
            "last_val_nelbo": hist[-1][1] if hist else math.inf, "seconds": m.get("time_total_s"),
            "history": hist, "nodes": nodes,
            "error": None if r.error is None else f"{type(r.error).__name__}: {r.error}"[:300]}


def _trials_csv(trials: list[dict]) -> str:
    keys = list(dict.fromkeys(k for t in trials for k in t["config"]))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["trial_id", *keys, "status", "epochs", "best_val_nelbo", "best_epoch", "last_val_nelbo", "seconds",
                "node_id"])
    for t in trials:
        w.writerow([t["trial_id"], *(json.dumps(t["config"].get(k)) for k in keys), t["status"], t["epochs"],
                    f"{t['best_val_nelbo']:.4f}", t["best_epoch"], f"{t['last_val_nelbo']:.4f}",
                    "" if t["seconds"] is None else f"{t['seconds']:.2f}", ";".join(t["nodes"])])
    return buf.getvalue()


def _curves_figure(trials: list[dict], best_id: str, path: Path) -> None:
    from vaeflow.plots import pyplot

    plt = pyplot()  # on the Agg backend

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for t in trials:
        if not t["history"]:
            continue
        ep, val = zip(*t["history"])
        style = {"lw": 2.2, "color": "black", "zorder": 3} if t["trial_id"] == best_id else \
            {"lw": 1, "ls": "--" if t["status"] == "stopped_early" else "-", "alpha": 0.8}
        ax.plot(ep, val, marker=".", label=f"{t['trial_id']} ({t['status']})", **style)
    ax.set_xlabel("epoch"), ax.set_ylabel("val −ELBO (nats per image)")
    ax.set_title("Ray Tune trials (ASHA); best in black, stopped early dashed", fontsize=10)
    ax.grid(alpha=0.3)
    if len(trials) <= 12:
        ax.legend(fontsize=7)
    save_figure(fig, path)
    plt.close(fig)


def write_outputs(grid: Any, cfg: Config, paths: Paths, experiment: str, seconds: float, *,
                  this_call: float | None = None, calls: int = 1) -> dict:
    """Summarise a finished ResultGrid into the output files; refuse to call an interrupted one finished.

    `seconds`: Tune's fit time summed over the experiment's start and its resumes (`calls` of them);
    `this_call`: this call's alone (a resume of a finished experiment takes seconds, its start minutes)."""
    # In trial-id order, i.e. the order Tune created them: a restored ResultGrid lists them in any order, and the
    # table, the curves and a tie for the best trial must not depend on it
    trials = sorted((_trial(r, cfg.tune.max_epochs) for r in grid), key=lambda t: t["trial_id"])
    unfinished = [t["trial_id"] for t in trials if t["status"] == "unfinished"]
    ok = [t for t in trials if t["status"] in ("completed", "stopped_early") and t["epochs"]]
    if unfinished or not ok:
        why = (f"{len(unfinished)} of {len(trials)} trials did not finish" if unfinished
               else "every trial failed; first error: " + next((t["error"] for t in trials if t["error"]), "none"))
        raise TuneIncomplete(f"tune: {why}. Resume the experiment at {experiment} with `vaeflow tune --resume`")
    for t in trials:
        if t["status"] == "error":
            log.warning("tune: trial %s failed after %d retries: %s", t["trial_id"], cfg.tune.max_failures, t["error"])
    best = min(ok, key=lambda t: t["best_val_nelbo"])
    files = outputs(paths)
    write_json(files["best_config.json"], {
        "tuned": True, "config": best["config"], "val_nelbo": best["best_val_nelbo"], "epoch": best["best_epoch"],
        "trial_id": best["trial_id"], "experiment": experiment})
    summary = {"best_val_nelbo": best["best_val_nelbo"], "best_trial": best["trial_id"],
               "best_config": best["config"], "n_trials": len(trials),
               "n_stopped_early": sum(t["status"] == "stopped_early" for t in trials),
               "n_errored": sum(t["status"] == "error" for t in trials), "seconds": seconds,
               "seconds_this_call": seconds if this_call is None else this_call, "fit_calls": calls,
               "experiment": experiment}
    write_json(files["tune.json"], summary)
    write_text(files["tune_trials.csv"], _trials_csv(trials))
    write_text(files["tune_curves.csv"], "trial_id,epoch,val_nelbo\n" + "".join(
        f"{t['trial_id']},{e},{v:.5f}\n" for t in trials for e, v in t["history"]))
    _curves_figure(trials, best["trial_id"], files["tune_curves.png"])
    upload(files, experiment)
    return summary


def upload(files: dict[str, Path], experiment: str) -> None:
    fs, base = storage_fs(f"{experiment.rstrip('/')}/outputs")
    for name, local in files.items():
        write_file(fs, f"{base}/{name}", local.read_bytes())


def fetch(experiment: str, paths: Paths) -> list[Path]:
    """Copy an experiment's outputs/ (e.g. a cluster job's, from s3:// or a shared disk) into the project."""
    fs, base = storage_fs(f"{experiment.rstrip('/')}/outputs")
    got = []
    for name, local in outputs(paths).items():
        data = read_file(fs, f"{base}/{name}")
        if data is not None:
            write_bytes(local, data)
            got.append(local)
    return got
