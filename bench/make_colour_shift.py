"""A 3-channel target of our own making, for checking that the adaptation methods hold on colour data.

The issue's held-out colour target is kept unnamed, so nothing here is tuned to it; this pair only has the
same *kind* of shift: grey source digits (MNIST, read as 3 channels by data.channels=3) against a target
of other writers' digits (USPS, 16×16 resized to 28×28) blended into random colour textures the way
MNIST-M is made (Ganin et al. 2016: x = |texture − digit|, per channel), plus pixel noise. The textures are
smooth random colour fields (a random 4×4 RGB grid, upsampled bilinearly) with a random stroke colour
scale, so colour, contrast and polarity all change from image to image. Seeded, so every run makes the
same files.

usage: python bench/make_colour_shift.py OUT_DIR [--data ../shared/data] [--seed 0]
       then data.target=npz:OUT_DIR data.channels=3 (bench/cpu_runs.sh's colour job).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vaeflow.data.usps import parse_esl


def read_usps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """ESL's zip.{train,test}.gz through vaeflow's own parser: N×16×16 grey values in [0, 1], labels."""
    values, y = parse_esl(path)
    return ((values.astype(np.float32).reshape(-1, 16, 16) + 1) / 2).clip(0, 1), y


def colour(digits: np.ndarray, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """N×16×16 digits in [0, 1] → N×size×size×3 uint8, blended into random colour textures."""
    n = len(digits)
    d = F.interpolate(torch.from_numpy(digits)[:, None], size=(size, size), mode="bilinear", align_corners=False)
    grid = torch.from_numpy(rng.uniform(0, 1, size=(n, 3, 4, 4)).astype(np.float32))
    texture = F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)
    stroke = torch.from_numpy(rng.uniform(0.5, 1.0, size=(n, 3, 1, 1)).astype(np.float32))
    x = (texture - d * stroke).abs()                       # MNIST-M's blend, with a random stroke colour
    x = x + torch.from_numpy(rng.normal(0, 0.04, size=x.shape).astype(np.float32))
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        digits, y = read_usps(args.data / "usps" / f"zip.{split}.gz")
        np.savez_compressed(args.out / f"{split}.npz", x=colour(digits, rng), y=y)
        print(f"{args.out / split}.npz: {len(y)} images, 28×28×3")


if __name__ == "__main__":
    main()
