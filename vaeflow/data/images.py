"""Image geometry shared by every dataset: resizing to a common size and converting channels.

Both keep the intensities on the dataset's level grid, so the discrete data model (dequantization or
binarization, vaeflow/data/observe.py) applies unchanged after them.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from vaeflow.data.domain import DataError
from vaeflow.data.shift import quantize

log = logging.getLogger("vaeflow")

# ITU-R 601-2 luma, the weights PIL's convert("L") uses, so grey from RGB is the same for files and arrays.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def resize(x: np.ndarray, size: int | None, levels: int) -> np.ndarray:
    """Bilinear resize of N×C×H×W to size×size, re-quantized so the level grid (data model) survives.

    Image i of the output is image i of the input resized, so labels stay aligned."""
    if size is None or x.shape[-2:] == (size, size):
        return x
    t = torch.from_numpy(np.array(x, dtype=np.float32))   # a copy: cached pools are read-only
    down = size < min(x.shape[-2:])   # antialias only when shrinking, where aliasing happens
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=down)
    return quantize(out.numpy(), levels)


def said_grey(name: str, n: int) -> None:
    """Colour data made grey by the default is easy to miss (the only other trace is `images 1×H×W` in the
    prepare line), and it changes what the models learn: a warning, once per dataset read, by the readers of
    `npz:` and `folder:` files (files.py), which are where colour images arrive."""
    # "data.channels=1 (the default)" would be wrong where a user set it: the value is what matters
    log.warning("%s: %d colour (3-channel) images converted to 1 channel (grey) because data.channels=1; set "
                "data.channels=3 to keep colour", name, n)


def to_channels(x: np.ndarray, channels: int, levels: int | None = None) -> np.ndarray:
    """N×C×H×W to `channels`. 1 -> 3 repeats the grey channel (as MNIST is made RGB for MNIST→MNIST-M);
    the content stays grey, so a likelihood over 3 channels counts every pixel three times: compare NLLs
    only at equal channels. 3 -> 1 is the luma 0.299 R + 0.587 G + 0.114 B, re-quantized to `levels`."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1 and channels == 3:
        return np.repeat(x, channels, axis=1)
    if x.shape[1] == 3 and channels == 1:
        grey = np.tensordot(LUMA, np.asarray(x, dtype=np.float32), axes=([0], [1]))[:, None]
        return quantize(grey, levels) if levels else grey.astype(np.float32)
    raise DataError(f"cannot turn {x.shape[1]}-channel images into {channels} channels")
