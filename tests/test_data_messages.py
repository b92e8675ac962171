"""Messages for user data that reads wrong: each names the file or dataset and says what to change.

NaN/inf pixels in an `npz:` float array, a file that is not an .npz archive at all, a dataset too small
for its validation split, and colour images made grey by the default data.channels=1. The errors exit
with code 2 through the real CLI, as every other bad input does (tests/test_bad_inputs.py).
"""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from vaeflow.config import Config, DataConfig
from vaeflow.data import DataError, build_domains
from vaeflow.data.files import load_folder_pool, load_npz_pool
from tests.cli_utils import sets
from tests.conftest import REPO, TINY
from tests.helpers import LogLines


def _glyphs(n: int, classes: int = 2, rgb: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n small uint8 images whose brightness follows their label, so classes differ."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = (rng.integers(0, 60, (n, 8, 8)) + 190 * y[:, None, None] // max(classes - 1, 1)).astype(np.uint8)
    return (np.stack([x, x // 2, 255 - x], axis=-1) if rgb else x), y


def _npz(root, n_train: int = 30, n_test: int = 10, **kw):
    root.mkdir(parents=True, exist_ok=True)
    x, y = _glyphs(n_train + n_test, **kw)
    np.savez(root / "train.npz", x=x[:n_train], y=y[:n_train])
    np.savez(root / "test.npz", x=x[n_train:], y=y[n_train:])
    return root


def _float_train(root, x: np.ndarray) -> None:
    _, y = _glyphs(len(x))
    np.savez(root / "train.npz", x=x, y=y)


def cfg_with(**data) -> Config:
    return Config.model_validate({"data": data})


# ------------------------------------------------------------------------ 1. NaN and inf in float images

@pytest.mark.parametrize("bad, expect", [
    ({"nan": 1}, "has 1 NaN value (in 1 of 30 images, the first is image 4)"),
    ({"inf": 2}, "has 2 inf values (in 2 of 30 images, the first is image 4)"),
    ({"nan": 3, "inf": 1}, "has 3 NaN values and 1 inf value"),
])
def test_nan_or_inf_pixels_are_named_and_counted(tmp_path, bad, expect):
    _npz(tmp_path)
    x = (_glyphs(30)[0] / 255.0).astype(np.float32)
    flat = x.reshape(len(x), -1)
    for i in range(bad.get("nan", 0)):
        flat[4 + i, 7] = np.nan
    for i in range(bad.get("inf", 0)):
        flat[4 + 5 + i if "nan" in bad else 4 + i, 3] = -np.inf if i else np.inf
    _float_train(tmp_path, x)
    with pytest.raises(DataError) as e:
        load_npz_pool(f"npz:{tmp_path}", DataConfig())
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'train.npz'}: array 'x' ") and expect in msg, msg
    assert "[0, 1] (got" not in msg  # not the range message, which hid the NaN behind a valid-looking range


def test_a_finite_out_of_range_float_still_says_the_range(tmp_path):
    _npz(tmp_path)
    _float_train(tmp_path, (_glyphs(30)[0] / 200.0).astype(np.float32))
    with pytest.raises(DataError, match=r"train\.npz: float x must lie in \[0, 1\] \(got 0\.\.1\.25\)"):
        load_npz_pool(f"npz:{tmp_path}", DataConfig())


# --------------------------------------------------------------------- 2. files that are not .npz archives

@pytest.mark.parametrize("content, reason", [
    (bytes(range(7, 256)) * 3, "not a zip archive, which every .npz file is"),
    (b"", "the file is empty"),
    (b"\x80\x04\x95 pickled", "it looks like a Python pickle"),
    ("npy", "it is a single .npy array, not an .npz archive"),
    ("truncated", "BadZipFile"),
])
def test_a_file_that_is_not_an_npz_archive_says_so(tmp_path, content, reason):
    _npz(tmp_path)
    path = tmp_path / "train.npz"
    if content == "npy":
        with open(path, "wb") as f:
            np.save(f, _glyphs(30)[0])
    elif content == "truncated":   # a zip header with its body cut off, as an interrupted download leaves it
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_bytes(content)
    with pytest.raises(DataError) as e:
        load_npz_pool(f"npz:{tmp_path}", DataConfig())
    msg = str(e.value)
    assert msg.startswith(f"{path}: unreadable .npz file (") and reason in msg, msg
    assert "pickled (object) data" not in msg and "allow_pickle" not in msg, msg


def test_a_real_npz_with_object_arrays_or_a_missing_array_says_so(tmp_path):
    _npz(tmp_path)
    x = np.empty(30, dtype=object)
    x[:] = [np.zeros((8, 8))] * 30
    np.savez(tmp_path / "train.npz", x=x, y=_glyphs(30)[1])
    with pytest.raises(DataError, match=r"^\S+train\.npz: array 'x' contains pickled \(object\) data, which vaeflow "
                                        r"does not load; store x as uint8"):
        load_npz_pool(f"npz:{tmp_path}", DataConfig())
    np.savez(tmp_path / "train.npz", x=_glyphs(30)[0], labels=_glyphs(30)[1])
    with pytest.raises(DataError, match=r"^\S+train\.npz: missing array\(s\) \['y'\]; found \['x', 'labels'\]$"):
        load_npz_pool(f"npz:{tmp_path}", DataConfig())


# -------------------------------------------------------------------- 3. too few images for a split

def test_six_images_are_too_few_for_the_validation_split(tmp_path):
    src, tgt = _npz(tmp_path / "src", n_train=6, n_test=4), _npz(tmp_path / "tgt", seed=1)
    with pytest.raises(DataError) as e:
        build_domains(cfg_with(source=f"npz:{src}", target=f"npz:{tgt}"))
    msg = str(e.value)
    assert msg == (f"npz:{src}: too few images for the validation split: 6 training images of 2 classes, of which "
                   "data.val_fraction=0.15 gives the validation split 0 and the training split 6; each needs at "
                   "least 2 (one image per class). The dataset is too small for this split: with "
                   "data.val_fraction=0.15 it needs at least 14 training images; add images or change "
                   "data.val_fraction"), msg
    assert "train_size" not in msg
    build_domains(cfg_with(source=f"npz:{src}", target=f"npz:{tgt}", val_fraction=0.4))  # 2 + 4: enough


def test_a_class_with_a_single_image_is_named(tmp_path):
    src, tgt = _npz(tmp_path / "src"), _npz(tmp_path / "tgt", classes=3, seed=1)
    x, y = _glyphs(21, classes=3)
    y[y == 2] = 0
    y[-1] = 2   # class 2: one image
    np.savez(src / "train.npz", x=x, y=y)
    np.savez(src / "test.npz", x=x, y=y)
    with pytest.raises(DataError, match=r"too few images for the validation split \(data\.val_fraction=0\.15\): "
                                        r"among the 21 training images, class\(es\) 2 have a single image"):
        build_domains(cfg_with(source=f"npz:{src}", target=f"npz:{tgt}"))


def test_one_dataset_as_source_and_target_says_the_count_is_a_share(tmp_path):
    src = _npz(tmp_path, n_train=6, n_test=4)
    with pytest.raises(DataError, match=r"training images of 2 classes \(this domain's share: source and target "
                                        r"are cut from one dataset, data\.source_fraction\)"):
        build_domains(cfg_with(source=f"npz:{src}", target=f"npz:{src}"))


def test_random_splits_name_their_fraction(tmp_path):
    src, tgt = _npz(tmp_path / "src", n_train=6, n_test=4), _npz(tmp_path / "tgt", seed=1)
    with pytest.raises(DataError, match=r"too few images for the validation split: \d+ images left after the test "
                                        r"split of 2 classes, of which data\.val_fraction=0\.15"):
        build_domains(cfg_with(source=f"npz:{src}", target=f"npz:{tgt}", test_split="random"))


# ------------------------------------------------- 1-3 through the CLI: exit code 2, the message, no traceback

@pytest.mark.parametrize("case, expect", [
    ("nan", "train.npz: array 'x' has 1 NaN value"),
    ("garbage", "train.npz: unreadable .npz file (not a zip archive"),
    ("tiny", "too few images for the validation split: 6 training images"),
])
def test_the_cli_exits_2_with_the_message(tmp_path, monkeypatch, case, expect):
    from vaeflow.flows.cli import app

    src, tgt = _npz(tmp_path / "src", n_train=6 if case == "tiny" else 30), _npz(tmp_path / "tgt", seed=1)
    if case == "nan":
        x = (_glyphs(30)[0] / 255.0).astype(np.float32)
        x[0, 0, 0] = np.nan
        _float_train(src, x)
    elif case == "garbage":
        (src / "train.npz").write_bytes(bytes(range(256)))
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["stage", "prepare", *sets(TINY), "--set", f"data.source=npz:{src}",
                                   "--set", f"data.target=npz:{tgt}"])
    out = res.output
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), out
    # rich wraps long lines, inside a long path too: compare without any whitespace
    assert "".join(expect.split()) in "".join(out.split()) and "Traceback" not in out, out
    assert not (tmp_path / "data").exists()


# ------------------------------------------------------------------ 4. colour made grey: one warning

def _grey(log: LogLines) -> list[logging.LogRecord]:
    """The records of the one warning about colour images made grey."""
    return [r for r in log.records if "data.channels=3" in r.getMessage()]


def _rgb_folder(root, n: int = 3):
    from PIL import Image

    x, _ = _glyphs(2 * n, rgb=True)
    for split in ("train", "test"):
        for c in ("0", "1"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(x[2 * i + int(c)]).save(root / split / c / f"{i}.png")
    return root


@pytest.mark.parametrize("kind", ["folder", "npz"])
def test_colour_made_grey_is_one_warning_naming_the_dataset(tmp_path, kind):
    root = _rgb_folder(tmp_path) if kind == "folder" else _npz(tmp_path, rgb=True)
    load = load_folder_pool if kind == "folder" else load_npz_pool
    name = f"{kind}:{root}"
    with (log := LogLines(level=logging.INFO)):
        pool = load(name, DataConfig())
    assert pool.x.shape[1] == 1
    [rec] = _grey(log)
    n = 12 if kind == "folder" else 40
    assert rec.name == "vaeflow" and rec.levelno == logging.WARNING
    assert rec.getMessage() == (f"{name}: {n} colour (3-channel) images converted to 1 channel (grey) because "
                                "data.channels=1; set data.channels=3 to keep colour")
    with (log := LogLines(level=logging.INFO)):
        assert load(name, DataConfig(channels=3)).x.shape[1] == 3
    assert not _grey(log)


def test_grey_data_and_a_whole_build_warn_as_they_should(tmp_path):
    """Grey files: no warning. One colour npz as source and target (read once, then split): one warning."""
    grey, colour = _npz(tmp_path / "grey"), _npz(tmp_path / "colour", rgb=True)
    with (log := LogLines(level=logging.INFO)):
        load_npz_pool(f"npz:{grey}", DataConfig())
    assert not _grey(log)
    with (log := LogLines(level=logging.INFO)):
        build_domains(cfg_with(source=f"npz:{colour}", target=f"npz:{colour}", val_fraction=0.4))
    [rec] = _grey(log)
    assert rec.getMessage().startswith(f"npz:{colour}: 40 colour (3-channel) images"), rec.getMessage()
