"""Bring your own data: `folder:PATH` (ImageFolder layout) and `npz:PATH` (arrays).

folder:PATH  PATH/train/<class>/*.png|jpg|jpeg and PATH/test/<class>/*.png|jpg|jpeg. Classes are the
             train sub-folders sorted by name (torchvision's ImageFolder rule), labelled 0, 1, ...; name
             them 0..9 to line up with the digit datasets. Hidden entries (.ipynb_checkpoints, .DS_Store)
             and files that are not .png/.jpg/.jpeg are skipped and counted in one log line. Grey images
             give 1 channel, anything else (RGB, RGBA, palette) is converted to RGB. Images of different
             sizes need data.image_size.
npz:PATH     PATH/train.npz and PATH/test.npz, each with `x` (uint8 0..255, or float in [0, 1]; N×H×W or
             N×H×W×C with C = 1 or 3) and `y` (integer labels 0..K-1).
Both keep the user's train/test split (`is_test`), are put on the 256-level grid k/255 (floats are
rounded to it) and are then converted to data.channels and resized like every other dataset. Colour
made grey by data.channels=1 (the default) is said in one warning per dataset. Each .npz file is read and
checked by vaeflow/data/npz.py.

check_roots(dc) checks, without reading any image, that the folders and files the configured datasets read
exist, so that `vaeflow validate` and `vaeflow run` catch a mistyped path before a run starts.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vaeflow.config import DataConfig
from vaeflow.data import mnist, usps
from vaeflow.data.digits import Pool
from vaeflow.data.domain import DataError
from vaeflow.data.images import resize, said_grey, to_channels
from vaeflow.data.npz import read_npz
from vaeflow.data.shift import quantize
from vaeflow.data.verify import locate

log = logging.getLogger("vaeflow")
LEVELS = 256
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if im.mode in ("L", "1", "I;16", "I", "F") else "RGB")
            a = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable image ({e.__class__.__name__}: {e})") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)   # C×H×W


def _check_labels(y: np.ndarray, n_classes: int, what: str) -> None:
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(f"{what}: labels span {y.min()}..{y.max()}, outside 0..{n_classes - 1} "
                        f"(the classes of the training split)")


def _check_classes(y: np.ndarray, what: str) -> None:
    if len(np.unique(y)) < 2:
        raise DataError(f"{what}: fewer than 2 classes ({np.unique(y).tolist()}); classification needs at least 2")


def _common(images: list[np.ndarray], files: list[Path], dc: DataConfig, name: str) -> np.ndarray:
    """One N×C×H×W uint8-grid float array from images of possibly different channels and sizes."""
    # Each image is converted on its own (same values as before) straight into the output, or into its
    # size group when resizing: a list of float copies plus a stacked copy would be ~2× the data on top.
    conv = lambda a: to_channels(a[None].astype(np.float32) / (LEVELS - 1), dc.channels, LEVELS)[0]  # noqa: E731
    if dc.channels == 1 and (n := sum(a.shape[0] == 3 for a in images)):
        said_grey(name, n)
    sizes = {a.shape[1:] for a in images}
    if len(sizes) > 1 and dc.image_size is None:
        first = {}
        for a, f in zip(images, files):
            first.setdefault(a.shape[1:], f)
        (s1, f1), (s2, f2) = list(first.items())[:2]
        raise DataError(f"images differ in size ({f1} is {s1[0]}×{s1[1]}, {f2} is {s2[0]}×{s2[1]}); set "
                        "data.image_size to resize them all to one size")
    out = np.empty((len(images), dc.channels, *((dc.image_size,) * 2 if len(sizes) > 1 else next(iter(sizes)))),
                   dtype=np.float32)
    if len(sizes) == 1:
        for i, a in enumerate(images):
            out[i] = conv(a)
        return out
    for shape in {a.shape for a in images}:   # resize each size group at once: one implementation
        idx = [i for i, a in enumerate(images) if a.shape == shape]
        out[idx] = resize(np.stack([conv(images[i]) for i in idx]), dc.image_size, LEVELS)
    return out


def _hidden(p: Path) -> bool:
    # Dot-names are tool litter, never data: .ipynb_checkpoints, .DS_Store, macOS's ._name.png forks, .git.
    return p.name.startswith(".")


def _class_dirs(split_dir: Path, skipped: list[Path]) -> list[str]:
    """The class folders of a split, sorted by name; hidden folders and stray files are added to `skipped`."""
    classes = []
    for p in sorted(split_dir.iterdir()):
        if p.is_dir() and not _hidden(p):
            classes.append(p.name)
        else:
            skipped.append(p)
    return classes


def _image_files(class_dir: Path, skipped: list[Path]) -> list[Path]:
    found = []
    for f in sorted(class_dir.iterdir()):
        (found if f.is_file() and not _hidden(f) and f.suffix.lower() in IMAGE_SUFFIXES else skipped).append(f)
    return found


def _log_skipped(root: Path, skipped: list[Path]) -> None:
    """One line saying what was not read, so a file that was meant as data does not vanish unnoticed."""
    if not skipped:
        return
    hidden = [p for p in skipped if _hidden(p)]
    other = [p for p in skipped if not _hidden(p)]
    parts = []
    if hidden:
        parts.append(f"{len(hidden)} hidden (e.g. {hidden[0].relative_to(root)})")
    if other:
        parts.append(f"{len(other)} not .png/.jpg/.jpeg images or outside a class folder (e.g. "
                     f"{other[0].relative_to(root)})")
    log.warning("folder:%s: skipped %d entries: %s", root, len(skipped), "; ".join(parts))


def _folder_split(split_dir: Path, classes: list[str],
                  skipped: list[Path]) -> tuple[list[np.ndarray], list[Path], np.ndarray]:
    images, files, labels = [], [], []
    for c in _class_dirs(split_dir, skipped):
        if c not in classes:
            raise DataError(f"{split_dir / c}: class '{c}' is not among the training classes {classes}")
        found = _image_files(split_dir / c, skipped)
        if not found and split_dir.name == "train":
            raise DataError(f"{split_dir / c}: no .png/.jpg/.jpeg images in this class folder")
        for f in found:
            images.append(_read_image(f))
            files.append(f)
            labels.append(classes.index(c))
    return images, files, np.array(labels, dtype=np.int64)


def folder_classes(name: str) -> list[str]:
    """The class names of a `folder:` dataset, in label order (its train/ sub-folders, sorted)."""
    return _class_dirs(Path(name.removeprefix("folder:")) / "train", [])


def check_same_classes(source: str, target: str) -> None:
    """Two `folder:` datasets number their classes by sorted folder name, each on its own: with different names
    ("0".."9" against "zero".."nine") label 3 would mean two classes, silently. Refuse that, naming both."""
    if not (source.startswith("folder:") and target.startswith("folder:")):
        return
    a, b = folder_classes(source), folder_classes(target)
    if a != b:
        raise DataError(f"{source} and {target} name their classes differently ({a} against {b}); labels are the "
                        "sorted class-folder names of each, so the same class must have the same folder name in both")


def load_folder_pool(name: str, dc: DataConfig) -> Pool:
    root = Path(name.removeprefix("folder:"))
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DataError(f"{name}: folder {root / split} not found; expected {root}/train/<class>/*.png "
                            f"and {root}/test/<class>/*.png")
    classes = _class_dirs(root / "train", [])  # what is skipped is counted once, while reading below
    if len(classes) < 2:
        raise DataError(f"{root / 'train'}: fewer than 2 class folders ({classes}); classification needs at least 2")
    skipped: list[Path] = []
    tr_img, tr_files, y_tr = _folder_split(root / "train", classes, skipped)
    te_img, te_files, y_te = _folder_split(root / "test", classes, skipped)
    _log_skipped(root, skipped)
    if not te_img:
        raise DataError(f"{root / 'test'}: no images")
    x = _common(tr_img + te_img, tr_files + te_files, dc, name)
    return _pool(x, np.concatenate([y_tr, y_te]), len(y_tr), len(classes))


# Images per block when converting: ~12 MB of float32 at 3×32×32, so no full-size temporary is made.
BLOCK = 1024


def _to_float(parts: list[np.ndarray], channels: int, name: str | None = None) -> np.ndarray:
    """The parts (uint8 0..255 or float in [0, 1], N×C×H×W) as one float32 array on the grid k/255, in
    `channels`; `name` is the dataset named when colour is made grey (decode has none: its raw pools are
    never 3 -> 1, load_npz_raw converts those itself). One preallocated array filled part by part: uint8 is
    cast into it and divided in place (x.astype(float32) / 255 gives the same float32 values without the two
    full-size temporaries), floats are quantized a block at a time (quantize is element-wise, so the values
    are those of one call)."""
    n, (c, h, w) = sum(len(p) for p in parts), parts[0].shape[1:]
    # The memory layout of the file's array (N×H×W×C seen as N×C×H×W), as astype and concatenate kept it:
    # the 3 -> 1 luma (a BLAS dot) rounds differently on another layout, and the values must not change.
    if parts[0].strides[1] < parts[0].strides[3]:
        out = np.empty((n, h, w, c), dtype=np.float32).transpose(0, 3, 1, 2)
    else:
        out = np.empty((n, c, h, w), dtype=np.float32)
    i = 0
    for p in parts:
        for j in range(0, len(p), BLOCK):
            b = out[i + j:i + min(j + BLOCK, len(p))]
            if p.dtype == np.uint8:
                b[...] = p[j:j + BLOCK]
                b /= LEVELS - 1
            else:
                b[...] = quantize(p[j:j + BLOCK], LEVELS)
        i += len(p)
    if c == 3 and channels == 1 and name:
        said_grey(name, n)
    return to_channels(out, channels, LEVELS)


def _read_npz_pair(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    root = Path(name.removeprefix("npz:"))
    (x_tr, y_tr), (x_te, y_te) = read_npz(root / "train.npz"), read_npz(root / "test.npz")
    _check_classes(y_tr, str(root / "train.npz"))
    n_classes = int(y_tr.max()) + 1
    _check_labels(y_tr, n_classes, str(root / "train.npz"))
    _check_labels(y_te, n_classes, str(root / "test.npz"))
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(f"{root}: train images are {x_tr.shape[1:]} (C×H×W), test images {x_te.shape[1:]}")
    return x_tr, y_tr, x_te, y_te, n_classes


def load_npz_pool(name: str, dc: DataConfig) -> Pool:
    x_tr, y_tr, x_te, y_te, n_classes = _read_npz_pair(name)
    x = _to_float([x_tr, x_te], dc.channels, name)
    return _pool(x, np.concatenate([y_tr, y_te]), len(y_tr), n_classes)


def load_npz_raw(name: str, dc: DataConfig) -> Pool:
    """Like load_npz_pool, but for uint8 files the Pool's x is the raw uint8 N×C×H×W (a quarter of the
    float32 size), to be turned into the float pool by `decode` after build_pools has cut it into the
    source and target pools: splitting a float pool held the whole pool and both shares at once (2× the
    data). decode(take(raw)) == take(load_npz_pool): conversion and channel repeat are per element.
    3 -> 1 channel (luma, a BLAS dot whose rounding may depend on the array) and float files are
    converted here, as load_npz_pool does, so their values stay those of the whole-array conversion."""
    x_tr, y_tr, x_te, y_te, n_classes = _read_npz_pair(name)
    if x_tr.dtype != np.uint8 or x_te.dtype != np.uint8 or (x_tr.shape[1] != dc.channels and dc.channels == 1):
        return _pool(_to_float([x_tr, x_te], dc.channels, name), np.concatenate([y_tr, y_te]), len(y_tr), n_classes)
    x = np.empty((len(x_tr) + len(x_te), *x_tr.shape[1:]), dtype=np.uint8)
    x[:len(x_tr)], x[len(x_tr):] = x_tr, x_te
    y = np.concatenate([y_tr, y_te])
    return Pool(x, y, np.arange(len(y)), LEVELS, n_classes, is_test=np.arange(len(y)) >= len(y_tr))


def decode(pool: Pool, dc: DataConfig) -> Pool:
    """A Pool from load_npz_raw (or a share of one) as the float32 pool load_npz_pool gives; float pools
    are returned as they are."""
    if pool.x.dtype != np.uint8:
        return pool
    return Pool(_to_float([pool.x], dc.channels), pool.y, pool.index, pool.levels, pool.n_classes,
                is_test=pool.is_test)


def _pool(x: np.ndarray, y: np.ndarray, n_train: int, n_classes: int) -> Pool:
    is_test = np.arange(len(y)) >= n_train
    return Pool(x.astype(np.float32, copy=False), y, np.arange(len(y)), LEVELS, n_classes, is_test=is_test)


# Registered datasets whose files live under data.root (digits ship with scikit-learn and need none).
ROOT_DATASETS = ("mnist", "fashion_mnist", "usps")


def _root_layouts(name: str) -> list[tuple[str, tuple[str, ...]]]:
    return usps.LAYOUTS if name == "usps" else mnist.layouts(name)


def check_roots(dc: DataConfig) -> None:
    """Raise a DataError naming the path when a configured data location does not exist: the folder of a
    `folder:PATH` (with train/ and test/), the files of an `npz:PATH`, or a file-based dataset's files under
    data.root, searched as its loader does (unless data.download can fetch them). Paths resolve against the
    working directory, as a run's do."""
    import importlib.util

    for name in dict.fromkeys((dc.source, dc.target)):  # once each, in order
        if name.startswith("folder:"):
            root = Path(name.removeprefix("folder:"))
            missing = [p for p in (root, root / "train", root / "test") if not p.is_dir()]
            if missing:
                raise DataError(f"{name}: folder {missing[0]} not found (resolved: {missing[0].resolve()}); "
                                f"expected {root}/train/<class>/*.png and {root}/test/<class>/*.png")
        elif name.startswith("npz:"):
            root = Path(name.removeprefix("npz:"))
            missing = [p for p in (root / "train.npz", root / "test.npz") if not p.is_file()]
            if missing:
                raise DataError(f"{name}: {missing[0]} not found (resolved: {missing[0].resolve()}); npz:PATH "
                                "needs PATH/train.npz and PATH/test.npz with arrays x and y")
        elif name in ROOT_DATASETS:
            if dc.download and importlib.util.find_spec("torchvision") is not None:
                continue  # the downloader creates what is missing
            if not Path(dc.root).is_dir():
                raise DataError(f"data.root={dc.root} (resolved: {Path(dc.root).resolve()}) is not a folder; "
                                f"{name} reads its files from there. Set data.root to the folder holding them.")
            locate(Path(dc.root), name, _root_layouts(name))  # the loader's own search: its message names the files
