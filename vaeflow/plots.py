"""Figures for the report. Matplotlib's Agg backend, written atomically through vaeflow.io."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from vaeflow.io import save_figure


def pyplot():  # also used by vaeflow.tuning.report
    """pyplot on the Agg backend, imported on first use: ~1 s that a process drawing nothing (a Ray trial,
    a stage reading this module's neighbours) should not pay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _to_hwc(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 3:  # C,H,W
        img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
    return np.clip(img, 0, 1)


def image_grid(rows: Sequence[tuple[str, np.ndarray]], path: Path, title: str = "", ncol: int = 16) -> None:
    """One labelled row of images per entry; images are N×C×H×W in [0,1]."""
    plt = pyplot()
    fig, axes = plt.subplots(len(rows), ncol, figsize=(ncol * 0.6, len(rows) * 0.7 + 0.4), squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(ncol):
            ax = axes[r][c]
            ax.set_xticks([]), ax.set_yticks([])
            if c < len(imgs):
                ax.imshow(_to_hwc(imgs[c]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    plt.close(fig)


def latent_scatter(z2: np.ndarray, labels: np.ndarray, domains: np.ndarray, path: Path, title: str) -> None:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.4))
    sc = a.scatter(z2[:, 0], z2[:, 1], c=labels, cmap="tab10", s=6, alpha=0.8)
    a.legend(*sc.legend_elements(), fontsize=6, title="class", loc="best", markerscale=0.7)
    a.set_title("coloured by class")
    for d, (name, col) in enumerate([("source", "tab:blue"), ("target", "tab:orange")]):
        m = domains == d
        b.scatter(z2[m, 0], z2[m, 1], c=col, s=6, alpha=0.6, label=name)
    b.legend(fontsize=8)
    b.set_title("coloured by domain")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    plt.close(fig)


def curves(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: Path, xlabel: str, ylabel: str,
           title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, (x, y) in series.items():
        ax.plot(x, y, label=name)
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel), ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
    plt.close(fig)


def bars(values: dict[str, float], path: Path, ylabel: str, title: str, fmt: str = "{:.3f}") -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    names = list(values)
    ax.bar(names, [values[n] for n in names], color="tab:blue")
    for i, n in enumerate(names):
        ax.text(i, values[n], fmt.format(values[n]), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(ylabel), ax.set_title(title)
    ax.tick_params(axis="x", labelsize=8)
    save_figure(fig, path)
    plt.close(fig)


def image_rows(rows: Sequence[tuple[str, np.ndarray]], path: Path, title: str = "", ncol: int = 16,
               scale: float = 0.45) -> None:
    """What image_grid draws (one labelled row per entry, N×C×H×W in [0,1]), as ONE image on one Axes:
    tiles are pasted into an array with a 1-pixel grey gap. Matplotlib spends ~50 ms per Axes, so a
    10×16 grid of Axes took seconds; this takes one imshow."""
    first = np.asarray(rows[0][1])
    c, h, w = first.shape[1:]
    grid = np.full((len(rows) * (h + 1) - 1, ncol * (w + 1) - 1, 3), 0.5, dtype=np.float32)
    for r, (_, imgs) in enumerate(rows):
        for j, img in enumerate(np.asarray(imgs)[:ncol]):
            tile = _to_hwc(img)
            grid[r * (h + 1):r * (h + 1) + h, j * (w + 1):j * (w + 1) + w] = tile[..., None] if tile.ndim == 2 else tile
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(ncol * scale + 1.2, len(rows) * scale * h / w + 0.6))
    ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([r * (h + 1) + h / 2 for r in range(len(rows))], [label for label, _ in rows], fontsize=7)
    ax.tick_params(length=0)
    if title:
        ax.set_title(title, fontsize=9)
    save_figure(fig, path)
    plt.close(fig)
