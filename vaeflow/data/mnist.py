"""MNIST and Fashion-MNIST from their original IDX files: 60,000 train + 10,000 test 28×28 uint8 images.

Searched under data.root in `mnist/` (or `fashion_mnist/`), then torchvision's `MNIST/raw/`
(`FashionMNIST/raw/`), so a folder torchvision filled works as is. The pool keeps the official split:
`is_test` marks the 10,000 test images.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from vaeflow.config import DataConfig
from vaeflow.data.digits import Pool
from vaeflow.data.domain import DataError
from vaeflow.data.verify import check_md5, locate, read_compressed, try_download
from vaeflow.progress import steps

MNIST_LEVELS = 256
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_FOLDERS = {"mnist": ("mnist", "MNIST/raw"), "fashion_mnist": ("fashion_mnist", "FashionMNIST/raw")}
_MAGIC = {0x00000801: 1, 0x00000803: 3}   # labels: 1 dimension; images: 3 (n, rows, cols)


def parse_idx(path: Path) -> np.ndarray:
    """An IDX file (big-endian header, then uint8 data) as a read-only uint8 array; DataError naming the
    file when the header is unknown or the data is shorter or longer than the header says."""
    raw = read_compressed(path)
    if len(raw) < 8:
        raise DataError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in _MAGIC:
        raise DataError(f"{path}: not an IDX uint8 label/image file (magic {magic:#010x})")
    ndim = _MAGIC[magic]
    head = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) != head + int(np.prod(dims)):
        raise DataError(f"{path}: header promises {'×'.join(map(str, dims))} values but the file holds "
                        f"{len(raw) - head}; the file is truncated or corrupt: replace it")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)


@lru_cache(maxsize=4)
def _arrays(folder: str, dataset: str, verify: bool, stamp: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x uint8 N×28×28, y, is_test) over train then test; cached per folder and file stamp."""
    parts = {}
    for name in FILES:
        p = Path(folder) / name
        check_md5(p, dataset, verify)
        parts[name] = parse_idx(p)
    x_tr, y_tr, x_te, y_te = (parts[n] for n in FILES)
    for x, y, split in ((x_tr, y_tr, "train"), (x_te, y_te, "t10k")):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{folder}: {split} images {x.shape} and labels {y.shape} do not match")
        if y.max(initial=0) > 9:
            raise DataError(f"{folder}: {split} labels go up to {y.max()}, expected 0..9")
    x = np.concatenate([x_tr, x_te])
    y = np.concatenate([y_tr, y_te]).astype(np.int64)
    is_test = np.repeat([False, True], [len(y_tr), len(y_te)])
    for a in (x, y, is_test):
        a.setflags(write=False)   # cached and shared
    return x, y, is_test


def _stamp(folder: Path) -> tuple:
    return tuple((n, (folder / n).stat().st_size, (folder / n).stat().st_mtime_ns) for n in FILES)


def layouts(name: str) -> list[tuple[str, tuple[str, ...]]]:
    """Where under data.root `mnist` or `fashion_mnist` may lie (vaeflow/data/verify.py: locate)."""
    return [(sub, FILES) for sub in _FOLDERS[name]]


def load_idx_pool(name: str, dc: DataConfig) -> Pool:
    """`mnist` or `fashion_mnist` as a Pool on the 256-level grid k/255."""
    root = Path(dc.root)
    try:
        folder = locate(root, name, layouts(name))
    except DataError:
        if not try_download(name, root, dc.download):
            raise
        folder = locate(root, name, layouts(name))
    with steps(f"loading {name} from {folder}" + (" (md5 checked)" if dc.verify_md5 else "")):
        x, y, is_test = _arrays(str(folder), name, dc.verify_md5, _stamp(folder))
    xf = x[:, None].astype(np.float32) / np.float32(MNIST_LEVELS - 1)
    return Pool(xf, y, np.arange(len(y)), MNIST_LEVELS, 10, is_test=is_test)
