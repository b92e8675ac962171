"""How much slower two single-thread trainings run side by side than alone, without Ray (the machine's own
pairing loss, the floor under Ray Tune's 2-at-a-time ratio in bench/RESULTS_tune.md).

The workload is a tune trial's model: the VAE with the search space's widest MLP (512-256) on 1,437 random 8×8
binary images, batch 64, one torch thread, a fixed number of epochs. Each round times it alone on core 0,
alone on core 1, then on both cores at once (`taskset`), in fresh processes.

    .venv/bin/python bench/bench_pairing.py [--epochs 60] [--rounds 4]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def workload(epochs: int) -> float:
    import torch

    sys.path.insert(0, str(REPO))
    from vaeflow.models.vae import VAE

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = (torch.rand(1437, 1, 8, 8) < 0.3).float()
    model = VAE(input_shape=(1, 8, 8), latent_dim=16, hidden=[512, 256], likelihood="bernoulli")
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    t0 = time.perf_counter()
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            loss = -model.elbo(x[i:i + 64])["elbo"].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def timed(cores: list[int], epochs: int) -> list[float]:
    """Start one workload process per core at once; each prints its own training seconds."""
    procs = [subprocess.Popen(["taskset", "-c", str(c), sys.executable, __file__, "--worker", str(epochs)],
                              stdout=subprocess.PIPE, text=True) for c in cores]
    return [float(p.communicate()[0]) for p in procs]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker is not None:
        print(f"{workload(a.worker):.4f}")
        return
    alone, together = [], []
    print("| round | alone, core 0 / core 1 (s) | together, core 0 / core 1 (s) |\n|---|---|---|")
    for r in range(a.rounds):
        solo = timed([0], a.epochs) + timed([1], a.epochs)
        pair = timed([0, 1], a.epochs)
        alone += solo
        together += pair
        print(f"| {r + 1} | {solo[0]:.2f} / {solo[1]:.2f} | {pair[0]:.2f} / {pair[1]:.2f} |", flush=True)
    ratio = [t / s for t, s in zip(together, alone)]
    print(f"\ntogether / alone, same core and round: mean {statistics.mean(ratio):.3f}, "
          f"range {min(ratio):.3f}-{max(ratio):.3f} ({len(ratio)} pairs)")


if __name__ == "__main__":
    main()
