"""IWAE-trained (k = 5) against ELBO-trained VAEs at equal epochs: test NLL by IWAE k = 1000.

    .venv/bin/python bench/bench_objective.py [--n-train 10000 --epochs 10 --seeds 0 1 2 --n-test 1000]

MLP VAE 784-200-200-50 (tanh), Bernoulli decoder, the first --n-train MNIST training images dynamically
binarized every step (vaeflow's train_vae, batch 100, Adam 1e-3, constant lr, no KL warm-up); 1,000
further training images, binarized once, for early stopping (which never triggers at these epochs: the
last epoch is kept if it is the best). Test: the first --n-test official test images, binarized once
with a fixed seed, scored with VAE.iwae at k = --eval-k. Each seed trains both objectives from the same
initialisation; the difference is paired per seed.
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
from common import record  # noqa: E402
from vae_bench import MNIST  # noqa: E402

from vaeflow.data import observe  # noqa: E402
from vaeflow.data.mnist import parse_idx  # noqa: E402
from vaeflow.models.vae import VAE  # noqa: E402
from vaeflow.training.vae_trainer import TrainSettings, train_vae  # noqa: E402


def load(split: str, n: int) -> np.ndarray:
    name = {"train": "train-images-idx3-ubyte.gz", "test": "t10k-images-idx3-ubyte.gz"}[split]
    return (parse_idx(MNIST / name)[:n].reshape(n, 784) / np.float32(255.0)).astype(np.float32)


def run(objective: str, k: int, seed: int, x_train, x_val, x_test, epochs: int, eval_k: int) -> dict:
    torch.manual_seed(seed)
    model = VAE((1, 28, 28), 50, [200, 200], "bernoulli", "tanh")
    with tempfile.TemporaryDirectory() as tmp:
        res = train_vae(model, x_train, x_val, TrainSettings(epochs=epochs, batch_size=100, lr=1e-3, beta=1.0,
                        warmup_epochs=0, patience=epochs + 1, likelihood="bernoulli", levels=256, objective=objective,
                        k=k), ckpt_path=Path(tmp) / "p.pt", fingerprint="bench")
    model.load_state_dict(res.best_state)
    model.eval()
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(1000 + seed)
    with torch.inference_mode():
        nll = torch.cat([-model.iwae(x_test[i:i + 100], eval_k, 250, generator=g) for i in range(0, len(x_test), 100)])
        nelbo = torch.cat([-model.elbo(x_test[i:i + 500])["elbo"] for i in range(0, len(x_test), 500)])
    return {"nll": nll.mean().item(), "se": (nll.std() / len(nll) ** 0.5).item(), "nelbo": nelbo.mean().item(),
            "train_s": res.seconds, "eval_s": time.perf_counter() - t0, "best_epoch": res.best_epoch,
            "per_image": nll}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--n-test", type=int, default=1_000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--eval-k", type=int, default=1000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    raw = load("train", args.n_train + 1000)
    x_train = torch.from_numpy(raw[:args.n_train])
    x_val = torch.from_numpy(observe(raw[args.n_train:], "bernoulli", 256, np.random.default_rng(1)))
    x_test = torch.from_numpy(observe(load("test", args.n_test), "bernoulli", 256, np.random.default_rng(2)))
    rows, diffs = [], []
    for seed in args.seeds:
        out = {}
        for name, obj, k in (("ELBO", "elbo", 1), (f"IWAE k={args.k}", "iwae", args.k)):
            out[name] = run(obj, k, seed, x_train, x_val, x_test, args.epochs, args.eval_k)
            r = out[name]
            print(f"seed {seed} {name}: NLL {r['nll']:.2f} ± {r['se']:.2f}, -ELBO {r['nelbo']:.2f}, "
                  f"train {r['train_s']:.0f} s, eval {r['eval_s']:.0f} s", file=sys.stderr, flush=True)
            rows.append(f"| {seed} | {name} | {r['nll']:.2f} ± {r['se']:.2f} | {r['nelbo']:.2f} | "
                        f"{r['nelbo'] - r['nll']:.2f} | {r['best_epoch'] + 1} | {r['train_s']:.0f} |")
        d = out[f"IWAE k={args.k}"]["per_image"] - out["ELBO"]["per_image"]
        diffs.append((d.mean().item(), (d.std() / len(d) ** 0.5).item()))
    mean_d = statistics.mean(m for m, _ in diffs)
    table = "\n".join(["| seed | objective | test NLL (IWAE k=%d) ± s.e. | test −ELBO | gap | best epoch | train s |"
                       % args.eval_k, "|---|---|---|---|---|---|---|", *rows])
    body = (f"{args.epochs} epochs, both objectives, on the first {args.n_train:,} MNIST training images (dynamic "
            f"binarization), MLP 784-200-200-50 tanh, batch 100, Adam 1e-3, {args.threads} thread(s); test: the first "
            f"{args.n_test:,} official test images binarized once, IWAE k = {args.eval_k}.\n\n{table}\n\n"
            f"Paired difference IWAE-trained − ELBO-trained test NLL per seed (over the same test images): "
            + ", ".join(f"{m:+.2f} ± {s:.2f}" for m, s in diffs)
            + f"; mean {mean_d:+.2f} nats (negative: the IWAE-trained model is better).")
    print(body)
    if not args.no_record:
        record("IWAE vs ELBO training at equal epochs (CPU)", body, "python bench/bench_objective.py "
               + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
