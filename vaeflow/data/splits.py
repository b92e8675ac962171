"""Stratified splits, with messages in vaeflow's terms when a dataset is too small for one.

scikit-learn's train_test_split does the split. Its errors speak of its own arguments ("train_size=0.15,
the resulting train set will be empty"), where 0.15 is in fact data.val_fraction and "train" is the
validation split, so the two conditions a stratified split needs are checked here first and reported
with the image count, the size the split needs and the parameter that sets it:
  - every class has at least 2 images (one on each side), and
  - each side gets at least one image per class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vaeflow.data.domain import DataError


@dataclass(frozen=True)
class Split:
    """What one split is called in messages: `name` (the dataset), `images` (what is split, "training
    images"), `part` (the share chosen, "the validation split"), `rest` (the other side) and the parameter
    `key` that sets the share, with its configured `value`; `note`, when given, follows the image count."""
    name: str
    images: str
    part: str
    rest: str
    key: str
    value: float | int
    note: str = ""


def _chosen(n: int, size: float | int) -> int:
    # scikit-learn's rule: an int is a count, a float a share rounded down (floor(train_size * n_samples)).
    return size if isinstance(size, (int, np.integer)) else math.floor(size * n)


def _fewest_images(size: float | int, n_classes: int) -> int:
    """The fewest images for which `size` leaves at least one image per class on both sides."""
    if isinstance(size, (int, np.integer)):
        return int(size) + n_classes
    m = 2 * n_classes
    while not (n_classes <= _chosen(m, size) <= m - n_classes):
        m += 1
    return m


def check_splittable(labels: np.ndarray, size: float | int, s: Split) -> None:
    """Raise a DataError saying why `labels` cannot be split stratified into `size` and the rest."""
    classes, counts = np.unique(labels, return_counts=True)
    n, c = len(labels), len(classes)
    setting = f"{s.key}={s.value}"
    if c and counts.min() < 2:
        lonely = ", ".join(map(str, classes[counts < 2].tolist()))
        raise DataError(f"{s.name}: too few images for {s.part} ({setting}): among the {n} {s.images}{s.note}, "
                        f"class(es) {lonely} have a single image, and a stratified split needs at least 2 of every "
                        f"class (one on each side). The dataset is too small: add images of those classes")
    k = _chosen(n, size)
    if k < c or n - k < c:
        raise DataError(f"{s.name}: too few images for {s.part}: {n} {s.images} of {c} classes{s.note}, of "
                        f"which {setting} gives {s.part} {k} and {s.rest} {n - k}; each needs at least {c} (one image "
                        f"per class). The dataset is too small for this split: with {setting} it needs at least "
                        f"{_fewest_images(size, c)} {s.images}; add images or change {s.key}")


def stratified(idx: np.ndarray, y: np.ndarray, size: float | int, random_state: int,
               s: Split) -> tuple[np.ndarray, np.ndarray]:
    """(chosen, rest) of idx, with `size` of them (a share or a count) chosen stratified by y[idx]."""
    # Imported here: scikit-learn costs ~3 s to import, and most importers of this module (a Ray trial,
    # any stage reading prepared data) never split.
    from sklearn.model_selection import train_test_split

    check_splittable(y[idx], size, s)
    try:
        return train_test_split(idx, train_size=size, stratify=y[idx], random_state=random_state)
    except ValueError as e:  # a case the checks above do not foresee: still name the dataset and the setting
        raise DataError(f"{s.name}: cannot split off {s.part} ({s.key}={s.value}) from {len(idx)} {s.images} "
                        f"stratified: {e}") from None
