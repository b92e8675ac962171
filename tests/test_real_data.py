"""Real datasets (MNIST, USPS from ../shared/data), bring-your-own data (folder:, npz:), and the presets."""
from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vaeflow.config import Config, DataConfig, load_config
from vaeflow.data import DataError, build_domains
from vaeflow.data.files import load_folder_pool, load_npz_pool
from vaeflow.data.mnist import load_idx_pool
from vaeflow.data.usps import load_usps_pool, parse_esl, parse_libsvm

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"   # as in conftest.py
needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared datasets not present at {SHARED_DATA}")
ROOT = str(SHARED_DATA)
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]   # published class counts
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
README_MD5 = {"mnist/train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
              "mnist/train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
              "mnist/t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
              "mnist/t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
              "usps/zip.train.gz": "206835541ea704bcfb4b6eea872678bf",
              "usps/zip.test.gz": "f9350e940232b89f1dc8f8eacac88625"}


def dc(**kw) -> DataConfig:
    return DataConfig(**{"root": ROOT, **kw})


def cfg(**data) -> Config:
    return Config.model_validate({"data": {"root": ROOT, **data}})


# ----------------------------------------------------------------------------------- shared files

@needs_data
def test_shared_files_match_the_readme_md5s():
    for rel, md5 in README_MD5.items():
        assert hashlib.md5((SHARED_DATA / rel).read_bytes()).hexdigest() == md5


@needs_data
def test_mnist_loader_shapes_counts_and_grid():
    p = load_idx_pool("mnist", dc())
    assert p.x.shape == (70000, 1, 28, 28) and p.x.dtype == np.float32 and p.levels == 256
    assert p.is_test.sum() == 10000 and not p.is_test[:60000].any()
    assert np.bincount(p.y[~p.is_test]).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(p.y[p.is_test]).tolist() == MNIST_TEST_COUNTS
    assert p.y[0] == 5 and p.y[60000] == 7                # the first train digit is a 5, the first test a 7
    assert p.x.min() == 0 and p.x.max() == 1
    k = p.x[:500] * 255
    np.testing.assert_allclose(k, np.rint(k), atol=1e-4)   # on the 256-level grid
    raw = np.frombuffer(gzip.open(SHARED_DATA / "mnist/t10k-images-idx3-ubyte.gz").read()[16:], np.uint8)
    np.testing.assert_array_equal(np.rint(p.x[60000:60003, 0] * 255), raw[:3 * 784].reshape(3, 28, 28))


@needs_data
def test_usps_loader_shapes_counts_and_grid():
    p = load_usps_pool("usps", dc())
    assert p.x.shape == (9298, 1, 16, 16) and p.is_test.sum() == 2007 and p.levels == 256
    labels = [int(float(line.split()[0])) for line in gzip.open(SHARED_DATA / "usps/zip.train.gz", "rt")]
    assert p.y[:7291].tolist() == labels
    assert np.bincount(p.y[:7291]).tolist() == [1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644]
    assert p.x.min() == 0 and p.x.max() == 1
    np.testing.assert_allclose(p.x * 255, np.rint(p.x * 255), atol=1e-4)


@needs_data
def test_usps_libsvm_test_split_is_the_same_images_as_esl():
    a, ya = parse_esl(SHARED_DATA / "usps/zip.test.gz")
    b, yb = parse_libsvm(SHARED_DATA / "usps/usps.t.bz2")
    np.testing.assert_array_equal(ya, yb)
    assert b.min() >= -1 and b.max() <= 1
    z = lambda v: (v - v.mean(1, keepdims=True)) / v.std(1, keepdims=True)  # noqa: E731
    own = (z(a) * z(b)).mean(1)                            # correlation of image i in both files
    other = (z(a) * np.roll(z(b), 1, axis=0)).mean(1)      # ... with the next image instead
    assert np.median(own) > 0.95 and (own > other).mean() > 0.9   # same images and order, other scaling


