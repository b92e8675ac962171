"""The sklearn digits: 1797 8×8 images with integer intensities 0..16 (17 levels), ships with sklearn."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

DIGITS_LEVELS = 17


@dataclass(frozen=True)
class Pool:
    """A whole dataset (or a share of one) before the train/val/test split.

    x: float32 N×1×H×W on the grid k/(levels-1); y: int64; index: positions in the original dataset,
    kept so that disjointness between domains can be checked, not only asserted; is_test: the dataset's
    official test images (None: the dataset has no official split, e.g. sklearn's digits)."""
    x: np.ndarray
    y: np.ndarray
    index: np.ndarray
    levels: int
    n_classes: int
    is_test: np.ndarray | None = None

    def take(self, idx: np.ndarray) -> Pool:
        t = None if self.is_test is None else self.is_test[idx]
        return Pool(self.x[idx], self.y[idx], self.index[idx], self.levels, self.n_classes, is_test=t)


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / (DIGITS_LEVELS - 1)).astype(np.float32)[:, None]   # exact k/16, representable
    x.setflags(write=False)   # cached and shared: nobody may modify it in place
    y = d.target.astype(np.int64)
    y.setflags(write=False)
    return x, y


def load_digits_pool() -> Pool:
    x, y = _digits_arrays()
    return Pool(x, y, np.arange(len(y)), DIGITS_LEVELS, 10)
