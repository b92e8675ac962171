"""The npz loader's low-memory paths give the very values of the plain conversion (issue 23, item 5)."""
from __future__ import annotations

import numpy as np
import pytest

from vaeflow.config import DataConfig
from vaeflow.data.files import BLOCK, decode, load_npz_pool, load_npz_raw
from vaeflow.data.images import to_channels
from vaeflow.data.shift import quantize


def _write(root, x_tr, x_te, seed=0):
    g = np.random.default_rng(seed)
    for name, x in (("train", x_tr), ("test", x_te)):
        np.savez(root / f"{name}.npz", x=x, y=g.integers(0, 3, len(x)))


def _plain(x_tr, x_te, channels):
    """What the loader computed before: whole-array conversion, concatenate, then channels."""
    f = lambda x: (x.astype(np.float32) / 255 if x.dtype == np.uint8 else quantize(x, 256))  # noqa: E731
    t = lambda x: x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # noqa: E731
    return to_channels(np.concatenate([f(t(x_tr)), f(t(x_te))]), channels, 256)


@pytest.mark.parametrize("shape, dtype, channels", [
    ((8, 8, 3), np.uint8, 3), ((8, 8, 3), np.uint8, 1), ((8, 8), np.uint8, 3), ((8, 8), np.uint8, 1),
    ((8, 8, 3), np.float64, 1), ((8, 8, 1), np.float32, 3)])
def test_npz_loader_and_raw_split_equal_the_plain_conversion(tmp_path, shape, dtype, channels):
    g = np.random.default_rng(1)
    n = BLOCK + 37   # more than one conversion block
    x = g.integers(0, 256, (n, *shape)).astype(np.uint8)
    x = x if dtype == np.uint8 else (g.random((n, *shape)) ** 2).astype(dtype)
    _write(tmp_path, x[:n - 200], x[n - 200:])
    dc = DataConfig(channels=channels)
    want = _plain(x[:n - 200], x[n - 200:], channels)
    pool = load_npz_pool(f"npz:{tmp_path}", dc)
    assert pool.x.dtype == np.float32 and pool.x.tobytes() == want.tobytes()
    raw = load_npz_raw(f"npz:{tmp_path}", dc)
    idx = np.sort(g.choice(n, n // 2, replace=False))
    part = decode(raw.take(idx), dc)
    assert part.x.dtype == np.float32 and np.ascontiguousarray(part.x).tobytes() == np.ascontiguousarray(want[idx]).tobytes()
    np.testing.assert_array_equal(part.y, pool.y[idx])
    np.testing.assert_array_equal(part.is_test, pool.is_test[idx])