@needs_data
def test_mnist_usps_domains_are_resized_and_labels_stay_aligned():
    src, tgt = build_domains(cfg(source="mnist", target="usps", image_size=28, val_fraction=0.1))
    assert src.image_shape == tgt.image_shape == (1, 28, 28)
    assert src.counts() == {"train": 54000, "val": 6000, "test": 10000}
    assert tgt.counts() == {"train": 6562, "val": 729, "test": 2007}
    esl, y = parse_esl(SHARED_DATA / "usps/zip.test.gz")
    np.testing.assert_array_equal(tgt.y_test, y)          # the official test split, in file order
    # each resized image, shrunk back to 16×16, is nearest to its own original
    back = F.interpolate(torch.from_numpy(tgt.x_test), size=(16, 16), mode="bilinear", antialias=True)
    back = back.numpy().reshape(len(y), -1)
    orig = (esl + 1) / 2
    nearest = np.concatenate([((back[i:i + 200, None] - orig[None]) ** 2).sum(-1).argmin(1)
                              for i in range(0, 600, 200)])
    assert (nearest == np.arange(600)).mean() > 0.95


@needs_data
def test_same_dataset_on_both_sides_is_split_disjointly_and_keeps_the_official_test():
    src, tgt = build_domains(cfg(source="mnist", target="mnist", val_fraction=0.05))
    assert src.counts()["test"] + tgt.counts()["test"] == 10000
    assert sum(src.counts().values()) + sum(tgt.counts().values()) == 70000
    assert np.bincount(np.concatenate([src.y_test, tgt.y_test])).tolist() == MNIST_TEST_COUNTS


# ------------------------------------------------------------------------------ missing and corrupt

