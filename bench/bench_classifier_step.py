"""LeNet on one thread: the mean-teacher step and the LeNet-VAE epoch against a bare loop and the roofline.

    cd bench && OMP_NUM_THREADS=1 python bench_classifier_step.py [--steps 10 --repeats 7 --vae-images 2048]

Issue 23 item 3. The classifier is the digit presets' (configs/mnist_usps.yaml): LeNet trunk with per-layer
BatchNorm (layer_bn), feature BN, standardisation, the presets' augmentation, batch 64, mean teacher.
Systems, interleaved in blocks (A B C A B C ..., rotating who goes first) on the same batches:
  - bare eager loop: the same nn.Module (NCHW), the three passes and the EMA written out inline;
  - vaeflow before: MeanTeacher.update as it was (NCHW trunk, per-parameter EMA loop, F.affine_grid), by
    switching LeNetTrunk.channels_last off and patching the old ema_update and affine grid back in;
  - vaeflow after: MeanTeacher.update as it is (channels-last trunk, foreach EMA, broadcast affine grid);
  - vaeflow after: since bdf8920 with the Algorithm base's fused Adam (vaeflow/training/algorithms.py);
  - after, foreach Adam: the same with torch's default Adam, as before bdf8920 (sizes fused Adam's share);
    "vaeflow before" uses that Adam too.
The VAE part times train_vae for one epoch of --vae-images grey images (dynamically binarised, as the presets'
Bernoulli VAE), batch 128, before (NCHW) and after (channels-last), against a bare loop over the same model.
The roofline: FLOPs of a step counted analytically (multiply-adds of every conv / linear layer at its
shapes, forward, and backward for weights and for inputs that need a gradient), against the best fp32
2048² matmul rate measured between the blocks, both in CPU time. Ratios are medians of within-repeat
ratios (the machine is shared), in wall time and in CPU time (process_time: steadier under others' load).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
from common import median  # noqa: E402

from vaeflow.config import load_config  # noqa: E402
from vaeflow.models import lenet  # noqa: E402
from vaeflow.models.classifier import classifier_from_vae  # noqa: E402
from vaeflow.models.vae import VAE  # noqa: E402
from vaeflow.training import mean_teacher as mt  # noqa: E402
from vaeflow.training.algorithms import build_algorithm  # noqa: E402
from vaeflow.training import augment as aug  # noqa: E402
from vaeflow.training.augment import augment  # noqa: E402
from vaeflow.training.vae_trainer import TrainSettings, train_vae  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def old_ema_update(teacher, student, ema, buffers=False):  # the per-parameter loop before the foreach change
    with torch.no_grad():
        for t, s in zip(teacher.parameters(), student.parameters()):
            t.mul_(ema).add_(s.detach(), alpha=1 - ema)


def old_affine_grid(theta, size):  # augment's grid before: torch's batched matmul
    return F.affine_grid(theta, [len(theta), 1, *size], align_corners=False)


def layout(new: bool) -> None:
    """Switch every change of issue 23 item 3 on (new) or off (the code path before it)."""
    lenet.LeNetTrunk.channels_last = lenet.LeNetDecoder.channels_last = new  # and the decoder's last layer
    mt.ema_update = NEW_EMA if new else old_ema_update
    aug.affine_grid = NEW_GRID if new else old_affine_grid


NEW_EMA, NEW_GRID = mt.ema_update, aug.affine_grid


def count_flops(fn) -> float:
    """FLOPs of one call of `fn`: 2 per multiply-add of every Conv2d / ConvTranspose2d / Linear forward, and
    in backward 2 per multiply-add for the weight gradient plus 2 more when the layer's input needs one."""
    total = [0.0]

    def hook(m, inputs, out):
        x = inputs[0]
        if isinstance(m, nn.Linear):
            mac = out.numel() * m.in_features
        elif isinstance(m, nn.ConvTranspose2d):
            mac = x.numel() * m.out_channels * math.prod(m.kernel_size) // m.groups
        else:
            mac = out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)
        total[0] += 2 * mac
        if out.requires_grad:
            total[0] += 2 * mac * (1 + int(x.requires_grad))

    handles = [nn.modules.module.register_module_forward_hook(
        lambda m, i, o: hook(m, i, o) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) else None)]
    try:
        fn()
    finally:
        for h in handles:
            h.remove()
    return total[0]


