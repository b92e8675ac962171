"""Reading one `npz:` file (PATH/train.npz or PATH/test.npz) into checked arrays, with messages that name the file.

numpy's own errors describe numpy, not the user's file: a file of garbage bytes is reported as "pickled
(object) data" (np.load falls back to unpickling anything that is neither a zip archive nor a .npy file),
a lone .npy saved under an .npz name is returned as an ndarray instead of an archive, and a NaN hides
behind a min..max range that looks fine. So the file's kind is judged from its first bytes before numpy
reads it, and non-finite pixels are counted and named.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from vaeflow.data.domain import DataError

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")   # a zip archive's first entry, or an empty archive
NPY_MAGIC = b"\x93NUMPY"


def _not_npz(path: Path) -> str | None:
    """Why the file cannot be an .npz archive, judged from its first bytes; None when it may be one."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        return "the file is empty"
    if head.startswith(ZIP_MAGIC):
        return None
    if head.startswith(NPY_MAGIC):
        return "it is a single .npy array, not an .npz archive of arrays x and y"
    if head[:1] == b"\x80":   # pickle protocol 2+ opcode: never unpickled here, user data is not code
        return "it looks like a Python pickle, not an .npz archive"
    return "not a zip archive, which every .npz file is"


def _unreadable(path: Path, reason: str) -> DataError:
    return DataError(f"{path}: unreadable .npz file ({reason}); write it with np.savez(file, x=images, y=labels)")


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        reason = _not_npz(path)
    except OSError as e:
        raise _unreadable(path, f"{e.__class__.__name__}: {e.strerror or e}") from None
    if reason:
        raise _unreadable(path, reason)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x", "y") if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {missing}; found {z.files}")
            arrays = []
            for key in ("x", "y"):
                try:
                    arrays.append(z[key])
                except ValueError as e:
                    # A real archive whose array holds Python objects: loading it would unpickle (run) code.
                    if "allow_pickle" not in str(e):
                        raise
                    raise DataError(f"{path}: array '{key}' contains pickled (object) data, which vaeflow does not "
                                    f"load; store x as uint8 or float images and y as integer labels") from None
    except DataError:
        raise   # already says what is wrong (DataError is a ValueError: it would be wrapped again below)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        # A zip header with a broken body (a truncated download), or a member that is not a valid .npy.
        raise _unreadable(path, f"{e.__class__.__name__}: {e}") from None
    return arrays[0], arrays[1]


def _check_finite(x: np.ndarray, path: Path) -> None:
    """NaN and inf are counted, not shown as a range: nanmin/nanmax of such an array look like valid pixels."""
    finite = np.isfinite(x)
    if finite.all():
        return
    n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
    what = " and ".join(f"{n} {kind} value{'s' if n > 1 else ''}" for n, kind in ((n_nan, "NaN"), (n_inf, "inf"))
                        if n)
    bad_images = np.flatnonzero(~finite.reshape(len(x), -1).all(axis=1))
    raise DataError(f"{path}: array 'x' has {what} (in {len(bad_images)} of {len(x)} images, the first is image "
                    f"{bad_images[0]}); images must be finite: float in [0, 1] or uint8 0..255")


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(x as N×C×H×W uint8 or float in [0, 1], y as int64) from one file, or a DataError naming it."""
    if not path.is_file():
        raise DataError(f"{path} not found; npz:PATH needs PATH/train.npz and PATH/test.npz with arrays x and y")
    x, y = _load(path)
    if x.ndim == 0:
        raise DataError(f"{path}: x is a single number, not an array of images")
    if y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{path}: x has {len(x)} images but y has shape {y.shape}; need one label per image")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y must hold integers, got {y.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{path}: x has shape {x.shape}; expected N×H×W or N×H×W×C with C = 1 or 3")
    if x.dtype == np.uint8:
        return x, y.astype(np.int64)   # converted by files._to_float, straight into the pool's array
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{path}: x must be uint8 (0..255) or float in [0, 1], got {x.dtype}")
    if x.size:
        _check_finite(x, path)
        if x.min() < 0 or x.max() > 1:
            raise DataError(f"{path}: float x must lie in [0, 1] (got {x.min():.3g}..{x.max():.3g}); "
                            "store 0..255 images as uint8")
    return x, y.astype(np.int64)
