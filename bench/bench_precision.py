"""adapt.precision: bf16 autocast against fp32, the same training steps through the real loop (adapt_trainer.fit).

For each backbone and method: ms a step in both precisions, interleaved in blocks (rotating who goes first;
the ratio is the median of within-block ratios, in CPU time, which leaves out other processes' share of
the core), and how far the two runs' losses drift apart over the same steps from the same start.

    OMP_NUM_THREADS=1 python bench/bench_precision.py --steps 20 --repeats 5
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vaeflow.config import load_config
from vaeflow.models.classifier import classifier_from_vae
from vaeflow.training.adapt_trainer import fit
from vaeflow.training.algorithms import build_algorithm

REPO = Path(__file__).resolve().parents[1]


def make(cfg, backbone: str, method: str, channels: int = 1, size: int = 28):
    torch.manual_seed(0)
    clf = classifier_from_vae(None, {"input_shape": [channels, size, size], "arch": "lenet"}, 10,
                              256 if backbone == "convnet" else cfg.head_hidden, pretrained=False,
                              backbone=backbone, layer_bn=cfg.layer_bn, standardize=cfg.standardize,
                              feature_bn=cfg.feature_bn, domain_hidden=cfg.dann.domain_hidden)
    return build_algorithm(method, clf, cfg)


def run(cfg, backbone, method, precision, data, steps, ckdir):
    algo = make(cfg, backbone, method, data[0].shape[1], data[0].shape[2])
    x, y, xu = data
    torch.manual_seed(1)
    t0, c0 = time.perf_counter(), time.process_time()
    res = fit(algo, x, y, xu if algo.uses_unlabelled else None, epochs=1, steps_per_epoch=steps,
              batch_size=cfg.batch_size, ckpt_path=Path(ckdir) / f"{backbone}_{method}_{precision}.pt",
              fingerprint=f"{time.time()}", precision=precision)
    return (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps, res.history[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backbones", default="lenet,convnet")
    ap.add_argument("--methods", default="mean_teacher,dann,fixmatch")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg = load_config(REPO / "configs" / "mnist_usps.yaml").adapt
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(4096, 1, 28, 28, generator=g), torch.randint(0, 10, (4096,), generator=g),
            torch.rand(4096, 1, 28, 28, generator=g))
    load = os.getloadavg()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average at start {load[0]:.1f}; "
          f"{a.repeats} interleaved blocks of {a.steps} steps, batch {cfg.batch_size}, 1×28×28\n")
    print("| backbone | method | fp32 ms/step (CPU) | bf16 ms/step (CPU) | × fp32 (median, CPU) | cls_loss fp32 / bf16 after the block |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as ckdir:
        for bb in a.backbones.split(","):
            for m in a.methods.split(","):
                t = {"fp32": [], "bf16": []}
                loss = {}
                run(cfg, bb, m, "bf16", data, 2, ckdir)  # warm-up: oneDNN's bf16 primitives
                for r in range(a.repeats):
                    for p in (["fp32", "bf16"] if r % 2 == 0 else ["bf16", "fp32"]):
                        wall, cpu, row = run(cfg, bb, m, p, data, a.steps, ckdir)
                        t[p].append(cpu)
                        loss[p] = row["cls_loss"]
                ratio = statistics.median(f / b for f, b in zip(t["fp32"], t["bf16"]))
                print(f"| {bb} | {m} | {1e3 * statistics.median(t['fp32']):.1f} | {1e3 * statistics.median(t['bf16']):.1f} "
                      f"| **{ratio:.2f}×** | {loss['fp32']:.4f} / {loss['bf16']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
