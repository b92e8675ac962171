"""Seconds per training epoch of the mnist_binary MLP with vaeflow's train_vae: eager step vs CUDA-graph
capture, ELBO vs IWAE k=50, and the IWAE k=5000 evaluation rate. Meant for a lent GPU (one short call);
runs on CPU too (with --n-train small) as a smoke test of the same code.

    python bench/bench_epoch.py [--device cuda --n-train 59000 --epochs 5]   # prints a markdown table

MLP VAE 784-200-200-50 (tanh), Bernoulli decoder, batch 100, Adam 1e-3, dynamically binarized MNIST
(the training set held on the device as grey levels; each step binarizes its batch there). An epoch's
time is the median over --epochs epochs after the first (capture, warm-up and allocator growth land in
the first), from train_vae's own per-epoch clock, including its validation pass over 3,000 images (the
ELBO, and for IWAE also IWAE_k) and no checkpoints (checkpoint_every_s = 1 hour, so only the last epoch's).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from vae_bench import MNIST  # noqa: E402

from vaeflow.data import observe  # noqa: E402
from vaeflow.data.mnist import parse_idx  # noqa: E402
from vaeflow.models.vae import VAE  # noqa: E402
from vaeflow.runtime import full_fp32, select_device  # noqa: E402
from vaeflow.training.vae_trainer import iwae_batch, TrainSettings, train_vae  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n-train", type=int, default=59_000)
    ap.add_argument("--n-val", type=int, default=3_000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--eval-images", type=int, default=1_000)
    ap.add_argument("--eval-k", type=int, default=5_000)
    args = ap.parse_args()
    dev = select_device(args.device)
    grey = parse_idx(MNIST / "train-images-idx3-ubyte.gz")[:args.n_train + args.n_val].reshape(-1, 1, 28, 28)
    grey = grey.astype(np.float32) / 255.0
    x_train = torch.from_numpy(grey[:args.n_train]).to(dev)
    x_val = torch.from_numpy(observe(grey[args.n_train:], "bernoulli", 256, np.random.default_rng(0))).to(dev)
    rows = []
    for objective, k in (("elbo", 1), ("iwae", 50)):
        for capture in (False, True):
            torch.manual_seed(0)
            model = VAE((1, 28, 28), 50, [200, 200], "bernoulli", "tanh").to(dev)
            with tempfile.TemporaryDirectory() as tmp:
                res = train_vae(model, x_train, x_val, TrainSettings(epochs=args.epochs, batch_size=100, lr=1e-3,
                                beta=1.0, warmup_epochs=0, patience=args.epochs + 1, likelihood="bernoulli",
                                levels=256, checkpoint_every_s=3600, objective=objective, k=k, capture=capture),
                                ckpt_path=Path(tmp) / "p.pt", fingerprint="bench")
            ends = [r["seconds"] for r in res.history]
            per = [b - a for a, b in zip(ends, ends[1:])] or ends
            rows.append(f"| {objective}{'' if k == 1 else f' k={k}'} | {capture and dev.type == 'cuda'} | "
                        f"{ends[0]:.2f} | {statistics.median(per):.3f} | {res.history[-1]['val_bound']:.2f} |")
            print(rows[-1], file=sys.stderr, flush=True)
    model.eval()
    xe = x_val[:args.eval_images]
    chunk = min(500, args.eval_k)
    bs = iwae_batch(dev, 100, chunk)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.inference_mode(), full_fp32():
        nll = torch.cat([-model.iwae(xe[i:i + bs], args.eval_k, chunk) for i in range(0, len(xe), bs)]).mean().item()
    secs = time.perf_counter() - t0
    print(f"device {dev} ({torch.cuda.get_device_name(0) if dev.type == 'cuda' else 'CPU'}), torch {torch.__version__}; "
          f"{args.n_train:,} training images, batch 100, {args.epochs} epochs per row\n")
    print("| objective | CUDA graph | first epoch s (incl. capture) | s / epoch (median of the rest) | last val bound |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nIWAE k={args.eval_k} on {len(xe):,} images ({bs} images x {chunk} samples per call, fp32): "
          f"{secs:.1f} s, {len(xe) / secs:.1f} images/s (NLL {nll:.2f} of the last model); the full 10,000-image "
          f"test set would take ~{10_000 / (len(xe) / secs):.0f} s")


if __name__ == "__main__":
    main()