def peak_gflops(n: int = 2048, tries: int = 3) -> float:
    """Best of `tries` n×n×n fp32 matmuls: the practical FMA roofline of this core (best, since other
    processes only ever slow a try down)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = math.inf
    for _ in range(tries):
        t0 = time.process_time()  # CPU time, as the systems' GFLOP/s
        a @ b
        best = min(best, time.process_time() - t0)
    return 2 * n ** 3 / best / 1e9


# ------------------------------------------------------------------------------------ the classifier step


def make_algo(cfg, fused: bool = True):
    torch.manual_seed(0)
    clf = classifier_from_vae(None, {"input_shape": [1, 28, 28], "arch": "lenet"}, 10, cfg.head_hidden,
                              pretrained=False, backbone="lenet", layer_bn=cfg.layer_bn,
                              standardize=cfg.standardize, feature_bn=cfg.feature_bn)
    algo = build_algorithm("mean_teacher", clf, cfg)
    if not fused:  # torch's default (foreach) Adam, as the Algorithm base had before bdf8920
        algo.opt = torch.optim.Adam(algo.opt.param_groups[0]["params"], lr=cfg.lr, weight_decay=cfg.weight_decay)
    assert algo.opt.defaults["fused"] == (True if fused else None)
    algo.train()
    return algo


def bare_step(clf, teacher, opt, aug, x, y, xu, ema=0.99, thr=0.968, w_cons=3.0, w_bal=0.005):
    """The mean-teacher step written out: no Algorithm, no hooks, the model's own modules."""
    cls = F.cross_entropy(clf(augment(x, aug)), y, label_smoothing=0.1)
    sp = torch.softmax(clf(augment(xu, aug)), 1)
    with torch.no_grad():
        tp = torch.softmax(teacher(augment(xu, aug)), 1)
        conf = (tp.max(1).values >= thr).float()
    avg = sp.mean(0)
    bal = -(0.1 * torch.log(avg + 1e-6) + 0.9 * torch.log(1 - avg + 1e-6)).sum() * conf.mean()
    loss = cls + w_cons * (((sp - tp) ** 2).sum(1) * conf).mean() + w_bal * bal
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        for t, s in zip(teacher.parameters(), clf.parameters()):
            t.mul_(ema).add_(s, alpha=1 - ema)


