"""Summarise bench/cpu_runs.sh: one markdown table per job from its metrics/adapt.json.

usage: python bench/cpu_summary.py OUT [--json FILE]
For each variant: target test accuracy mean ± std over the repeats (each run's accuracy listed), the
paired difference to source_only (repeats share their seeds), the spread of the target accuracy over
the last epochs (the stability trace; it selects nothing), wall seconds per run on this CPU, and the
label-free collapse check (the lowest ratio of a class's predicted share on unlabelled target images to
its labelled share, per run; runs written before the check existed show —), and the label-free
source-retention check (vaeflow/training/health.py: the share of the source network's above-chance
source-validation accuracy a continuation kept, per run; for runs written before the check existed,
from the last source-validation accuracy logged in each checkpoint's history).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from vaeflow.variants import BY_NAME

logging.getLogger("vaeflow").setLevel(logging.ERROR)  # the checks' warnings: the table shows them (⚠)


def checkpoint_seconds(job: Path, variant: str, repeats: int) -> list[float] | None:
    """Training seconds per repeat from the checkpoints' histories (the last epoch's cumulative seconds):
    metrics written before adapt kept train_seconds in checkpoints report a resumed run as ~0 s."""
    import torch

    out = []
    for r in range(repeats):
        f = job / "runs" / "checkpoints" / f"adapt_{variant}_{r}.pt"
        if not f.is_file():
            return None
        st = torch.load(f, map_location="cpu", weights_only=False)["state"]
        out.append(st.get("train_seconds") or st["history"][-1]["seconds"])
    return out


def _source_val(job: Path | None, adapt: dict, v: str) -> list[float] | None:
    runs = adapt["variants"][v].get("source_val_acc_runs")
    if runs or job is None:
        return runs
    import torch

    out = []
    for r in range(adapt["repeats"]):
        f = job / "runs" / "checkpoints" / f"adapt_{v}_{r}.pt"
        hist = torch.load(f, map_location="cpu", weights_only=False)["state"]["history"] if f.is_file() else []
        if not hist or "source_val_acc" not in hist[-1]:
            return None
        out.append(hist[-1]["source_val_acc"])
    return out


def _retention(job: Path | None, adapt: dict, v: str, flagged: dict[str, list[int]]) -> str:
    """Per run: the retained share of the chain root's above-chance source-validation accuracy, ⚠ where the
    check flags it. The stage's own check (vaeflow/training/health.py), from adapt.json where it wrote one,
    else recomputed from the checkpoints; `flagged` collects each variant's flags, in list order, so that a
    continuation of a flagged run is flagged as the stage does."""
    from vaeflow.training.health import ideal_retention, inherited, retention_check, source_root

    listed, r = list(adapt["variants"]), adapt["variants"][v]
    root, ret = source_root(v, listed), r.get("source_retention")
    if ret is None and root != v:
        mine, ref = _source_val(job, adapt, v), _source_val(job, adapt, root)
        if mine and ref:
            ret = retention_check(v, [{"source_val_acc": x} for x in mine], root,
                                  [{"source_val_acc": x} for x in ref], len(r["confusion"]),
                                  flagged.get(BY_NAME[v].continues, []))
    elif ret is None and BY_NAME[v].labelled == "source" and r.get("source_val_acc_runs"):  # nothing up its chain
        ret = ideal_retention(v, [{"source_val_acc": x} for x in r["source_val_acc_runs"]], len(r["confusion"]))
    if not ret:
        return "—"
    flagged[v] = inherited({"source_retention": ret})  # what a continuation inherits, as in the stage
    fell = dict(zip(r["fallback"]["runs"], r["fallback"]["to"])) if r.get("fallback") else {}  # adapt.on_flag
    return ", ".join(("n/a" if x is None else f"{x:.2f}") + (" ⚠" if i in ret["flagged"] else "")
                     + (f" (scored as {fell[i]})" if i in fell else "") for i, x in enumerate(ret["retained_runs"]))


def _collapse(r: dict) -> str:
    c = r.get("collapse")
    if not c:
        return "—"
    return ", ".join(f"{x:.2f}" + (" ⚠" if i in c["flagged"] else "") for i, x in enumerate(c["min_share_ratio_runs"]))


def job_table(name: str, adapt: dict, command: str, job: Path | None = None) -> str:
    rows = [f"### {name}", "", f"`{command.strip()}`", "",
            f"{adapt['epochs']} epochs × {adapt['steps_per_epoch']} steps, {adapt['repeats']} repeats, "
            f"selection rule `{adapt['selection_rule']}`.", "",
            "| variant | target acc % (mean ± std) | runs | paired Δ (± s.e.) | spread, last 3 epochs | s/run | "
            "lowest class share ÷ prior | source kept |", "|---|---|---|---|---|---|---|---|"]
    paired, flagged = adapt.get("paired", {}), {}
    for v, r in adapt["variants"].items():
        runs = ", ".join(f"{100 * a:.2f}" for a in r["target_test_acc_runs"])
        d = paired.get(v)
        delta = f"{100 * d['mean']:+.2f} ± {100 * d['se']:.2f} (vs `{d['reference']}`)" if d else "—"
        st = r.get("stability")
        # the last 3 epochs of each repeat's target-accuracy curve (the short CPU schedules have 3-5 epochs,
        # so the stage's own last-5 spread would include the first epochs' climb), max − min, mean over repeats
        tails = [c[-3:] for c in st["curves"]] if st else []
        spread = f"{100 * sum(max(t) - min(t) for t in tails) / len(tails):.2f}" if tails else "—"
        secs = r.get("seconds_per_run") or [r["train_seconds"] / max(len(r["target_test_acc_runs"]), 1)]
        if job is not None and max(secs) < 1:
            secs = checkpoint_seconds(job, v, len(r["target_test_acc_runs"])) or secs
        rows.append(f"| `{v}` | {100 * r['target_test_acc']:.2f} ± {100 * r['target_test_acc_std']:.2f} | {runs} | "
                    f"{delta} | {spread} | {sum(secs) / len(secs):.0f} | {_collapse(r)} | {_retention(job, adapt, v, flagged)} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    summary = {}
    if not (a.out / "runs").is_dir():
        print(f"{a.out}: no jobs yet (bench/cpu_runs.sh start writes them to {a.out / 'runs'})")
        return
    for job in sorted(p for p in (a.out / "runs").iterdir() if p.is_dir()):
        f = job / "metrics" / "adapt.json"
        if not f.is_file():
            log = job / "log.txt"
            why = log.read_text()[-200:].strip() if log.is_file() else (job / "done").read_text().strip() \
                if (job / "done").is_file() else "not started"
            print(f"### {job.name}\n\nnot finished: {why!r}\n")
            continue
        adapt = json.loads(f.read_text())
        cmd = (job / "command.txt").read_text() if (job / "command.txt").is_file() else "?"
        print(job_table(job.name, adapt, cmd, job))
        summary[job.name] = adapt
    if a.json:
        a.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
