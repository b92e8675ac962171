"""One domain's labelled splits, and its on-disk form (a checksummed .npz, no pickles)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaeflow.io import ArtifactError, load_npz, save_npz

SPLITS = ("train", "val", "test")
_ARRAYS = tuple(f"{p}_{s}" for s in SPLITS for p in ("x", "y"))
_OBS = ("obs_val", "obs_test")
_SCALARS = ("levels", "name", "n_classes")


class DataError(ValueError):
    """A dataset that cannot be built from the config (unknown, not available, too small)."""


@dataclass(frozen=True)
class DomainData:
    """Raw intensities (float32 N×C×H×W on the grid k/(levels-1)) and int64 labels per split."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    levels: int
    name: str
    n_classes: int

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def counts(self) -> dict[str, int]:
        return {s: int(len(self.split(s)[1])) for s in SPLITS}


def problems(d: DomainData, obs: dict[str, np.ndarray] | None = None) -> list[str]:
    """Everything inconsistent about a domain, as readable lines; empty when it is sound."""
    out = []
    if d.levels < 2 or d.n_classes < 1:
        out.append(f"levels={d.levels}, n_classes={d.n_classes} must be ≥2 and ≥1")
        return out
    shape = d.x_train.shape[1:]
    for s in SPLITS:
        x, y = d.split(s)
        if x.dtype != np.float32 or x.ndim != 4:
            out.append(f"x_{s}: expected float32 N×C×H×W, got {x.dtype} of shape {x.shape}")
            continue
        if y.dtype != np.int64 or y.ndim != 1:
            out.append(f"y_{s}: expected 1-d int64 labels, got {y.dtype} of shape {y.shape}")
            continue
        if len(x) != len(y):
            out.append(f"x_{s} has {len(x)} images but y_{s} has {len(y)} labels")
        if x.shape[1:] != shape:
            out.append(f"x_{s} images are {x.shape[1:]}, x_train images are {shape}")
        if len(y) and (y.min() < 0 or y.max() >= d.n_classes):
            out.append(f"y_{s}: labels span {y.min()}..{y.max()}, outside 0..{d.n_classes - 1}")
        if x.size and not all(_in_unit(b) for b in _blocks(x)):
            out.append(f"x_{s}: intensities outside [0,1] or not finite")
        elif x.size and not all(_on_grid(b, d.levels) for b in _blocks(x)):
            out.append(f"x_{s}: intensities are not on the {d.levels}-level grid")
    for k, v in (obs or {}).items():
        ref = getattr(d, "x_" + k.removeprefix("obs_"))
        if v.shape != ref.shape or v.dtype != np.float32:
            out.append(f"{k}: expected float32 of shape {ref.shape}, got {v.dtype} of shape {v.shape}")
        elif v.size and not all(_in_unit(b) for b in _blocks(v)):
            out.append(f"{k}: observations outside [0,1] or not finite")
    return out


# The checks run on blocks of images: on whole arrays, the grid check's temporaries (x·(levels−1), its
# rounding, allclose's differences) were each as large as the split, several times the data at the peak of
# prepare and of every stage that loads prepared data (bench/RESULTS_memory.md). Every check is element-wise,
# so the blockwise answer is the same.
_BLOCK = 512  # images: a few MB per temporary at 3×32×32


def _blocks(x: np.ndarray):
    return (x[i:i + _BLOCK] for i in range(0, len(x), _BLOCK))


def _in_unit(b: np.ndarray) -> bool:
    return bool(np.isfinite(b).all() and b.min() >= 0 and b.max() <= 1)


def _on_grid(b: np.ndarray, levels: int) -> bool:
    scaled = b * (levels - 1)
    return bool(np.allclose(scaled, np.rint(scaled), atol=1e-4))


def save_domain(path: str | Path, d: DomainData, obs_val: np.ndarray, obs_test: np.ndarray) -> None:
    """Write a domain and its fixed val/test observations, refusing to write anything inconsistent."""
    obs = {"obs_val": np.asarray(obs_val), "obs_test": np.asarray(obs_test)}
    bad = problems(d, obs)
    if bad:
        raise DataError(f"refusing to write {path}: " + "; ".join(bad))
    arrays = {k: getattr(d, k) for k in _ARRAYS}
    save_npz(path, **arrays, **obs, levels=np.array(d.levels, dtype=np.int64),
             name=np.array(d.name), n_classes=np.array(d.n_classes, dtype=np.int64))


def load_domain(path: str | Path) -> tuple[DomainData, dict[str, np.ndarray]]:
    """Read and validate a domain; returns it and {'obs_val', 'obs_test'}. Raises ArtifactError."""
    z = load_npz(path, required=_ARRAYS + _OBS + _SCALARS)
    for k in _SCALARS:
        if z[k].ndim != 0:
            raise ArtifactError(f"{path}: '{k}' should be a scalar, got shape {z[k].shape}")
    try:
        levels, n_classes, name = int(z["levels"]), int(z["n_classes"]), str(z["name"].item())
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"{path}: unreadable metadata ({e})") from None
    d = DomainData(**{k: z[k] for k in _ARRAYS}, levels=levels, name=name, n_classes=n_classes)
    obs = {k: z[k] for k in _OBS}
    bad = problems(d, obs)
    if bad:
        raise ArtifactError(f"{path}: inconsistent domain data: " + "; ".join(bad) + ". Re-run prepare.")
    return d, obs
