"""Where a Tune experiment lives: tune.storage_path (a local path or a URI such as s3://) and the
pyarrow filesystem that reads and writes it.

Its own module because both sides of the experiment need it: experiment.py (the Tuner's storage) and
asha.py (the scheduler's rungs, saved beside the trials), and experiment.py builds the ASHA scheduler. With
these helpers in experiment.py, asha.py and experiment.py imported each other.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: this module imports neither the config nor Ray
    from vaeflow.config import Config


def storage_root(cfg: Config, root: Path) -> str:
    """tune.storage_path as Ray wants it: a URI unchanged, a local path made absolute against the project."""
    p = cfg.tune.storage_path
    return p if "://" in p else str((root / p).resolve())


def experiment_path(cfg: Config, root: Path) -> str:
    return f"{storage_root(cfg, root).rstrip('/')}/{cfg.tune.experiment_name}"


def storage_fs(uri: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path in it) for a local path or any URI pyarrow accepts (s3://, gs://, ...)."""
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(uri) if "://" in uri else (pafs.LocalFileSystem(), uri)


def read_file(fs: Any, path: str) -> bytes | None:
    """A file's bytes from the experiment's storage, or None when it is not there."""
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(path) as f:
        return f.read()


def write_file(fs: Any, path: str, data: bytes) -> None:
    """Write `data` to the experiment's storage, its folder made first (a no-op where it exists, or on s3://)."""
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(data)
