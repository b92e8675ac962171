"""What the VAE benchmarks share: binarized MNIST read straight from the IDX files, the reference nets,
FLOP counts, the matmul roofline, and the pythae worker that runs in its own venv.

Imports only numpy, torch and the standard library, so the pythae worker (a different venv, without
vaeflow) can import it too.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
MNIST = REPO.parent / "shared" / "data" / "mnist"  # see shared/data/README.md
PYTHAE_VENV = BENCH / ".venv-pythae"
PYTHAE_VERSION = "0.1.2"

# The architecture of the issue: MLP 784-200-200-50, tanh, Bernoulli decoder.
D, HIDDEN, LATENT = 784, (200, 200), 50
ENC_MACS = D * HIDDEN[0] + HIDDEN[0] * HIDDEN[1] + HIDDEN[1] * 2 * LATENT  # head gives (mu, logvar)
DEC_MACS = LATENT * HIDDEN[1] + HIDDEN[1] * HIDDEN[0] + HIDDEN[0] * D
# Forward is 2 FLOP per multiply-add; backward costs twice the forward (grads wrt inputs and weights).
TRAIN_FLOP_PER_IMAGE = 3 * 2 * (ENC_MACS + DEC_MACS)  # ≈ 2.5 MFLOP
IWAE_FLOP_PER_SAMPLE = 2 * DEC_MACS  # ≈ 0.41 MFLOP: one decoder pass per importance sample


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def load_mnist(split: str = "train", n: int | None = None, seed: int = 0, root: Path = MNIST) -> np.ndarray:
    """(n, 784) float32 in {0, 1}: the first n images, statically binarized with a seeded RNG, so every
    process (and both venvs) builds the identical array."""
    name = {"train": "train-images-idx3-ubyte.gz", "test": "t10k-images-idx3-ubyte.gz"}[split]
    path = Path(root) / name
    if not path.exists():
        sys.exit(f"MNIST not found at {path}; pass --mnist DIR (the folder with the IDX .gz files)")
    with gzip.open(path) as f:
        raw = f.read()
    magic, count, rows, cols = np.frombuffer(raw[:16], ">u4")
    if magic != 0x803 or rows * cols != D:
        sys.exit(f"{path} is not an MNIST IDX image file")
    pixels = np.frombuffer(raw, np.uint8, offset=16).reshape(count, D)[:n]
    u = np.random.default_rng(seed).random(pixels.shape, dtype=np.float32)
    return (u < pixels / np.float32(255.0)).astype(np.float32)


def mlp(sizes: list[int], last_act: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_act:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class PlainVAE(nn.Module):
    """The hand-written reference: the same layers as vaeflow's MLP VAE, the loss in four lines."""

    def __init__(self):
        super().__init__()
        self.enc = mlp([D, *HIDDEN, 2 * LATENT])
        self.dec = mlp([LATENT, *HIDDEN[::-1], D])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image negative ELBO (nats)."""
        mu, logvar = self.enc(x).chunk(2, -1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        rec = nn.functional.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(-1)
        return rec + 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def vaeflow_to_plain(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """vaeflow VAE state_dict (mlp arch) -> PlainVAE state_dict: the same tensors under other names."""
    names = {"encoder_trunk.1": "enc.0", "encoder_trunk.3": "enc.2", "enc_head": "enc.4",
             "decoder.0": "dec.0", "decoder.2": "dec.2", "decoder.4": "dec.4"}
    return {f"{names[k.rsplit('.', 1)[0]]}.{k.rsplit('.', 1)[1]}": v for k, v in state.items()}


def gemm_gflops(m: int, k: int, n: int, seconds: float = 0.3) -> float:
    """fp32 GFLOP/s of an (m×k)@(k×n) matmul, repeated for about `seconds`."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b  # warm-up: thread pool, packing buffers
    reps, t0 = 0, time.perf_counter()
    while (dt := time.perf_counter() - t0) < seconds or reps < 2:
        a @ b
        reps += 1
    return 2 * m * k * n * reps / dt / 1e9


def roofline() -> dict[str, float]:
    """The two matmul rates the issue quotes: a large square GEMM and the model's first-layer GEMM."""
    return {"matmul_gflops": gemm_gflops(2048, 2048, 2048), "model_gemm_gflops": gemm_gflops(100, D, HIDDEN[0])}


# ------------------------------------------------------------------------------------------- pythae


def ensure_pythae_venv() -> Path:
    """bench/.venv-pythae with pythae 0.1.2 and the running torch release (the CPU wheel where that is
    what this machine has), so pythae's own pins never touch the project's venv."""
    py = PYTHAE_VENV / "bin" / "python"
    probe = [str(py), "-c", "import importlib.metadata as m, pythae.pipelines, torch; "
             f"assert m.version('pythae') == '{PYTHAE_VERSION}'"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    print(f"creating {PYTHAE_VENV} (pythae {PYTHAE_VERSION}); once only", file=sys.stderr)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(PYTHAE_VENV)], check=True)
    torch_release = torch.__version__.split("+")[0]
    # torch first, pinned to this release: otherwise pythae's bare `torch` requirement could pull another build.
    for spec in ([f"torch=={torch_release}"], [f"pythae=={PYTHAE_VERSION}"]):
        subprocess.run([str(py), "-m", "pip", "install", "-q", *spec], check=True)
    subprocess.run(probe, check=True)
    return py


class PythaeWorker:
    """A long-lived process in the pythae venv (bench/pythae_worker.py) that answers one JSON request per
    line, so its runs interleave with ours in one benchmark run."""

    def __init__(self, threads: int):
        py = ensure_pythae_venv()
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(BENCH)}
        self.proc = subprocess.Popen([str(py), str(BENCH / "pythae_worker.py"), str(threads)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)

    def __call__(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"pythae worker exited (code {self.proc.wait()}); rerun it by hand: "
                               f"{PYTHAE_VENV}/bin/python bench/pythae_worker.py")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"pythae worker: {reply['error']}")
        return reply

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
