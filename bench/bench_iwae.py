"""IWAE log-likelihood evaluation: vaeflow's VAE.iwae against pythae 0.1.2's get_nll, same weights, same images.

    .venv/bin/python bench/bench_iwae.py [--ks 500 5000 --n-test 200 --repeats 3 --threads 2]

The MLP VAE 784-200-200-50 (tanh, Bernoulli) is first trained briefly with vaeflow's trainer on
binarized MNIST; its weights go to pythae's VAE (same nets, in bench/.venv-pythae) and both estimate
the mean log p(x) of the same --n-test test images with k importance samples. Repeats interleave the
estimators and report median images/s. Both compute the same IWAE bound, so their means must agree
within Monte-Carlo error; the per-image spread of our repeats gives that error (z below). One image costs
k × 0.41 MFLOP (a decoder pass per sample); the roofline is a large fp32 matmul timed in the same run.
"sample chunks only" is vaeflow's estimator without its CPU row cap (chunk = 250 samples × batch), the
way it ran before this benchmark: it shows what keeping the chunks in cache buys.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from common import machine, median, record  # noqa: E402
from vae_bench import (  # noqa: E402
    IWAE_FLOP_PER_SAMPLE, MNIST, PythaeWorker, load_mnist, plural, roofline, vaeflow_to_plain)

from vaeflow.models.vae import VAE  # noqa: E402
from vaeflow.training.vae_trainer import TrainSettings, train_vae  # noqa: E402


def trained_model(n_train: int, epochs: int, root: Path) -> VAE:
    torch.manual_seed(0)
    x = torch.from_numpy(load_mnist("train", n_train + 1000, root=root))
    model = VAE((1, 28, 28), 50, [200, 200], "bernoulli", "tanh")
    with tempfile.TemporaryDirectory() as tmp:
        res = train_vae(model, x[:n_train], x[n_train:], TrainSettings(epochs=epochs, batch_size=100, lr=1e-3,
                        beta=1.0, warmup_epochs=0, patience=epochs + 1, likelihood="bernoulli", levels=2),
                        ckpt_path=Path(tmp) / "pretrain.pt", fingerprint="bench")
    model.load_state_dict(res.best_state)
    print(f"trained {epochs} epochs on {n_train} images: val -ELBO {res.best_val_nelbo:.1f} nats", file=sys.stderr)
    return model.eval()


@torch.inference_mode()
def vaeflow_iwae(model: VAE, x: torch.Tensor, k: int, batch: int, rows: int) -> tuple[float, np.ndarray]:
    model.CPU_ROWS = rows  # instance attribute: the "sample chunks only" variant lifts the cap
    t0 = time.perf_counter()
    est = torch.cat([model.iwae(x[i:i + batch], k) for i in range(0, len(x), batch)])
    return time.perf_counter() - t0, est.numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[500, 5000])
    ap.add_argument("--n-test", type=int, default=200, help="images at most")
    ap.add_argument("--max-samples", type=int, default=200_000, help="images × k at most (at least 20 images)")
    ap.add_argument("--batch", type=int, default=100, help="images per vaeflow iwae() call")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-images", type=int, default=10_000)
    ap.add_argument("--train-epochs", type=int, default=3)
    ap.add_argument("--mnist", type=Path, default=MNIST)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    if any(k > 100 and k % 100 for k in args.ks):
        ap.error("each k must be below 100 or a multiple of 100: pythae's get_nll draws whole batches of 100")
    torch.set_num_threads(args.threads)
    at_start = machine()
    model = trained_model(args.train_images, args.train_epochs, args.mnist)
    x_np = load_mnist("test", args.n_test, root=args.mnist)
    x = torch.from_numpy(x_np)
    # The first images_for(k) test images: the same sample budget at every k keeps the run to minutes.
    images_for = {k: min(args.n_test, max(20, args.max_samples // k)) for k in args.ks + [10]}
    worker = PythaeWorker(args.threads)
    tmp = tempfile.TemporaryDirectory()
    weights = Path(tmp.name) / "w.pt"
    torch.save(vaeflow_to_plain(model.state_dict()), weights)
    for k, n in images_for.items():
        np.save(Path(tmp.name) / f"x{n}.npy", x_np[:n])
    systems = {
        "vaeflow": lambda k: vaeflow_iwae(model, x[:images_for[k]], k, args.batch, VAE.CPU_ROWS),
        "vaeflow, sample chunks only": lambda k: vaeflow_iwae(model, x[:images_for[k]], k, args.batch, 10**12),
        "pythae get_nll": lambda k: (lambda o: (o["seconds"], o["mean_log_p"]))(
            worker(op="nll", weights=str(weights), x=str(Path(tmp.name) / f"x{images_for[k]}.npy"), k=k)),
    }
    runs = {(s, k): [] for k in args.ks for s in systems}
    roof: dict[str, list[float]] = {}
    names = list(systems)
    try:
        for s in systems.values():  # warm-up: thread pools, allocator, pythae's imports
            s(10)
        for r in range(args.repeats):
            for key, v in roofline().items():
                roof.setdefault(key, []).append(v)
            for k in args.ks:
                for name in names[r % len(names):] + names[:r % len(names)]:
                    runs[name, k].append(systems[name](k))
                    sec, est = runs[name, k][-1]
                    print(f"repeat {r} k={k}: {name:28s} {images_for[k] / sec:8.1f} img/s  "
                          f"mean log p {np.mean(est):.2f}",
                          file=sys.stderr)
    finally:
        worker.close()
        tmp.cleanup()

    matmul = median(roof["matmul_gflops"])
    rows = ["| k | images | estimator | images/s (median) | runs | × pythae (paired) | GFLOP/s | of matmul "
            "| mean log p(x) (nats) |", "|---|---|---|---|---|---|---|---|---|"]
    figures: dict[str, float] = {}
    checks = []
    for k in args.ks:
        n = images_for[k]
        rate = {s: median([n / sec for sec, _ in runs[s, k]]) for s in systems}
        # Speed-up within each repeat (neighbours in time share the machine's load), then the median.
        paired = {s: median([p / q for (q, _), (p, _) in zip(runs[s, k], runs["pythae get_nll", k])]) for s in systems}
        for s in systems:
            gf = rate[s] * k * IWAE_FLOP_PER_SAMPLE / 1e9
            ests = [float(np.mean(e)) for _, e in runs[s, k]]
            each = ", ".join(f"{n / sec:,.1f}" for sec, _ in runs[s, k])
            rows.append(f"| {k} | {n} | {s} | {rate[s]:,.1f} | {each} | "
                        f"{paired[s]:.2f} | {gf:.1f} | {gf / matmul:.1%} | "
                        f"{np.mean(ests):.2f} (runs: {', '.join(f'{e:.2f}' for e in ests)}) |")
        # Monte-Carlo error of one run's mean, from the per-image spread across our independent repeats;
        # pythae's estimator is the same one, so its mean of R runs has the same error as ours.
        ours = np.stack([e for _, e in runs["vaeflow", k]])  # (R, n)
        se_run = math.sqrt(ours.var(0, ddof=1).mean() / n) if len(ours) > 1 else math.nan
        diff = ours.mean() - np.mean([e for _, e in runs["pythae get_nll", k]])
        z = diff / (se_run * math.sqrt(2 / len(ours)))
        sp = paired["vaeflow"]
        checks.append(f"k={k}: vaeflow − pythae = {diff:+.3f} nats, Monte-Carlo s.e. of that difference "
                      f"{se_run * math.sqrt(2 / len(ours)):.3f} (z = {z:+.1f}: "
                      f"{'agree' if abs(z) < 3 else 'DISAGREE'}, |z| < 3 is agreement); speed-up {sp:.2f}× "
                      f"(goal ≥ 3× on CPU: {'met' if sp >= 3 else 'missed'})")
        figures |= {f"vaeflow_k{k}_img_s": rate["vaeflow"], f"pythae_k{k}_img_s": rate["pythae get_nll"],
                    f"speedup_k{k}": paired["vaeflow"], f"z_k{k}": z,
                    f"vaeflow_k{k}_matmul_fraction": rate["vaeflow"] * k * IWAE_FLOP_PER_SAMPLE / 1e9 / matmul}
    figures["matmul_gflops"] = matmul
    per_chunk = max(1, VAE.CPU_ROWS * args.threads // args.batch)
    summary = (f"The first {', '.join(f'{images_for[k]} (k = {k})' for k in args.ks)} binarized MNIST test "
               f"images (at most {args.max_samples:,} samples per image set); vaeflow in batches of {args.batch} "
               f"images (CPU row cap {VAE.CPU_ROWS} per thread → {per_chunk} samples per chunk); pythae's "
               f"get_nll with its default batch_size=100 under torch.no_grad; {plural(args.threads, 'thread')}, "
               f"{args.repeats} interleaved repeats; model trained {args.train_epochs} epochs on "
               f"{args.train_images:,} images. Large fp32 matmul in the same run: {matmul:.0f} GFLOP/s. "
               f"Machine at start: {at_start}.")
    table = "\n".join(rows)
    line = " ".join(f"{key}={v:.3g}" for key, v in figures.items())
    print(summary + "\n\n" + table + "\n\n" + "\n".join(checks))
    print(line)
    if not args.no_record:
        record(f"IWAE NLL evaluation, {plural(args.threads, 'thread')}",
               summary + "\n\n" + table + "\n\n" + "\n".join(f"- {c}" for c in checks)
               + "\n\n`" + line + "`", "python bench/bench_iwae.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
