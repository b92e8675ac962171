"""From config to the two domains: a registry of datasets, disjoint pools, stratified splits.

Adding a dataset means registering a loader that returns a `Pool`; everything after that (transform, resize, channels, splits, subset) is
shared. Datasets of one *family* are cut from the same images, so when source and target share a
family (digits -> digits_shifted, digits -> digits) their images are split disjointly first: otherwise
the "target" would contain the very images the source model was trained on.

Randomness: every step draws from its own stream, np.random.default_rng([seed, role, step]), so
changing e.g. data.subset does not change which images are shifted how, or which are in the test set.

Splits: a dataset with an official test split (MNIST, USPS, folder:, npz:) keeps it as the test set when
data.test_split=official, and val is a stratified data.val_fraction of its training images; otherwise
(sklearn's digits, or test_split=random) train/val/test are stratified shares of the whole pool.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from vaeflow.config import Config, DataConfig
from vaeflow.data.digits import Pool, load_digits_pool
from vaeflow.data.domain import DataError, DomainData
from vaeflow.data.files import check_same_classes, decode, load_folder_pool, load_npz_pool, load_npz_raw
from vaeflow.data.images import resize, to_channels
from vaeflow.data.mnist import load_idx_pool
from vaeflow.data.shift import digits_shifted
from vaeflow.data.splits import Split, stratified
from vaeflow.data.usps import load_usps_pool

Loader = Callable[[str, DataConfig], Pool]
Transform = Callable[[np.ndarray, DataConfig, np.random.Generator, int], np.ndarray]

# Stream tags for default_rng([seed, role, step]).
_POOLS, _SOURCE, _TARGET = 0, 1, 2
_SHIFT, _SPLIT, _SUBSET, _EVAL_SUBSET = 0, 1, 2, 3


@dataclass(frozen=True)
class DatasetSpec:
    load: Loader
    family: str | None = None          # None: a family of its own (its name)
    transform: Transform | None = None  # applied to the pool's images after the family split
    # Optional: a loader whose Pool may hold raw uint8 images, made float by files.decode after the
    # family split (memory: the whole pool and both shares at once are then uint8, not float32).
    load_raw: Loader | None = None


def _shift(x: np.ndarray, dc: DataConfig, rng: np.random.Generator, levels: int) -> np.ndarray:
    return digits_shifted(x, dc.shift, rng, levels)


REGISTRY: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(lambda name, dc: load_digits_pool(), family="digits"),
    "digits_shifted": DatasetSpec(lambda name, dc: load_digits_pool(), family="digits", transform=_shift),
    "mnist": DatasetSpec(load_idx_pool),
    "usps": DatasetSpec(load_usps_pool),
    "fashion_mnist": DatasetSpec(load_idx_pool),
}
# Names of the form PREFIX:PATH; the loader gets the full name.
PREFIXES: dict[str, DatasetSpec] = {"folder:": DatasetSpec(load_folder_pool), "npz:": DatasetSpec(load_npz_pool, load_raw=load_npz_raw)}


def dataset_spec(name: str) -> DatasetSpec:
    if name in REGISTRY:
        return REGISTRY[name]
    for prefix, spec in PREFIXES.items():
        if name.startswith(prefix):
            return spec
    raise DataError(f"unknown dataset '{name}'; known: {', '.join(REGISTRY)}, {', '.join(p + 'PATH' for p in PREFIXES)}")


def _rng(seed: int, *tags: int) -> np.random.Generator:
    return np.random.default_rng([seed, *tags])


def _state(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))   # sklearn wants an int random_state


def _stratified(idx: np.ndarray, y: np.ndarray, size: float | int, rng: np.random.Generator,
                s: Split) -> tuple[np.ndarray, np.ndarray]:
    """(chosen, rest) of idx, with `size` of them chosen stratified by y[idx]; a DataError in the terms of `s`
    (the dataset, the parameter) when there are too few images for it."""
    return stratified(idx, y, size, _state(rng), s)


def _family(name: str) -> str:
    return dataset_spec(name).family or name


def _one_family(dc: DataConfig) -> bool:
    """Whether source and target are cut from one dataset, each getting a share (data.source_fraction)."""
    return _family(dc.source) == _family(dc.target) and not (dc.pools == "shared" and dc.source == dc.target)


def build_pools(cfg: Config) -> tuple[Pool, Pool]:
    """The source and target images before any transform or split; disjoint within a family."""
    dc = cfg.data
    src, tgt = dataset_spec(dc.source), dataset_spec(dc.target)
    fam_s, fam_t = _family(dc.source), _family(dc.target)
    if fam_s == fam_t:
        base = (src.load_raw or src.load)(dc.source, dc)
        if dc.pools == "shared" and dc.source == dc.target:  # the semi-supervised protocol: all of it, twice
            base = decode(base, dc)
            return base, base
        s_idx, t_idx = _stratified(np.arange(len(base.y)), base.y, dc.source_fraction, _rng(cfg.seed, _POOLS),
                                   Split(dc.source, "images", "the source pool", "the target pool",
                                         "data.source_fraction", dc.source_fraction))
        s_pool, t_pool = base.take(np.sort(s_idx)), base.take(np.sort(t_idx))
        base = None  # the whole pool goes before the shares are made float  # noqa: F841
        return decode(s_pool, dc), decode(t_pool, dc)
    return src.load(dc.source, dc), tgt.load(dc.target, dc)


def split_indices(y: np.ndarray, val_fraction: float, test_fraction: float, rng: np.random.Generator,
                  what: str = "domain") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified (train, val, test) positions into y, with the given shares of the whole."""
    everything = np.arange(len(y))
    test, rest = _stratified(everything, y, test_fraction, rng, Split(what, "images", "the test split",
                                                                      "training and validation",
                                                                      "data.test_fraction", test_fraction))
    # The share of the rest is val_fraction / (1 - test_fraction); messages name the configured val_fraction.
    val, train = _stratified(rest, y, val_fraction / (1.0 - test_fraction), rng,
                             Split(what, "images left after the test split", "the validation split",
                                   "the training split", "data.val_fraction", val_fraction))
    return train, val, test


