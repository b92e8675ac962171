"""Summarise a bench/gpu_runs.sh output folder: one table per preset, means ± std over the seeds that finished.

usage: python bench/gpu_summary.py OUT_DIR   (writes OUT_DIR/summary.json, prints markdown)
"""
from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _stage_seconds(log: Path) -> dict[str, int]:
    text = log.read_text() if log.exists() else ""
    return {m[1]: int(m[3]) for m in re.finditer(r"stage (\w+) rc=(\d+) seconds=(\d+)", text) if m[2] == "0"}


def _mean_std(xs: list[float]) -> str:
    if not xs:
        return "—"
    if len(xs) == 1:
        return f"{100 * xs[0]:.2f} (1 seed)"
    return f"{100 * statistics.mean(xs):.2f} ± {100 * statistics.stdev(xs):.2f} (n={len(xs)})"


def summarise(out: Path) -> tuple[dict, str]:
    jobs = {}
    for d in sorted((out / "runs").glob("*")):
        m = {p.stem: _read(p) for p in (d / "metrics").glob("*.json")}
        jobs[d.name] = {"metrics": m, "stage_seconds": _stage_seconds(d / "log.txt")}
    lines = []
    b = jobs.get("binary", {}).get("metrics", {}).get("pretrain")
    if b:
        lines += ["## mnist_binary", f"VAE test NLL {b['test_nll_nats']:.2f} ± {b['test_nll_stderr']:.2f} nats "
                  f"(IWAE k={b['iwae_samples']}, {b['n_test']} images), -ELBO {b['test_nelbo_nats']:.2f}, "
                  f"{b['epochs_run']} epochs (best {b['best_epoch']}, stopped by {b.get('stopped_by', '?')}) "
                  f"in {b['train_seconds']:.0f} s"]
    g = jobs.get("binary_mixture", {}).get("metrics", {}).get("gmm")
    if g:
        lines.append(f"mixture of K={g['n_components']} Bernoullis: test NLL {g['test_nll_nats']:.2f} nats "
                     f"({g['n_test']} images), fit {g['fit_seconds']:.0f} s")
    for preset in ("mnist_usps", "usps_mnist", "mnist_100labels"):
        runs = {k: v for k, v in jobs.items() if re.fullmatch(rf"{preset}_\d+", k)}
        accs: dict[str, list[float]] = {}
        for v in runs.values():
            for variant, r in ((v["metrics"].get("adapt") or {}).get("variants") or {}).items():
                accs.setdefault(variant, []).append(r["target_test_acc"])
        lines += ["", f"## {preset}: target test accuracy % over seeds {sorted(runs)}"]
        lines += [f"- {variant}: {_mean_std(xs)}" for variant, xs in accs.items()] or ["- no adapt results"]
        lines += [f"- {k} stage seconds: {v['stage_seconds']}" for k, v in runs.items()]
    summary = {"jobs": jobs}
    return summary, "\n".join(lines)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    summary, text = summarise(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(text)
