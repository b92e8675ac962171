"""Synthetic datasets of the shapes a user may bring, for bench/generality.sh: 1 or 3 channels, `npz:` (uint8 or
float) and `folder:` (PNG, grey and RGB files mixed, a class missing from the test split), 2 to 30 classes,
16×16 to 64×64, square or not, balanced or not, a few dozen images to a thousand. Each class is a Gaussian
blob at its own height, each target a brighter, shifted version: learnable, so a crash or a constant
prediction stands out, and nothing in them is a digit. Seeded: the same files every time.

usage: python bench/make_odd_datasets.py OUT_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

rng = np.random.default_rng(0)


def blobs(n, k, h, w, c, shift=0.0, imbalance=False, as_float=False):
    p = np.arange(1, k + 1, dtype=float) if imbalance else np.ones(k)
    y = rng.choice(k, size=n, p=p / p.sum())
    yy, xx = np.mgrid[0:h, 0:w]
    x = np.zeros((n, h, w, c), np.float32)
    for i in range(n):
        cy, cx, r = (y[i] + 1) * h / (k + 1), w / 2 + rng.normal() * 2, 2 + y[i] % 3
        m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        for ch in range(c):
            x[i, :, :, ch] = np.clip(m * (0.6 + 0.4 * ((ch + y[i]) % 2)) + shift * (ch + 1) / c
                                     + rng.normal(0, .05, (h, w)), 0, 1)
    x = x[..., 0] if c == 1 else x
    return (x if as_float else (x * 255).astype(np.uint8)), y


def npz(root, name, n, k, h, w, c, **kw):
    (root / name).mkdir(parents=True, exist_ok=True)
    for split, m in (("train", n), ("test", max(40, n // 3))):
        x, y = blobs(m, k, h, w, c, **kw)
        np.savez(root / name / f"{split}.npz", x=x, y=y)


def folder(root, name, n, k, h, w, c, drop_test_class=None, **kw):
    for split, m in (("train", n), ("test", max(40, n // 3))):
        x, y = blobs(m, k, h, w, c, **kw)
        for i in range(m):
            if split == "test" and y[i] == drop_test_class:
                continue
            d = root / name / split / f"c{y[i]}"
            d.mkdir(parents=True, exist_ok=True)
            img = Image.fromarray(x[i])
            (img.convert("L") if i % 2 else img).save(d / f"{i}.png")  # grey and RGB files in one folder


def main(root: Path) -> None:
    npz(root, "rgb_src", 400, 4, 32, 32, 3)
    npz(root, "rgb_tgt", 400, 4, 32, 32, 3, shift=0.3, imbalance=True, as_float=True)
    folder(root, "fold_src", 150, 3, 24, 24, 3)
    folder(root, "fold_tgt", 150, 3, 24, 24, 3, shift=0.2, drop_test_class=2)
    npz(root, "tiny_src", 30, 3, 16, 16, 1)
    npz(root, "tiny_tgt", 30, 3, 16, 16, 1, shift=0.2)
    npz(root, "two_src", 200, 2, 28, 28, 1)
    npz(root, "two_tgt", 200, 2, 28, 28, 1, shift=0.2)
    npz(root, "nsq_src", 200, 3, 20, 30, 1)
    npz(root, "nsq_tgt", 200, 3, 20, 30, 1, shift=0.2)
    npz(root, "many_src", 900, 30, 64, 64, 1)
    npz(root, "many_tgt", 900, 30, 64, 64, 1, shift=0.2)
    npz(root, "small_tgt", 200, 4, 20, 20, 3, shift=0.1)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
