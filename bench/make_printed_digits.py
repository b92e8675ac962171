"""Printed colour digits of our own making: a domain that no earlier run here has seen, for checking a choice of
method out of sample (bench/cpu_runs.sh wave 21).

The kind of data is Ganin & Lempitsky's synthetic numbers (SynNumbers) and SVHN's crops: a printed digit in
a font, centred, with parts of its neighbours at the sides, in random colours on a random background,
rotated, blurred and noisy. The fonts are the TrueType files of this machine (sorted by path, so a machine
with the same fonts makes the same files); every font serves both splits. Labels are 0-9, balanced in
expectation. Seeded, 32×32×3 uint8, `npz:` layout (train.npz, test.npz with x and y).

usage: python bench/make_printed_digits.py OUT_DIR [--train 20000] [--test 4000] [--seed 0] [--fonts DIR]
       then data.source=npz:OUT_DIR data.channels=3 data.image_size=28 (bench/cpu_runs.sh wave 21).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIZE, CANVAS = 32, 64  # drawn at 64×64, then reduced (anti-aliasing)


def fonts(root: Path) -> list[Path]:
    found = sorted(p for p in root.rglob("*.ttf") if "Math" not in p.name)  # math fonts lack plain digits
    if not found:
        raise SystemExit(f"no .ttf fonts under {root}; pass --fonts DIR")
    return found


def luma(c: np.ndarray) -> float:
    return float(c @ np.array([0.299, 0.587, 0.114]))


def colours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A background and a text colour at least 0.3 apart in luma (legible, either polarity)."""
    while True:
        bg, fg = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        if abs(luma(bg) - luma(fg)) >= 0.3:
            return tuple(int(v * 255) for v in bg), tuple(int(v * 255) for v in fg)


def draw(label: int, font_path: Path, rng: np.random.Generator, cache: dict) -> np.ndarray:
    size = int(rng.integers(34, 48))
    key = (font_path, size)
    if key not in cache:
        cache[key] = ImageFont.truetype(str(font_path), size)
    font = cache[key]
    bg, fg = colours(rng)
    img = Image.new("RGB", (CANVAS, CANVAS), bg)
    pen = ImageDraw.Draw(img)
    dx, dy = rng.integers(-4, 5, 2)
    centre = (CANVAS / 2 + dx, CANVAS / 2 + dy)
    pen.text(centre, str(label), fill=fg, font=font, anchor="mm")
    gap = size * float(rng.uniform(0.55, 0.75))  # neighbours, partly outside the crop (SVHN's crops)
    for side in (-1, 1):
        if rng.random() < 0.5:
            pen.text((centre[0] + side * gap, centre[1]), str(int(rng.integers(0, 10))), fill=fg, font=font,
                     anchor="mm")
    img = img.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR, fillcolor=bg)
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.5))))
    x = np.asarray(img.resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float32)
    x += rng.normal(0, 6.0, x.shape)  # ~0.025 of the range
    return np.clip(x, 0, 255).astype(np.uint8)


def make(n: int, font_list: list[Path], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 10, n)
    which = rng.integers(0, len(font_list), n)
    cache: dict = {}
    x = np.stack([draw(int(label), font_list[f], rng, cache) for label, f in zip(y, which)])
    return x, y.astype(np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--test", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fonts", type=Path, default=Path("/usr/share/fonts"))
    a = ap.parse_args()
    font_list = fonts(a.fonts)
    a.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    for split, n in (("train", a.train), ("test", a.test)):
        x, y = make(n, font_list, rng)
        tmp = a.out / f"{split}.tmp.npz"
        np.savez(tmp, x=x, y=y)
        tmp.replace(a.out / f"{split}.npz")  # whole files only: a killed run leaves no half dataset
    print(f"{a.out}: {a.train} + {a.test} printed digits, {len(font_list)} fonts, seed {a.seed}")


if __name__ == "__main__":
    main()
