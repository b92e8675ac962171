"""An upper bound for unsupervised adaptation: a target whose training labels are both domains'.

The `oracle` variant trains on the target's training labels alone. On a small target (USPS: 7,291 training
images) that bound can sit below what an adaptation method reaches with the source's labels too, so it says
little about the method. This script writes an `npz:` dataset whose training set is the source's and the
target's official training images with their labels, and whose test set is the target's test set, exactly
as the preset prepares them (same resize, same intensities). `oracle` on it (`data.target=npz:OUT`) is
supervised training on every label of both domains, scored on the same target test images as every other
variant: what this network reaches when nothing has to be adapted. (One set of BatchNorm statistics for
the mixed batches; the adaptation variants keep the domains' statistics apart.)

usage: python bench/make_joint_target.py OUT_DIR --params configs/mnist_usps.yaml [--set KEY=VALUE ...]
       then data.target=npz:OUT_DIR with the same preset (bench/cpu_runs.sh wave 16).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vaeflow.config import load_config
from vaeflow.data.datasets import build_domains


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--params", type=Path, required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    source, target = build_domains(load_config(args.params, args.set))
    # train + val of each domain: every official training image (the joint job's prepare splits its own val)
    x = np.concatenate([source.x_train, source.x_val, target.x_train, target.x_val])[:, 0]
    y = np.concatenate([source.y_train, source.y_val, target.y_train, target.y_val])
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "train.npz", x=x, y=y)
    np.savez(args.out / "test.npz", x=target.x_test[:, 0], y=target.y_test)
    print(f"{args.out}: train {len(y)} images ({source.name} + {target.name}), test {len(target.y_test)} "
          f"({target.name}), {x.shape[1]}×{x.shape[2]}")


if __name__ == "__main__":
    main()