@needs_data
def test_missing_files_say_which_file_to_put_where(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*" + str(tmp_path / "mnist")):
        build_domains(cfg(source="mnist", target="usps", image_size=28, root=str(tmp_path), download=False))
    with pytest.raises(DataError, match="zip.train.gz"):
        load_usps_pool("usps", dc(root=str(tmp_path)))


def _copy_mnist(tmp_path: Path) -> Path:
    shutil.copytree(SHARED_DATA / "mnist", tmp_path / "mnist")
    return tmp_path / "mnist"


@needs_data
def test_truncated_mnist_file_is_caught_by_md5_and_without_it(tmp_path):
    folder = _copy_mnist(tmp_path)
    f = folder / "t10k-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:2000])
    with pytest.raises(DataError, match=f"{f}: md5 .* does not match"):
        load_idx_pool("mnist", dc(root=str(tmp_path)))
    with pytest.raises(DataError, match=f"{f}: cannot be read.*truncated"):
        load_idx_pool("mnist", dc(root=str(tmp_path), verify_md5=False))


@needs_data
def test_idx_file_shorter_than_its_header_is_rejected(tmp_path):
    folder = _copy_mnist(tmp_path)
    f = folder / "t10k-labels-idx1-ubyte.gz"
    f.write_bytes(gzip.compress(gzip.decompress(f.read_bytes())[:5000]))   # valid gzip, short payload
    with pytest.raises(DataError, match=f"{f}: header promises 10000 values but the file holds 4992"):
        load_idx_pool("mnist", dc(root=str(tmp_path), verify_md5=False))


@needs_data
def test_truncated_usps_file_names_the_line(tmp_path):
    (tmp_path / "usps").mkdir()
    lines = gzip.open(SHARED_DATA / "usps/zip.train.gz", "rt").read().splitlines()
    (tmp_path / "usps/zip.train.gz").write_bytes(gzip.compress(("\n".join(lines[:10]) + "\n" + lines[10][:100]).encode()))
    shutil.copy(SHARED_DATA / "usps/zip.test.gz", tmp_path / "usps/zip.test.gz")
    with pytest.raises(DataError, match="zip.train.gz: md5"):
        load_usps_pool("usps", dc(root=str(tmp_path)))
    with pytest.raises(DataError, match="zip.train.gz: line 11 has"):
        load_usps_pool("usps", dc(root=str(tmp_path), verify_md5=False))


# ------------------------------------------------------------------------------- folder: and npz:

def _glyphs(n: int, classes: int, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    x[:, :, 0] = (y * 40)[:, None].astype(np.uint8)   # the label is visible in the first column
    return x, y


def _write_folder(root: Path, n: int = 30, classes: int = 3, rgb_first: bool = False) -> tuple[np.ndarray, np.ndarray]:
    x, y = _glyphs(n, classes)
    for i, (img, c) in enumerate(zip(x, y)):
        split = "test" if i % 5 == 0 else "train"
        d = root / split / f"c{c}"
        d.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(img)
        if rgb_first and i == 1:
            im = im.convert("RGB")      # grey content in an RGB file: luma gives the same grey
        im.save(d / f"{i:03d}.png")
    return x, y


def test_folder_loader_reads_imagefolder_layout(tmp_path):
    x, y = _write_folder(tmp_path, rgb_first=True)
    p = load_folder_pool(f"folder:{tmp_path}", DataConfig())
    assert p.x.shape == (30, 1, 8, 8) and p.n_classes == 3 and p.levels == 256
    assert p.is_test.sum() == 6
    train = [i for i in range(30) if i % 5]
    order = sorted(train, key=lambda i: (y[i], i)) + sorted(set(range(30)) - set(train), key=lambda i: (y[i], i))
    np.testing.assert_array_equal(p.y, y[order])
    np.testing.assert_allclose(p.x[:, 0] * 255, x[order], atol=1e-3)


def test_folder_as_target_with_digits_source_needs_equal_levels_and_classes(tmp_path):
    _write_folder(tmp_path)
    with pytest.raises(DataError, match="differ in intensity levels or classes"):
        build_domains(cfg(source="digits", target=f"folder:{tmp_path}"))


def test_folder_bad_inputs_name_the_file(tmp_path):
    _write_folder(tmp_path)
    bad = tmp_path / "train" / "c1" / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match=f"{bad}: unreadable image"):
        load_folder_pool(f"folder:{tmp_path}", DataConfig())
    bad.unlink()
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "train" / "c1" / "big.png")
    with pytest.raises(DataError, match="differ in size.*data.image_size"):
        load_folder_pool(f"folder:{tmp_path}", DataConfig())
    p = load_folder_pool(f"folder:{tmp_path}", DataConfig(image_size=8))
    assert p.x.shape == (31, 1, 8, 8)
    one = tmp_path / "one"
    (one / "train" / "a").mkdir(parents=True)
    (one / "test" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="fewer than 2 class folders"):
        load_folder_pool(f"folder:{one}", DataConfig())


def _write_npz(root: Path, **splits) -> None:
    root.mkdir(exist_ok=True)
    for split, (x, y) in splits.items():
        np.savez(root / f"{split}.npz", x=x, y=y)


