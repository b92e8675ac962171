"""Atomic, verifiable artifacts.

Every artifact is written to a temp file in its own directory, fsynced, then renamed over the final
name, so a crash never leaves a half-written file there. Binary artifacts (npz, checkpoints) get a
`<name>.sha256` sidecar written after the file itself; a load checks it, so a truncated or bit-flipped
file is refused with a message naming it instead of being used.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np


class ArtifactError(RuntimeError):
    """A missing, truncated or corrupted artifact. The message names the file."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it replaces `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes, checksum: bool = False) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    if checksum:
        with atomic_path(_sidecar(path)) as tmp:
            tmp.write_text(hashlib.sha256(data).hexdigest() + "\n")


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: missing; run the stage that writes it first")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: corrupted JSON ({e})") from None


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    write_bytes(path, buf.getvalue())


# ------------------------------------------------------------------------------ checksummed binaries

def _sidecar(path: str | Path) -> Path:
    return Path(str(path) + ".sha256")


def read_verified(path: str | Path) -> bytes:
    """The bytes of `path`, checked against its sha256 sidecar when there is one."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: missing; run the stage that writes it first")
    data = path.read_bytes()
    side = _sidecar(path)
    if side.is_file():
        want = side.read_text().strip()
        got = hashlib.sha256(data).hexdigest()
        if want != got:
            raise ArtifactError(f"{path}: checksum mismatch (file is truncated or corrupted; "
                                f"expected sha256 {want[:12]}…, got {got[:12]}…). Re-run the stage that writes it.")
    return data


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes(path, buf.getvalue(), checksum=True)


def load_npz(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    data = read_verified(path)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile, zlib and ValueError all mean the same thing here
        raise ArtifactError(f"{path}: not a readable .npz file ({e.__class__.__name__}: {e})") from None
    missing = [k for k in required if k not in out]
    if missing:
        raise ArtifactError(f"{path}: missing arrays {missing}")
    return out


def save_torch(path: str | Path, obj: Any) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue(), checksum=True)


def load_torch(path: str | Path, map_location: Any = "cpu") -> Any:
    import torch

    data = read_verified(path)
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:
        raise ArtifactError(f"{path}: not a loadable checkpoint ({e.__class__.__name__}: {e})") from None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