def _domain(name: str, spec: DatasetSpec, pool: Pool, cfg: Config, role: int) -> DomainData:
    dc = cfg.data
    x = pool.x
    if spec.transform is not None:
        x = spec.transform(x, dc, _rng(cfg.seed, role, _SHIFT), pool.levels)
    x = to_channels(resize(x, dc.image_size, pool.levels), dc.channels, pool.levels)
    # A count in a message must match what the user can check: say when it is this domain's share only.
    share = " (this domain's share: source and target are cut from one dataset, data.source_fraction)" \
        if _one_family(dc) else ""
    if dc.test_split == "official" and pool.is_test is not None:
        test = np.flatnonzero(pool.is_test)
        val, train = _stratified(np.flatnonzero(~pool.is_test), pool.y, dc.val_fraction, _rng(cfg.seed, role, _SPLIT),
                                 Split(name, "training images", "the validation split", "the training split",
                                       "data.val_fraction", dc.val_fraction, share))
    else:
        train, val, test = split_indices(pool.y, dc.val_fraction, dc.test_fraction, _rng(cfg.seed, role, _SPLIT),
                                         name)
    if dc.subset is not None and dc.subset < len(train):
        train, _ = _stratified(train, pool.y, dc.subset, _rng(cfg.seed, role, _SUBSET),
                               Split(name, "training images", "the training subset", "the images left out",
                                     "data.subset", dc.subset))
    if dc.eval_subset is not None:   # a stratified cap on val and test, for costly evaluations (IWAE k=5000)
        g = _rng(cfg.seed, role, _EVAL_SUBSET)
        val, test = (_stratified(idx, pool.y, dc.eval_subset, g,
                                 Split(name, f"{part} images", f"the {part} subset", "the images left out",
                                       "data.eval_subset", dc.eval_subset))[0]
                     if dc.eval_subset < len(idx) else idx for idx, part in ((val, "validation"), (test, "test")))
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    i64 = lambda a: np.ascontiguousarray(a, dtype=np.int64)  # noqa: E731
    return DomainData(x_train=f32(x[train]), y_train=i64(pool.y[train]), x_val=f32(x[val]), y_val=i64(pool.y[val]),
                      x_test=f32(x[test]), y_test=i64(pool.y[test]), levels=pool.levels, name=name,
                      n_classes=pool.n_classes)


def build_domains(cfg: Config) -> tuple[DomainData, DomainData]:
    """(source, target) as configured by cfg.data; a deterministic function of cfg."""
    dc = cfg.data
    check_same_classes(dc.source, dc.target)
    s_pool, t_pool = build_pools(cfg)
    if s_pool.levels != t_pool.levels or s_pool.n_classes != t_pool.n_classes:
        raise DataError(f"{dc.source} and {dc.target} differ in intensity levels or classes "
                        f"({s_pool.levels}/{t_pool.levels} levels, {s_pool.n_classes}/{t_pool.n_classes} classes)")
    source = _domain(dc.source, dataset_spec(dc.source), s_pool, cfg, _SOURCE)
    # The source pool's images are in `source` now: let them go before the target's are copied out, so the
    # pools and the domains are not all held at once (1.5× the images at the peak instead of 2×).
    s_pool = None  # noqa: F841
    target = _domain(dc.target, dataset_spec(dc.target), t_pool, cfg, _TARGET)
    if source.image_shape != target.image_shape:
        raise DataError(f"{dc.source} images are {source.image_shape}, {dc.target} images are "
                        f"{target.image_shape}; set data.image_size to give them a common size")
    return source, target