def test_npz_loader_uint8_float_and_rgb(tmp_path):
    x, y = _glyphs(40, 4)
    _write_npz(tmp_path, train=(x[:30], y[:30]), test=((x[30:] / 255.0).astype(np.float32), y[30:]))
    p = load_npz_pool(f"npz:{tmp_path}", DataConfig())
    assert p.x.shape == (40, 1, 8, 8) and p.n_classes == 4 and p.is_test.sum() == 10
    np.testing.assert_allclose(p.x[:, 0] * 255, x, atol=1e-3)
    np.testing.assert_array_equal(p.y, y)
    rgb = np.stack([x, x // 2, 255 - x], axis=-1)          # N×H×W×3
    _write_npz(tmp_path, train=(rgb[:30], y[:30]), test=(rgb[30:], y[30:]))
    grey = load_npz_pool(f"npz:{tmp_path}", DataConfig(channels=1))
    luma = 0.299 * x + 0.587 * (x // 2) + 0.114 * (255.0 - x)
    np.testing.assert_allclose(grey.x[:, 0] * 255, np.rint(luma), atol=1e-3)
    colour = load_npz_pool(f"npz:{tmp_path}", DataConfig(channels=3))
    np.testing.assert_allclose(colour.x[:, 2] * 255, 255.0 - x, atol=1e-3)


@pytest.mark.parametrize("case, message", [
    ("lengths", "train.npz: x has 30 images but y has shape \\(29,\\)"),
    ("range", "test.npz: labels span 0..7, outside 0..3"),
    ("negative", "train.npz: labels span -1..3"),
    ("one_class", "train.npz: fewer than 2 classes"),
    ("float_range", "train.npz: float x must lie in \\[0, 1\\]"),
    ("shape", "train.npz: x has shape \\(30, 64\\)"),
    ("not_zip", "train.npz: unreadable .npz"),
    ("missing", "test.npz not found"),
])
def test_npz_bad_files_name_the_file(tmp_path, case, message):
    x, y = _glyphs(40, 4)
    tr, te = (x[:30], y[:30].copy()), (x[30:], y[30:].copy())
    if case == "lengths":
        tr = (x[:30], y[:29])
    elif case == "range":
        te[1][0] = 7
    elif case == "negative":
        tr[1][0] = -1
    elif case == "one_class":
        tr = (x[:30], np.zeros(30, np.int64))
    elif case == "float_range":
        tr = (x[:30].astype(np.float32), y[:30])
    elif case == "shape":
        tr = (x[:30].reshape(30, 64), y[:30])
    _write_npz(tmp_path, train=tr, test=te)
    if case == "not_zip":
        (tmp_path / "train.npz").write_bytes(b"garbage")
    if case == "missing":
        (tmp_path / "test.npz").unlink()
    with pytest.raises(DataError, match=message):
        load_npz_pool(f"npz:{tmp_path}", DataConfig())


# ----------------------------------------------------------------------------------------- presets

PRESETS = ["mnist_binary", "mnist_usps", "usps_mnist", "mnist_100labels"]
SMOKE = ["device=cpu", "threads=1", f"data.root={ROOT}", "data.subset=200", "data.eval_subset=40",
         "gmm.n_components=5", "gmm.max_iter=5", "pretrain.epochs=1", "adapt.epochs=1", "adapt.repeats=1",
         "eval.iwae_samples=10", "eval.iwae_chunk=10",
         # the autoencoders stage trains up to ae.epochs (100 in the presets) on the subset: ~90 s a preset
         "ae.epochs=1", "samplers.classifier_epochs=2", "samplers.latent_components=[1,2]"]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_validates(name):
    c = load_config(REPO / "configs" / f"{name}.yaml")
    assert c.data.source in ("mnist", "usps") and c.data.root == "../shared/data"


@pytest.mark.slow  # every stage on real MNIST/USPS files
@needs_data
@pytest.mark.parametrize("name", PRESETS)
def test_preset_smoke_runs_end_to_end(name, tmp_path):
    from vaeflow.tasks import STAGES
    from vaeflow.paths import Paths
    from vaeflow.prepared import load_prepared

    c = load_config(REPO / "configs" / f"{name}.yaml", SMOKE)
    paths = Paths(tmp_path)
    out = {stage: fn(c, paths) for stage, fn in STAGES.items()}
    assert out["prepare"]["source"]["shape"] == [1, 28, 28] and out["prepare"]["levels"] == 256
    assert out["pretrain"]["iwae_samples"] == 10 and np.isfinite(out["pretrain"]["test_nll_nats"])
    assert set(out["adapt"]["variants"]) == set(c.adapt.variants)
    n_test = len(load_prepared(paths).target.y_test)
    for name, r in out["adapt"]["variants"].items():  # the headline accuracy is what its confusion matrix says
        conf = np.array(r["confusion"])
        assert conf.sum() == n_test and conf.shape[0] == conf.shape[1] == 10, name
        assert np.trace(conf) / n_test == pytest.approx(r["target_test_acc_runs"][0]), name
        assert r["target_test_acc"] == pytest.approx(np.mean(r["target_test_acc_runs"])), name
    assert (tmp_path / "metrics" / "metrics.json").is_file()