def classifier_systems(cfg, data, steps):
    x, y, xu = data
    def batches():
        return [(torch.randint(len(x), (64,)), torch.randint(len(xu), (64,))) for _ in range(steps)]
    bare = make_algo(cfg)
    bare_opt = torch.optim.Adam(bare.clf.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    algos = {"vaeflow before": make_algo(cfg, fused=False), "after, foreach Adam": make_algo(cfg, fused=False),
             "vaeflow after": make_algo(cfg)}

    def run_bare(idx):
        layout(False)
        for i, j in idx:
            bare_step(bare.clf, bare.teacher, bare_opt, cfg.augment, x[i], y[i], xu[j])

    def run_algo(name):
        def go(idx):
            layout(name != "vaeflow before")
            for i, j in idx:
                algos[name].update(x[i], y[i], xu[j], 0.5)
        return go

    return batches, {"bare eager loop": run_bare, **{k: run_algo(k) for k in algos}}


# --------------------------------------------------------------------------------------- the VAE epoch


def vae_systems(n_images: int, batch: int = 128):
    g = torch.Generator().manual_seed(0)
    x, x_val = torch.rand(n_images, 1, 28, 28, generator=g), (torch.rand(256, 1, 28, 28, generator=g) > 0.5).float()

    def model():
        torch.manual_seed(0)
        return VAE((1, 28, 28), 32, [500], "bernoulli", "relu", arch="lenet")

    def run_vaeflow(cl):
        def go():
            layout(cl)
            with tempfile.TemporaryDirectory() as tmp:
                train_vae(model(), x, x_val, TrainSettings(epochs=1, batch_size=batch, lr=1e-3, likelihood="bernoulli",
                          levels=256), ckpt_path=Path(tmp) / "p.pt", fingerprint="bench")
        return go

    def run_bare():
        layout(False)
        m = model()
        opt = torch.optim.Adam(m.parameters(), lr=1e-3, fused=True)
        perm = torch.randperm(n_images)
        for s in range(0, n_images, batch):
            xb = torch.bernoulli(x[perm[s:s + batch]])
            loss = -m.elbo(xb)["elbo"].mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.inference_mode():
            m.eval()
            m.elbo(x_val)

    layout(False)  # count on the reference modules (the fast path's custom last layer fires no module hook)
    flops = count_flops(lambda: (-model().elbo(x[:batch])["elbo"].mean()).backward()) / batch
    return flops, {"bare eager loop": run_bare, "vaeflow before": run_vaeflow(False),
                   "vaeflow after": run_vaeflow(True)}


def interleave(systems, repeats, arg=lambda: None, unit=1.0, label="ms", scale=1e3):
    """({name: [(wall, CPU) seconds per unit, one per repeat]}, matmul peaks), blocks rotated so no system
    always goes first. CPU time (process_time) leaves out the time other processes hold the core, so it is
    the steadier measure on a shared machine; wall time is what a user waits."""
    times = {k: [] for k in systems}
    peaks = []
    names = list(systems)
    for fn in systems.values():  # warm-up: oneDNN primitive caches, allocator, lazy imports
        fn(*([] if arg() is None else [arg()[:2]]))
    for r in range(repeats):
        peaks.append(peak_gflops())
        a = arg()
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0, c0 = time.perf_counter(), time.process_time()
            systems[name](*([] if a is None else [a]))
            times[name].append(((time.perf_counter() - t0) / unit, (time.process_time() - c0) / unit))
        last = ", ".join(f"{k} {scale * v[-1][0]:.1f} {label} (CPU {scale * v[-1][1]:.1f})" for k, v in times.items())
        print(f"repeat {r}: matmul {peaks[-1]:.0f} GFLOP/s, {last}", file=sys.stderr)
    return times, peaks


def table(times, peaks, flops, base="vaeflow before", what="ms/step", scale=1e3):
    """Medians, and ratios as medians of within-repeat ratios (>1: faster than the reference)."""
    peak = median(peaks)
    rows = [f"| system | wall {what} | CPU {what} | × {base}, wall | × {base}, CPU | × bare loop, CPU | "
            "GFLOP/s (CPU) | of matmul peak |", "|---|---|---|---|---|---|---|---|"]
    for k, v in times.items():
        def ratio(ref, i):
            return median([a[i] / b[i] for a, b in zip(times[ref], v)])
        wall, cpu = median([t[0] for t in v]), median([t[1] for t in v])
        gf = flops / cpu / 1e9
        rows.append(f"| {k} | {scale * wall:.1f} | {scale * cpu:.1f} | {ratio(base, 0):.2f} | {ratio(base, 1):.2f} | "
                    f"{ratio('bare eager loop', 1):.2f} | {gf:.1f} | {gf / peak:.0%} |")
    rows.append(f"| roofline (FLOPs / matmul peak) | | {scale * flops / peak / 1e9:.1f} | | | | {peak:.1f} | 100% |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="mean-teacher steps per block")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--vae-images", type=int, default=2048, help="images per timed VAE epoch (0: skip the VAE)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-classifier", action="store_true", help="the VAE part only")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    load = os.getloadavg()
    cfg = load_config(REPO / "configs" / "mnist_usps.yaml").adapt
    torch.manual_seed(0)
    data = (torch.rand(4096, 1, 28, 28), torch.randint(0, 10, (4096,)), torch.rand(4096, 1, 28, 28))
    out = [f"torch {torch.__version__}, {a.threads} thread(s), load average at start {load[0]:.1f} / {load[1]:.1f} / "
           f"{load[2]:.1f}.\n"]
    if not a.no_classifier:
        batches, systems = classifier_systems(cfg, data, a.steps)
        algo = make_algo(cfg)
        flops = count_flops(lambda: algo.update(data[0][:64], data[1][:64], data[2][:64], 0.5))
        times, peaks = interleave(systems, a.repeats, batches, unit=a.steps)
        out += [f"Mean-teacher step, LeNet + layer BN, 1×28×28, batch 64 ({a.repeats} interleaved blocks of "
                f"{a.steps} steps; {flops / 1e9:.2f} GFLOP a step):\n", table(times, peaks, flops)]
    if a.vae_images:
        vflops, vsys = vae_systems(a.vae_images)
        vt, vp = interleave(vsys, a.repeats, unit=a.vae_images / 60_000, label="s/60k", scale=1.0)
        out += [f"\nLeNet-VAE epoch, Bernoulli, 32 latents, batch 128, times scaled to 60,000 images ({a.repeats} "
                f"interleaved epochs of {a.vae_images} images + 256 validation images; {vflops / 1e6:.1f} MFLOP a "
                "training image):\n", table(vt, vp, vflops * 60_000, what="s/60k-image epoch", scale=1.0)]
    print("\n".join(out))


if __name__ == "__main__":
    main()
