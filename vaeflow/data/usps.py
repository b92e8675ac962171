"""USPS handwritten digits: 7,291 train + 2,007 test 16×16 images, values in [-1, 1].

Two published sources of the same images, labels and order, which scale pixels slightly differently,
so both splits are always read from one source:
  ESL's `usps/zip.train.gz` + `usps/zip.test.gz` (text: label 0-9, then 256 values), preferred;
  LIBSVM's `usps.bz2` + `usps.t.bz2` (labels 1-10, index:value pairs), in `usps/` or in data.root
  itself, where torchvision's downloader puts them.
Values v become (v + 1) / 2 on the 256-level grid of MNIST, so the two datasets can be one data model.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from vaeflow.config import DataConfig
from vaeflow.data.digits import Pool
from vaeflow.data.domain import DataError
from vaeflow.data.shift import quantize
from vaeflow.data.verify import check_md5, locate, read_compressed, try_download

USPS_LEVELS = 256
SIDE = 16
ESL = ("zip.train.gz", "zip.test.gz")
LIBSVM = ("usps.bz2", "usps.t.bz2")
LAYOUTS = [("usps", ESL), ("usps", LIBSVM), (".", LIBSVM)]


def _lines(path: Path) -> list[str]:
    try:
        text = read_compressed(path).decode("ascii")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file; the file is corrupt: replace it") from None
    return [ln for ln in text.splitlines() if ln.strip()]


def parse_esl(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """ESL zip.* text: one image a line, label then 256 values. Returns (values N×256, labels 0..9)."""
    rows = [ln.split() for ln in _lines(path)]
    bad = next((i for i, r in enumerate(rows) if len(r) != 1 + SIDE * SIDE), None)
    if bad is not None or not rows:
        where = f"line {bad + 1} has {len(rows[bad])} fields" if bad is not None else "no images"
        raise DataError(f"{path}: {where}, expected a label and {SIDE * SIDE} values; the file is truncated "
                        "or corrupt: replace it")
    try:
        a = np.array(rows, dtype=np.float64)
    except ValueError as e:
        raise DataError(f"{path}: non-numeric value ({e}); the file is corrupt: replace it") from None
    return a[:, 1:], a[:, 0].astype(np.int64)


def parse_libsvm(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """LIBSVM text: label 1..10 then index:value pairs (1-based; absent = 0). Labels become 0..9."""
    lines = _lines(path)
    x = np.zeros((len(lines), SIDE * SIDE))
    y = np.empty(len(lines), dtype=np.int64)
    try:
        for i, ln in enumerate(lines):
            label, *pairs = ln.split()
            y[i] = int(float(label)) - 1
            for p in pairs:
                j, v = p.split(":")
                x[i, int(j) - 1] = float(v)
    except (ValueError, IndexError) as e:
        raise DataError(f"{path}: line {i + 1} is not 'label index:value ...' ({e}); the file is "
                        "truncated or corrupt: replace it") from None
    return x, y


@lru_cache(maxsize=2)
def _arrays(folder: str, names: tuple[str, str], verify: bool, stamp: tuple) -> tuple[np.ndarray, ...]:
    parse = parse_esl if names == ESL else parse_libsvm
    parts = []
    for n in names:
        p = Path(folder) / n
        check_md5(p, "usps", verify)
        v, y = parse(p)
        if y.min() < 0 or y.max() > 9 or np.abs(v).max() > 1 + 1e-6:
            raise DataError(f"{p}: labels {y.min()}..{y.max()} or values up to {np.abs(v).max():.3g} outside "
                            "0..9 and [-1, 1]; the file is corrupt: replace it")
        parts.append((v, y))
    (v_tr, y_tr), (v_te, y_te) = parts
    x = quantize((np.concatenate([v_tr, v_te]).reshape(-1, 1, SIDE, SIDE) + 1.0) / 2.0, USPS_LEVELS)
    y = np.concatenate([y_tr, y_te])
    is_test = np.repeat([False, True], [len(y_tr), len(y_te)])
    for a in (x, y, is_test):
        a.setflags(write=False)
    return x, y, is_test


def load_usps_pool(name: str, dc: DataConfig) -> Pool:
    root = Path(dc.root)
    try:
        folder = locate(root, "usps", LAYOUTS)
    except DataError:
        if not try_download("usps", root, dc.download):
            raise
        folder = locate(root, "usps", LAYOUTS)
    names = ESL if all((folder / n).is_file() for n in ESL) else LIBSVM
    stamp = tuple(((folder / n).stat().st_size, (folder / n).stat().st_mtime_ns) for n in names)
    x, y, is_test = _arrays(str(folder), names, dc.verify_md5, stamp)
    return Pool(x, y, np.arange(len(y)), USPS_LEVELS, 10, is_test=is_test)
