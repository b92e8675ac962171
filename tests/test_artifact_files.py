"""Artifacts are written through a temp file beside them and renamed (vaeflow.io.atomic_path); the file a
user gets must still look like one written by a plain open(): the mode the umask gives, not mkstemp's 0600."""
from __future__ import annotations

import os
import stat

import numpy as np

from vaeflow.io import UMASK, save_npz, write_json, write_text


def test_artifacts_get_the_mode_a_plain_open_would_give(tmp_path):
    expected = 0o666 & ~UMASK
    with open(tmp_path / "plain.txt", "w") as f:  # the reference: what the umask makes of a new file
        f.write("x")
    assert stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode) == expected
    write_json(tmp_path / "m.json", {"a": 1})
    write_text(tmp_path / "r.md", "# report\n")
    save_npz(tmp_path / "a.npz", x=np.zeros(3))
    for name in ("m.json", "r.md", "a.npz"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == expected, name
