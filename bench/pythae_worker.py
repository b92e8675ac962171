"""pythae's side of the benchmarks; runs in bench/.venv-pythae (see vae_bench.ensure_pythae_venv).

Reads one JSON request per line on stdin, answers one JSON line on stdout:
  {"op": "train", "n_train": N, "n_val": V, "epochs": E, "seed": S}
      -> {"seconds", "cpu_seconds", "val_nelbo"}  for one TrainingPipeline call (fresh model, the same
         nets as ours; the wall and CPU time of the call, then the trained model's mean -ELBO on the V images)
  {"op": "nll", "weights": PATH, "x": PATH, "k": K}
      -> {"seconds", "cpu_seconds", "mean_log_p"}  for get_nll on the images in the .npy file at `x`,
         with the PlainVAE state_dict at `weights` (pythae returns the mean log-likelihood, despite its name)
"""
from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
import traceback

import numpy as np
import torch
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.pipelines import TrainingPipeline
from pythae.trainers import BaseTrainerConfig

from vae_bench import LATENT, PlainVAE, load_mnist


class Encoder(BaseEncoder):
    def __init__(self, net: torch.nn.Module):
        BaseEncoder.__init__(self)
        self.net = net

    def forward(self, x):
        mu, logvar = self.net(x.reshape(x.shape[0], -1)).chunk(2, -1)
        return ModelOutput(embedding=mu, log_covariance=logvar)


class Decoder(BaseDecoder):
    """pythae's Bernoulli decoder outputs probabilities (its 'bce' loss wants them), hence the sigmoid."""

    def __init__(self, net: torch.nn.Module):
        BaseDecoder.__init__(self)
        self.net = net

    def forward(self, z):
        return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).reshape(-1, 1, 28, 28))


def build(state: dict | None = None) -> tuple[VAE, PlainVAE]:
    """pythae's VAE around the nets of a PlainVAE (which shares their parameters)."""
    plain = PlainVAE()
    if state is not None:
        plain.load_state_dict(state)
    cfg = VAEConfig(input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce")
    return VAE(cfg, encoder=Encoder(plain.enc), decoder=Decoder(plain.dec)), plain


def train(n_train: int, n_val: int, epochs: int, seed: int) -> dict:
    x = load_mnist("train", n_train + n_val, seed).reshape(-1, 1, 28, 28)
    torch.manual_seed(seed)
    model, plain = build()
    with tempfile.TemporaryDirectory() as out:
        cfg = BaseTrainerConfig(output_dir=out, num_epochs=epochs, learning_rate=1e-3, no_cuda=True,
                                per_device_train_batch_size=100, per_device_eval_batch_size=100, seed=seed)
        pipe = TrainingPipeline(model=model, training_config=cfg)
        t0, c0 = time.perf_counter(), time.process_time()
        pipe(train_data=x[:n_train], eval_data=x[n_train:])
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    with torch.no_grad():  # the last epoch's weights, scored like ours: mean -ELBO on the validation images
        val = float(plain(torch.from_numpy(x[n_train:]).reshape(n_val, -1)).mean())
    return {"seconds": seconds, "cpu_seconds": cpu, "val_nelbo": val}


def nll(weights: str, x: str, k: int) -> dict:
    model = build(torch.load(weights, weights_only=True))[0].eval()
    data = torch.from_numpy(np.load(x)).reshape(-1, 1, 28, 28)
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():  # get_nll does not disable autograd itself; without this it is slower still
        # pythae's default batch_size=100; below 100 it would still draw 100 samples, so ask for k then.
        mean_log_p = float(model.get_nll(data, n_samples=k, batch_size=min(100, k)))
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0, "mean_log_p": mean_log_p}


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    logging.disable(logging.INFO)  # pythae logs every epoch to the console
    ops = {"train": train, "nll": nll}
    replies, sys.stdout = sys.stdout, sys.stderr  # anything pythae prints must not corrupt the replies
    for line in sys.stdin:
        req = json.loads(line)
        try:
            reply = ops[req.pop("op")](**req)
        except Exception:  # reported to the parent, which raises it with this traceback
            reply = {"error": traceback.format_exc()}
        print(json.dumps(reply), file=replies, flush=True)


if __name__ == "__main__":
    main()
