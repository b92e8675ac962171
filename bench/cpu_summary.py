"""Summarise bench/cpu_runs.sh: one markdown table per job from its metrics/adapt.json.

usage: python bench/cpu_summary.py OUT [--json FILE]
For each variant: target test accuracy mean ± std over the repeats (each run's accuracy listed), the
paired difference to source_only (repeats share their seeds), the spread of the target accuracy over
the last epochs (the stability trace; it selects nothing), and wall seconds per run on this CPU.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def job_table(name: str, adapt: dict, command: str) -> str:
    rows = [f"### {name}", "", f"`{command.strip()}`", "",
            f"{adapt['epochs']} epochs × {adapt['steps_per_epoch']} steps, {adapt['repeats']} repeats, "
            f"selection rule `{adapt['selection_rule']}`.", "",
            "| variant | target acc % (mean ± std) | runs | Δ vs source_only (± s.e.) | spread, last epochs | s/run |",
            "|---|---|---|---|---|---|"]
    paired = adapt.get("paired", {})
    for v, r in adapt["variants"].items():
        runs = ", ".join(f"{100 * a:.2f}" for a in r["target_test_acc_runs"])
        d = paired.get(v)
        delta = f"{100 * d['mean']:+.2f} ± {100 * d['se']:.2f}" if d else "—"
        st = r.get("stability")
        spread = f"{100 * st['spread']:.2f} ({st['last_epochs']})" if st else "—"
        secs = r.get("seconds_per_run") or [r["train_seconds"] / max(len(r["target_test_acc_runs"]), 1)]
        rows.append(f"| `{v}` | {100 * r['target_test_acc']:.2f} ± {100 * r['target_test_acc_std']:.2f} | {runs} | "
                    f"{delta} | {spread} | {sum(secs) / len(secs):.0f} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    summary = {}
    for job in sorted((a.out / "runs").iterdir()):
        f = job / "metrics" / "adapt.json"
        if not f.is_file():
            print(f"### {job.name}\n\nnot finished: {(job / 'log.txt').read_text()[-200:].strip()!r}\n")
            continue
        adapt = json.loads(f.read_text())
        summary[job.name] = adapt
        cmd = (job / "command.txt").read_text() if (job / "command.txt").is_file() else "?"
        print(job_table(job.name, adapt, cmd))
    if a.json:
        a.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
