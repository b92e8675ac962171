"""Peak memory (max RSS) of VAE pretraining and of IWAE evaluation on MNIST, at two sizes each.

    .venv/bin/python bench/bench_memory.py [--train-sizes 10000 60000 --ks 500 5000 --threads 2]

Each measurement is its own process. It loads its data, builds the MLP VAE (784-200-200-50), then resets
the kernel's high-water mark (/proc/self/clear_refs, so imports and data loading do not mask what
follows; a short warm-up run comes before it) and runs one of:
  pretrain  vaeflow's train_vae, 1 epoch over N training images (batch 100), 1,000 validation images
            (the first test images)
  iwae      tasks.pretrain.score, the pipeline's evaluation (ELBO draws + IWAE with k samples), with the
            default eval.batch_size and eval.iwae_chunk, on --iwae-images test images
"Working memory" is peak RSS minus RSS at the reset. It should not grow with N or k: batches are
indexed out of the in-memory set, and IWAE chunks are bounded, so nothing scales with the dataset or k.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from common import machine, record  # noqa: E402
from vae_bench import MNIST, load_mnist, plural  # noqa: E402


def rss_mib() -> tuple[float, float]:
    """(current RSS, peak RSS since the last reset) in MiB."""
    status = Path("/proc/self/status").read_text()
    now, hwm = (int(re.search(rf"{key}:\s+(\d+)", status).group(1)) for key in ("VmRSS", "VmHWM"))
    return now / 1024, max(hwm, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def run_pretrain(model, x_train, x_val) -> None:
    from vaeflow.training.vae_trainer import TrainSettings, train_vae

    with tempfile.TemporaryDirectory() as tmp:
        train_vae(model, x_train, x_val, TrainSettings(epochs=1, batch_size=100, lr=1e-3, beta=1.0, warmup_epochs=0,
                  patience=2, likelihood="bernoulli", levels=2), ckpt_path=Path(tmp) / "pretrain.pt",
                  fingerprint="bench")


def child(what: str, size: int, k: int, iwae_images: int, root: Path) -> dict:
    import gc

    import torch

    from vaeflow.tasks.pretrain import score
    from vaeflow.config import EvalConfig
    from vaeflow.models.vae import VAE

    torch.manual_seed(0)
    model = VAE((1, 28, 28), 50, [200, 200], "bernoulli", "tanh")
    ev = EvalConfig()
    if what == "pretrain":
        x_train = torch.from_numpy(load_mnist("train", size, root=root))
        x_val = torch.from_numpy(load_mnist("test", 1000, root=root))
    else:
        x_test = torch.from_numpy(load_mnist("test", iwae_images, root=root))
    # Warm-up on a few images first, so one-off costs (lazy imports, autograd and oneDNN set-up, allocator
    # pools) are not counted as working memory.
    if what == "pretrain":
        run_pretrain(model, x_train[:500], x_val[:100])
    else:
        score(model, x_test[:10], 10, 10, ev.batch_size)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    start, _ = rss_mib()
    if what == "pretrain":
        run_pretrain(model, x_train, x_val)
    else:
        score(model, x_test, k, min(ev.iwae_chunk, k), ev.batch_size)
    _, peak = rss_mib()
    # The samples per chunk VAE.iwae actually uses: eval.iwae_chunk, capped on a CPU (see VAE.CPU_ROWS).
    chunk = min(ev.iwae_chunk, max(1, VAE.CPU_ROWS * torch.get_num_threads() // ev.batch_size))
    return {"start_mib": start, "peak_mib": peak, "batch": ev.batch_size, "chunk": chunk}


def measure(args: argparse.Namespace, what: str, size: int = 0, k: int = 0) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--size", str(size), "--k", str(k),
           "--iwae-images", str(args.iwae_images), "--mnist", str(args.mnist)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{what} size={size} k={k}: {res}", file=sys.stderr)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-sizes", type=int, nargs=2, default=[10_000, 60_000])
    ap.add_argument("--ks", type=int, nargs=2, default=[500, 5000])
    ap.add_argument("--iwae-images", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mnist", type=Path, default=MNIST)
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--child", choices=["pretrain", "iwae"], help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
        print(json.dumps(child(args.child, args.size, args.k, args.iwae_images, args.mnist)))
        return
    at_start = machine()
    rows = ["| run | data held in memory (MiB) | RSS at start (MiB) | peak RSS (MiB) | working memory (MiB) |",
            "|---|---|---|---|---|"]
    work = {}
    for n in args.train_sizes:
        r = measure(args, "pretrain", size=n)
        work[f"pretrain_{n}"] = r["peak_mib"] - r["start_mib"]
        rows.append(f"| pretrain, 1 epoch, N = {n:,} | {(n + 1000) * 784 * 4 / 2**20:.0f} | {r['start_mib']:.0f} | "
                    f"{r['peak_mib']:.0f} | {work[f'pretrain_{n}']:.1f} |")
    for k in args.ks:
        r = measure(args, "iwae", k=k)
        work[f"iwae_k{k}"] = r["peak_mib"] - r["start_mib"]
        rows.append(f"| IWAE eval, k = {k:,}, {args.iwae_images} images (chunks of {r['chunk']} samples × "
                    f"{r['batch']} images) | "
                    f"{args.iwae_images * 784 * 4 / 2**20:.1f} | {r['start_mib']:.0f} | {r['peak_mib']:.0f} | "
                    f"{work[f'iwae_k{k}']:.1f} |")
    (n1, n2), (k1, k2) = args.train_sizes, args.ks
    line = " ".join(f"{key}_mib={v:.1f}" for key, v in work.items())
    summary = (f"Working memory = peak RSS − RSS once data and model are loaded (high-water mark reset there). "
               f"Training on {n2 / n1:.0f}× the images changes it by "
               f"{work[f'pretrain_{n2}'] - work[f'pretrain_{n1}']:+.1f} "
               f"MiB; {k2 / k1:.0f}× the importance samples changes IWAE's by "
               f"{work[f'iwae_k{k2}'] - work[f'iwae_k{k1}']:+.1f} MiB. {plural(args.threads, 'thread')}. "
               f"Machine at start: {at_start}.")
    table = "\n".join(rows)
    print(summary + "\n\n" + table)
    print(line)
    if not args.no_record:
        record("Peak memory", summary + "\n\n" + table + "\n\n`" + line + "`",
               "python bench/bench_memory.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
