"""VAE training throughput: vaeflow's trainer against a bare eager PyTorch loop and pythae 0.1.2.

    .venv/bin/python bench/bench_train.py [--n-train 10000 --n-val 1000 --epochs 2 --repeats 7 --threads 2]

MLP VAE 784-200-200-50 (tanh), Bernoulli decoder, statically binarized MNIST, batch 100, Adam 1e-3.
Every system trains a fresh model for --epochs epochs on the same images with the same threads and
scores the same --n-val validation images after each epoch (vaeflow and pythae do this anyway; the
bare loops do it too so all do the same work). Figures are training images per wall second over the
whole call, so vaeflow's per-epoch checkpoint and pythae's data loader count against them. The bare
loop runs twice: with torch's default Adam (the issue's baseline) and with fused Adam (what vaeflow
uses), so the table separates the optimizer's share from any framework overhead.
Repeats interleave the systems (in a rotating order) and the large-matmul rate, and report medians;
pythae runs in its own venv (bench/.venv-pythae, created on first use) behind a long-lived worker.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from common import machine, median, record  # noqa: E402
from vae_bench import MNIST, TRAIN_FLOP_PER_IMAGE, PlainVAE, PythaeWorker, load_mnist, plural, roofline  # noqa: E402

from vaeflow.models.vae import VAE  # noqa: E402
from vaeflow.training.vae_trainer import TrainSettings, train_vae  # noqa: E402


def eager(x_train: torch.Tensor, x_val: torch.Tensor, epochs: int, bs: int, seed: int, fused: bool = False) -> float:
    """The minimal loop: tensors in memory, batches by index, no per-step host sync; val -ELBO per epoch."""
    torch.manual_seed(seed)
    model = PlainVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused or None)
    n = len(x_train)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n)
        for s in range(0, n, bs):
            loss = model(x_train[perm[s:s + bs]]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.inference_mode():
            val = sum(model(x_val[i:i + 1024]).sum() for i in range(0, len(x_val), 1024)).item() / len(x_val)
    return val


def vaeflow(x_train: torch.Tensor, x_val: torch.Tensor, epochs: int, bs: int, seed: int, **opts) -> float:
    torch.manual_seed(seed)
    model = VAE((1, 28, 28), 50, [200, 200], "bernoulli", "tanh")
    with tempfile.TemporaryDirectory() as tmp:  # a fresh checkpoint path: nothing to resume
        res = train_vae(model, x_train, x_val, TrainSettings(epochs=epochs, batch_size=bs, lr=1e-3, beta=1.0,
                        warmup_epochs=0, patience=epochs + 1, likelihood="bernoulli", levels=2, **opts),
                        ckpt_path=Path(tmp) / "pretrain.pt", fingerprint="bench")
    return res.history[-1]["val_nelbo"]


def timed(fn, *args, **kw) -> tuple[float, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    val = fn(*args, **kw)
    return time.perf_counter() - t0, time.process_time() - c0, val


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--n-val", type=int, default=1_000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mnist", type=Path, default=MNIST)
    ap.add_argument("--no-pythae", action="store_true", help="skip pythae (no venv is created)")
    ap.add_argument("--no-record", action="store_true", help="print only; leave RESULTS.md alone")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    at_start = machine()  # the load average before we add ours
    x = torch.from_numpy(load_mnist("train", args.n_train + args.n_val, root=args.mnist))
    x_train, x_val = x[:args.n_train], x[args.n_train:]
    images = args.epochs * args.n_train

    def local(fn, **kw):
        return lambda n, e, seed: timed(fn, x_train[:n], x_val, e, args.batch_size, seed, **kw)

    systems = {"eager loop": local(eager), "eager loop, fused Adam": local(eager, fused=True),
               "vaeflow": local(vaeflow)}
    worker = None
    if not args.no_pythae:
        worker = PythaeWorker(args.threads)

        def pythae(n: int, e: int, seed: int) -> tuple[float, float, float]:
            o = worker(op="train", n_train=n, n_val=args.n_val, epochs=e, seed=seed)
            return o["seconds"], o["cpu_seconds"], o["val_nelbo"]

        systems["pythae 0.1.2"] = pythae
    runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in systems}
    roof: dict[str, list[float]] = {}
    names = list(systems)
    try:
        for fn in systems.values():  # warm-up, untimed: thread pools, allocator, lazy imports
            fn(5 * args.batch_size, 1, 0)
        for r in range(args.repeats):
            for k, v in roofline().items():
                roof.setdefault(k, []).append(v)
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotate who goes first
                runs[name].append(systems[name](args.n_train, args.epochs, r))
                s, c, val = runs[name][-1]
                print(f"repeat {r}: {name:22s} {images / s:8.0f} img/s  ({s:.1f} s, CPU {c:.1f} s, "
                      f"val -ELBO {val:.1f})",
                      file=sys.stderr)
    finally:
        if worker:
            worker.close()

    matmul = median(roof["matmul_gflops"])
    rate = {k: median([images / s for s, _, _ in v]) for k, v in runs.items()}
    cpu_rate = {k: median([images / c for _, c, _ in v]) for k, v in runs.items()}
    # Ratio to the eager loop within each repeat (neighbours in time share the machine's load), then median.
    def paired_ratio(a: str, b: str) -> float:
        return median([rb[0] / ra[0] for ra, rb in zip(runs[a], runs[b])])

    paired = {k: paired_ratio(k, "eager loop") for k in runs}
    rows = ["| system | images/s (median) | best run | runs | × eager loop (paired) | images per CPU-second "
            "| GFLOP/s | of matmul | val −ELBO after training |", "|---|---|---|---|---|---|---|---|---|"]
    for k, v in runs.items():
        gf = rate[k] * TRAIN_FLOP_PER_IMAGE / 1e9
        rows.append(f"| {k} | {rate[k]:,.0f} | {max(images / s for s, _, _ in v):,.0f} | "
                    f"{', '.join(f'{images / s:,.0f}' for s, _, _ in v)} | "
                    f"{paired[k]:.2f} | {cpu_rate[k]:,.0f} | {gf:.1f} | {gf / matmul:.1%} | "
                    f"{median([val for _, _, val in v]):.1f} |")
    table = "\n".join(rows)
    figures = {"eager_img_s": rate["eager loop"], "vaeflow_img_s": rate["vaeflow"],
               "vaeflow_vs_eager": paired["vaeflow"],
               "vaeflow_vs_eager_cpu": cpu_rate["vaeflow"] / cpu_rate["eager loop"]}
    if "pythae 0.1.2" in rate:
        figures |= {"pythae_img_s": rate["pythae 0.1.2"],
                    "vaeflow_vs_pythae": paired_ratio("vaeflow", "pythae 0.1.2"),
                    "vaeflow_vs_pythae_cpu": cpu_rate["vaeflow"] / cpu_rate["pythae 0.1.2"]}
    figures |= {"matmul_gflops": matmul, "model_gemm_gflops": median(roof["model_gemm_gflops"]),
                "vaeflow_matmul_fraction": rate["vaeflow"] * TRAIN_FLOP_PER_IMAGE / 1e9 / matmul}
    line = " ".join(f"{k}={v:.3g}" if not float(v).is_integer() else f"{k}={v:.0f}"
                    for k, v in figures.items() if math.isfinite(v))
    summary = (f"{args.epochs} epochs × {args.n_train:,} binarized MNIST images (+ {args.n_val:,} validation "
               f"images scored per epoch), batch {args.batch_size}, {plural(args.threads, 'thread')}, {args.repeats} "
               f"interleaved repeats. A training image costs {TRAIN_FLOP_PER_IMAGE / 1e6:.2f} MFLOP; large fp32 "
               f"matmul in the same run: {matmul:.0f} GFLOP/s (model's 100×784×200 GEMM: "
               f"{figures['model_gemm_gflops']:.0f} GFLOP/s). Machine at start: {at_start}.")
    goals = [f"vaeflow vs the eager loop: {paired['vaeflow']:.2f}× (goal ≥ 1.0×: "
             f"{'met' if paired['vaeflow'] >= 1.0 else 'missed'}; stretch ≥ 1.2×: "
             f"{'met' if paired['vaeflow'] >= 1.2 else 'missed'})"]
    if "pythae 0.1.2" in rate:
        v = figures["vaeflow_vs_pythae"]
        goals.append(f"vaeflow vs pythae: {v:.2f}× (goal ≥ 1.4× on CPU: {'met' if v >= 1.4 else 'missed'})")
    goals.append("Ratios are medians of within-repeat ratios; the images-per-CPU-second column is the "
                 "cross-check that is least sensitive to other processes' load.")
    body = summary + "\n\n" + table + "\n\n" + "\n".join(f"- {g}" for g in goals) + "\n\n`" + line + "`"
    print(body)
    if not args.no_record:
        record(f"VAE training throughput, {plural(args.threads, 'thread')}", body,
               "python bench/bench_train.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
