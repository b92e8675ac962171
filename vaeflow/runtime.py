"""Device, threads and seeds: the few global knobs every stage sets the same way."""
from __future__ import annotations

import logging
import os
import random
from contextlib import contextmanager

import numpy as np
import torch

log = logging.getLogger("vaeflow")


def select_device(name: str = "auto") -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        from vaeflow.config import ConfigError  # a params problem: the CLI reports it without a traceback

        raise ConfigError("device: cuda was asked for but torch sees no CUDA device; use device=auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        # TF32 matmuls: ~2x on Ampere+ for fp32 nets, well inside the noise of SGD.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return dev


@contextmanager
def full_fp32():
    """Reported likelihoods are computed without TF32: its 10-bit mantissa perturbs each decoder logit by
    ~1e-3 relative, which summed over 784 pixels moves a per-image log-likelihood by ~0.1 nats."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def bf16_supported(device: torch.device) -> bool:
    """Native bfloat16 matmuls and convolutions: AVX512-BF16 or AMX on CPU (oneDNN's check), Ampere+ on CUDA."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(device: torch.device, precision: str):
    """The training steps' autocast context for adapt.precision: fp32 is none at all; bf16 runs the
    convolutions and linear layers in bfloat16 (weights, optimiser state, BatchNorm statistics and losses stay
    float32). bf16 without native support would be emulated, slower than fp32: refused with the setting named."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    if not bf16_supported(device):
        from vaeflow.config import ConfigError

        raise ConfigError(f"adapt.precision: bf16 needs native bfloat16 on {device.type} (AVX512-BF16/AMX CPUs, "
                          "Ampere+ GPUs) and this one has none; use adapt.precision=fp32")
    return torch.autocast(device.type, dtype=torch.bfloat16)


def import_optimizers() -> None:
    """Import what a process's first torch.optim optimiser imports: its constructor is wrapped by
    torch._disable_dynamo, which imports torch._dynamo on first use (~0.8 s of CPU). A process that waits
    anyway (a worker starting, the CLI while Prefect's server boots) pays it there, not on a training's path."""
    import torch._dynamo  # noqa: F401


def set_threads(n: int) -> None:
    """Threads for torch, BLAS and OpenMP. n=0 leaves the libraries' defaults (all cores). Ray trials pass
    their CPU share so the box is not oversubscribed."""
    if n > 0:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(n)
        os.environ.setdefault("OMP_NUM_THREADS", str(n))
        # numpy's OpenBLAS and scikit-learn's OpenMP keep their own pools (all cores): cap them too, or the
        # GMM fit (BLAS) running beside VAE training (torch) oversubscribes the cores.
        threadpool_limits(n)
    # Denormals in late-training gradients and Adam moments cost up to ~2x on CPU; flushing them to zero
    # changes nothing measurable and stays deterministic.
    torch.set_flush_denormal(True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG a training loop touches, in a form torch.load(weights_only=True) accepts."""
    _, py_state, py_gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": list(py_state),
        "python_gauss": py_gauss,  # None or the cached second normal of random.gauss
        "numpy": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_gauss": [int(np_has_gauss), float(np_gauss)],  # legacy np.random.normal's cached value
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(int(v) for v in state["python"]), state["python_gauss"]))
    has_gauss, gauss = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
