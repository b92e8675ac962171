"""Finding dataset files under data.root, checking them by md5, decompressing them with clear errors.

Offline, nothing is downloaded: a missing file gives one message saying which files to put where. When
torchvision happens to be importable (it is not in this project's environment: it pins another torch)
and data.download is true, its downloader fetches the files into the layout searched here.
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import logging
import zlib
from pathlib import Path

from vaeflow.data.domain import DataError

log = logging.getLogger("vaeflow")

# Published checksums (the ones torchvision checks; ESL's zip.* from ../shared/data/README.md).
MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "usps": {
        "zip.train.gz": "206835541ea704bcfb4b6eea872678bf",
        "zip.test.gz": "f9350e940232b89f1dc8f8eacac88625",
        "usps.bz2": "ec16c51db3855ca6c91edd34d0e9b197",
        "usps.t.bz2": "8ea070ee2aca1ac39742fdd1ef5ed118",
    },
}


def md5sum(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_md5(path: Path, dataset: str, verify: bool) -> None:
    """Compare a file with its published md5, when that is known and verification is on."""
    expected = MD5.get(dataset, {}).get(path.name)
    if not verify or expected is None:
        return
    got = md5sum(path)
    if got != expected:
        raise DataError(f"{path}: md5 {got} does not match the published {expected} for {dataset}; the file is "
                        "corrupt, truncated or a different version. Replace it (or set data.verify_md5=false "
                        "to read it anyway).")


def locate(root: Path, dataset: str, layouts: list[tuple[str, tuple[str, ...]]]) -> Path:
    """The first folder root/<sub> holding every file of one layout; else a DataError naming them.

    `layouts` lists (subfolder, file names) alternatives in order of preference."""
    for sub, names in layouts:
        folder = root / sub
        if all((folder / n).is_file() for n in names):
            return folder
    wanted = "; or ".join(f"{', '.join(names)} in {(root / sub).resolve()}" for sub, names in layouts)
    raise DataError(f"{dataset} files not found under data.root={root} (resolved: {root.resolve()}). "
                    f"Put {wanted}. No download is attempted offline; see docs/datasets.md.")


def try_download(dataset: str, root: Path, enabled: bool) -> bool:
    """Fetch with torchvision's downloader into root (its own layout, searched by the loaders).

    True when it ran; False when disabled or torchvision is not importable. A failed download (no network)
    is reported as a DataError naming the dataset."""
    if not enabled:
        return False
    try:
        import torchvision.datasets as tvd  # optional: not installed alongside this project's torch
    except ImportError:
        return False
    cls = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "usps": "USPS"}[dataset]
    log.info("%s not found under %s: downloading with torchvision.datasets.%s", dataset, root, cls)
    try:
        for train in (True, False):
            getattr(tvd, cls)(root=str(root), train=train, download=True)
    except Exception as e:  # network errors come in many types (URLError, RuntimeError, OSError)
        raise DataError(f"downloading {dataset} with torchvision into {root} failed: {e}") from None
    return True


def read_compressed(path: Path) -> bytes:
    """The decompressed bytes of a .gz or .bz2 file (or the raw bytes of anything else)."""
    opener = {".gz": gzip.open, ".bz2": bz2.open}.get(path.suffix, open)
    try:
        with opener(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DataError(f"{path} not found (resolved: {path.resolve()})") from None
    except (OSError, EOFError, zlib.error, ValueError) as e:
        raise DataError(f"{path}: cannot be read ({e.__class__.__name__}: {e}); the file is corrupt or "
                        "truncated: replace it") from None
