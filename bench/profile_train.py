"""Where the time goes: torch.profiler summaries of vaeflow's training loop and of its IWAE estimator.

    .venv/bin/python bench/profile_train.py [--n-train 3000 --iwae-k 500 --iwae-images 100 --threads 2]

Profiles one epoch of train_vae (MLP VAE 784-200-200-50, tanh, Bernoulli, batch 100, binarized MNIST,
including its validation pass and checkpoint) after a warm-up epoch, and one IWAE evaluation. Prints the
top operators by self CPU time and records them in bench/RESULTS.md. The share of time outside
matmuls (addmm/mm) is what separates a run from the matmul roofline.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from common import machine, record  # noqa: E402
from vae_bench import MNIST, load_mnist, plural  # noqa: E402

from vaeflow.models.vae import VAE  # noqa: E402
from vaeflow.training import vae_trainer  # noqa: E402

MATMUL_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear")


def summarize(prof, rows: int) -> tuple[str, float]:
    """Top ops by self CPU time as a markdown table, and the matmul share of the total self time."""
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    mm = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    lines = ["| op | self CPU (ms) | share | calls |", "|---|---|---|---|"]
    for e in events[:rows]:
        t = e.self_cpu_time_total
        lines.append(f"| `{e.key}` | {t / 1e3:.1f} | {t / total:.1%} | {e.count} |")
    return "\n".join(lines), mm / total


def timed_calls(module, names: list[str], sink: dict[str, float]):
    """Wrap module.<name> so each call's wall time adds to sink[name]; returns an undo function."""
    saved = {n: getattr(module, n) for n in names}

    def wrap(n, fn):
        def inner(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                sink[n] = sink.get(n, 0.0) + time.perf_counter() - t0
        return inner

    for n, fn in saved.items():
        setattr(module, n, wrap(n, fn))
    return lambda: [setattr(module, n, fn) for n, fn in saved.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--iwae-k", type=int, default=500)
    ap.add_argument("--iwae-images", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=12, help="ops to list")
    ap.add_argument("--mnist", type=Path, default=MNIST)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    at_start = machine()
    x = torch.from_numpy(load_mnist("train", args.n_train + 1000, root=args.mnist))
    x_train, x_val = x[:args.n_train], x[args.n_train:]
    torch.manual_seed(0)
    model = VAE((1, 28, 28), 50, [200, 200], "bernoulli", "tanh")

    def train(epochs: int, ckpt: Path):
        return vae_trainer.train_vae(model, x_train, x_val, vae_trainer.TrainSettings(epochs=epochs, batch_size=100,
                                     lr=1e-3, beta=1.0, warmup_epochs=0, patience=epochs + 1, likelihood="bernoulli",
                                     levels=2), ckpt_path=ckpt, fingerprint="bench")

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "pretrain.pt"
        train(1, ckpt)  # warm-up epoch; the profiled call resumes from its checkpoint and runs epoch 2
        with profile(activities=[ProfilerActivity.CPU]) as prof_train:
            train(2, ckpt)
        # The trainer's own costs outside the optimisation steps, timed without the profiler.
        split: dict[str, float] = {}
        undo = timed_calls(vae_trainer, ["save_checkpoint", "mean_nelbo"], split)
        t0 = time.perf_counter()
        train(4, ckpt)  # epochs 3 and 4
        total = time.perf_counter() - t0
        undo()
    x_test = torch.from_numpy(load_mnist("test", args.iwae_images, root=args.mnist))
    with torch.inference_mode():
        model.eval().iwae(x_test[:10], 10)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof_iwae:
            model.iwae(x_test, args.iwae_k)
    train_table, train_mm = summarize(prof_train, args.rows)
    iwae_table, iwae_mm = summarize(prof_iwae, args.rows)
    steps = total - sum(split.values())
    split_line = (f"Trainer time split over 2 epochs of {args.n_train:,} images ({total:.2f} s wall): optimisation "
                  f"steps {steps / total:.0%}, validation passes ({len(x_val):,} images) "
                  f"{split['mean_nelbo'] / total:.0%}, checkpoints {split['save_checkpoint'] / total:.0%} "
                  f"({split['save_checkpoint'] / 2 * 1e3:.0f} ms each).")
    body = (f"One epoch of train_vae on {args.n_train:,} images (batch 100, with its validation pass and "
            f"checkpoint), after a warm-up epoch; {plural(args.threads, 'thread')}. Machine at start: {at_start}.\n\n"
            f"{split_line}\n\n"
            f"Training, top ops by self CPU time (matmul share {train_mm:.0%}):\n\n{train_table}\n\n"
            f"IWAE, k = {args.iwae_k}, {args.iwae_images} images in one call (matmul share {iwae_mm:.0%}):"
            f"\n\n{iwae_table}")
    print(body)
    print(f"train_matmul_share={train_mm:.3g} iwae_matmul_share={iwae_mm:.3g} "
          f"train_checkpoint_share={split['save_checkpoint'] / total:.3g}")
    if not args.no_record:
        record("Profile: where the time goes", body, "python bench/profile_train.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
