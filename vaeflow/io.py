"""Atomic, verifiable artifacts.

Every artifact is written to a temp file in its own directory, fsynced, then renamed over the final
name, so a crash never leaves a half-written file there. Binary artifacts (npz, checkpoints) get a
`<name>.sha256` sidecar; a load checks it, so a truncated or bit-flipped file is refused with a message
naming it instead of being used. The sidecar is written so that it vouches for whichever version a
kill leaves under the final name (see write_bytes), and a load without a sidecar is refused too.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vaeflow import hooks


class ArtifactError(RuntimeError):
    """A missing, truncated or corrupted artifact. The message names the file."""


# A full disk, an exhausted quota, a read-only file system: a retry writes the same bytes into the same lack
# of space, so these are never retried as transient (the flow's tasks) and end a command with exit 1 (the CLI).
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def _process_umask() -> int:
    """The umask, read once at import: os.umask can only be read by setting it, which would race with threads
    creating files later (the flow runs stages in threads)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _process_umask()


def _owner_tag() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _sweep_stale_temps(path: Path) -> None:
    """Delete temp files of `path` left by writers on this host that were killed (their pid is gone).

    A kill -9 mid-write leaves `.name.<host>-<pid>.*.tmp` behind; inside a directory that DVC tracks
    (data/prepared, models/adapt) it would otherwise end up in the output's hash."""
    host = socket.gethostname()
    for tmp in path.parent.glob(f".{path.name}.{host}-*.tmp"):
        pid = tmp.name[len(f".{path.name}.{host}-"):].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable across a power cut, not just a process kill (POSIX only)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it replaces `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_owner_tag()}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes the file 0600; the artifact gets the mode a plain open() would give (0644 under umask 022),
    # so reports, metrics and models stay readable by whoever may read the project
    os.fchmod(fd, 0o666 & ~UMASK)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _write_file(path: Path, data: bytes | memoryview, n: int) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        # Two halves, so a test can kill the process with a half-written temp file (see vaeflow/hooks.py).
        f.write(data[:len(data) // 2])
        f.flush()
        hooks.current().pause(f"write:{path.name}:{n}:mid")
        f.write(data[len(data) // 2:])


def write_bytes(path: str | Path, data: bytes | memoryview, checksum: bool = False) -> None:
    """Write `data` atomically; with `checksum`, keep `<path>.sha256` true to the file at every instant.

    A file and its sidecar cannot be renamed in one step, so the sidecar is written first and lists
    the new hash and, when the file now in place verifies, that file's hash too; then the file is
    replaced. A kill at any point leaves a complete file (old or new) that its sidecar vouches for.
    The old hash stays listed until the next write: it only ever matches that complete old version."""
    path = Path(path)
    n = hooks.current().count_write(path.name)
    if checksum:
        new = hashlib.sha256(data).hexdigest()
        side = _sidecar(path)
        old = _verified_hash(path, side)
        _write_file(side, ("\n".join(dict.fromkeys([new] + ([old] if old else []))) + "\n").encode(), 0)
    _write_file(path, data, n)
    hooks.current().pause(f"write:{path.name}:{n}:renamed")


def _verified_hash(path: Path, side: Path) -> str | None:
    """sha256 of the file now at `path` if its sidecar vouches for it, else None."""
    if not (path.is_file() and side.is_file()):
        return None
    got = file_sha256(path)
    return got if got in _hashes(side) else None


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


def _hashes(side: Path) -> list[str]:
    try:
        return [h for h in side.read_text().split() if h]
    except (OSError, UnicodeDecodeError):
        return []


def read_verified(path: str | Path, checksum: bool = True) -> bytes:
    """The bytes of `path`, checked against its sha256 sidecar (which must exist unless `checksum=False`)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: missing; run the stage that writes it first")
    data = path.read_bytes()
    side = _sidecar(path)
    if not side.is_file():
        if checksum:
            raise ArtifactError(f"{path}: its checksum file {side.name} is missing, so the file cannot be "
                                f"verified. Re-run the stage that writes it.")
        return data
    want = _hashes(side)
    got = hashlib.sha256(data).hexdigest()
    if got not in want:
        expected = want[0][:12] + "…" if want else "(empty checksum file)"
        raise ArtifactError(f"{path}: checksum mismatch (file is truncated or corrupted; expected sha256 "
                            f"{expected}, got {got[:12]}…). It was not used. Re-run the stage that writes it.")
    return data


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    # getbuffer(), not getvalue(): a view of the compressed bytes instead of a second copy of them
    with buf.getbuffer() as view:
        write_bytes(path, view, checksum=True)


def load_npz(path: str | Path, required: tuple[str, ...] = (), checksum: bool = True) -> dict[str, np.ndarray]:
    data = read_verified(path, checksum)
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


def load_torch(path: str | Path, map_location: Any = "cpu", checksum: bool = True) -> Any:
    """torch.load with weights_only=True: tensors and plain containers only, never arbitrary pickles."""
    import torch

    data = read_verified(path, checksum)
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
