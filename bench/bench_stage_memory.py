"""Peak RSS of the `prepare` and `gmm` stages on a generated colour `npz:` dataset (3×32×32), at several sizes.

    nice -n 5 .venv/bin/python bench/bench_stage_memory.py [--sizes 25000 50000 100000] [--out FILE]

For each size N a dataset of N uint8 images (10 classes, 1/7 of them in test.npz) is written to a temp
folder and used as both domains (`data.source = data.target = npz:DIR`, disjoint pools: one family split
in two, as MNIST -> MNIST is). Each stage then runs in a fresh process (`vaeflow.tasks.<stage>.run`), which
reports its VmHWM (peak RSS, /proc/self/status) and its RSS just before the stage (interpreter, torch
and the config loaded). "Data" is the images as the pipeline holds them: N × 3 × 32 × 32 float32.
The gmm stage is configured small (K=5, diagonal, 5 EM iterations, gmm.chunk_size 1024) so that the
bench measures what the stage holds for the data, not a full-covariance model (K × D² floats) or time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GMM_SMALL = ["gmm.n_components=[5]", "gmm.covariance_type=diag", "gmm.max_iter=5", "gmm.chunk_size=1024"]


def make_npz(root: Path, n: int, seed: int = 0) -> None:
    """n colour images with some structure (a per-class 4×4 colour template upsampled, per-image brightness
    and noise), so the compressed .npz is not incompressible noise. Written in blocks: the generator itself
    stays small."""
    g = np.random.default_rng(seed)
    templates = g.integers(0, 256, size=(10, 3, 4, 4)).astype(np.float32)
    n_test = n // 7
    for name, m in (("train", n - n_test), ("test", n_test)):
        x = np.empty((m, 32, 32, 3), dtype=np.uint8)
        y = g.integers(0, 10, size=m)
        for i in range(0, m, 5000):
            yb = y[i:i + 5000]
            t = np.repeat(np.repeat(templates[yb], 8, axis=2), 8, axis=3)          # B×3×32×32
            t = t * g.uniform(0.5, 1.0, size=(len(yb), 1, 1, 1)) + g.normal(0, 12, size=t.shape)
            x[i:i + 5000] = np.clip(np.rint(t), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        np.savez(root / f"{name}.npz", x=x, y=y)


def child(stage: str, project: Path, data_dir: Path) -> dict:
    """Run one stage in this process; report its peak RSS."""
    def status(field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    import importlib

    import torch

    from vaeflow.config import load_config
    from vaeflow.paths import Paths

    torch.set_num_threads(1)
    cfg = load_config(REPO / "params.yaml", [
        "device=cpu", "threads=1", f"data.source=npz:{data_dir}", f"data.target=npz:{data_dir}",
        "data.channels=3", *GMM_SMALL])
    mod = importlib.import_module(f"vaeflow.tasks.{stage}")
    before = status("VmRSS")
    t0 = time.perf_counter()
    mod.run(cfg, Paths(project))
    return {"stage": stage, "seconds": time.perf_counter() - t0, "rss_before_mib": before,
            "peak_mib": status("VmHWM")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[25_000, 50_000, 100_000])
    ap.add_argument("--stages", nargs="+", default=["prepare", "gmm"])
    ap.add_argument("--out", type=Path, help="append the JSON results here")
    ap.add_argument("--child", nargs=3, metavar=("STAGE", "PROJECT", "DATA"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        stage, project, data = args.child
        print(json.dumps(child(stage, Path(project), Path(data))))
        return
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench_stage_mem_") as tmp:
            data_dir, project = Path(tmp) / "data", Path(tmp) / "project"
            data_dir.mkdir()
            project.mkdir()
            make_npz(data_dir, n)
            data_mib = n * 3 * 32 * 32 * 4 / 2**20
            for stage in args.stages:
                out = subprocess.run([sys.executable, __file__, "--child", stage, str(project), str(data_dir)],
                                     env=env, cwd=project, capture_output=True, text=True)
                if out.returncode != 0:
                    sys.exit(f"{stage} at N={n} failed:\n{out.stderr[-3000:]}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                r.update(n=n, data_mib=data_mib, peak_over_data=r["peak_mib"] / data_mib,
                         above_start_over_data=(r["peak_mib"] - r["rss_before_mib"]) / data_mib)
                rows.append(r)
                print(f"N={n:>7,} {stage:>8}: data {data_mib:7.0f} MiB, RSS before {r['rss_before_mib']:5.0f} MiB, "
                      f"peak {r['peak_mib']:7.0f} MiB = {r['peak_over_data']:.2f}× data "
                      f"({r['above_start_over_data']:.2f}× above the start), {r['seconds']:.1f} s", flush=True)
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "load_avg": os.getloadavg(),
              "rows": rows}
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
