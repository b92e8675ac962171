"""The data layer: domains, the digits_shifted shift, the observation model, artifacts, the prepare stage."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from tests.helpers import cfg_with
from vaeflow.tasks import prepare
from vaeflow.config import Config, ShiftConfig
from vaeflow.data import (DataError, DomainData, build_domains, build_pools, digits_shifted, load_digits_pool,
                          load_domain, observe, save_domain)
from vaeflow.io import ArtifactError
from vaeflow.paths import Paths

SPLIT_NAMES = ("train", "val", "test")


@pytest.fixture(scope="module")
def domains() -> tuple[DomainData, DomainData]:
    return build_domains(Config())


def arrays(d: DomainData) -> list[np.ndarray]:
    return [getattr(d, f"{p}_{s}") for s in SPLIT_NAMES for p in ("x", "y")]


def all_images(d: DomainData) -> np.ndarray:
    return np.concatenate([d.x_train, d.x_val, d.x_test])


# ----------------------------------------------------------------------------------------- domains

def test_types_shapes_and_level_grid(domains):
    for d in domains:
        assert d.levels == 17 and d.n_classes == 10
        for s in SPLIT_NAMES:
            x, y = d.split(s)
            assert x.dtype == np.float32 and x.shape[1:] == (1, 8, 8) and y.dtype == np.int64
            assert len(x) == len(y) > 0
            assert x.min() >= 0 and x.max() <= 1
            k = x * 16
            np.testing.assert_array_equal(k, np.rint(k))  # exactly k/16
    src, tgt = domains
    assert src.name == "digits" and tgt.name == "digits_shifted"
    # 1797 images split disjointly: together the two domains hold every image exactly once.
    assert sum(src.counts().values()) + sum(tgt.counts().values()) == 1797


def test_deterministic_given_seed(domains):
    again = build_domains(Config())
    for a, b in zip(domains, again):
        for u, v in zip(arrays(a), arrays(b)):
            np.testing.assert_array_equal(u, v)
    other = build_domains(cfg_with(seed=1))
    for a, b in zip(domains, other):
        assert not np.array_equal(a.y_train, b.y_train)
    assert not np.array_equal(domains[1].x_test, other[1].x_test)


def test_pools_disjoint_by_index_and_by_image():
    for target in ("digits_shifted", "digits"):
        s, t = build_pools(cfg_with(target=target))
        assert len(np.intersect1d(s.index, t.index)) == 0
        assert len(s.index) + len(t.index) == 1797
    # digits -> digits has no shift, so images can be compared exactly (the dataset has no duplicates).
    src, tgt = build_domains(cfg_with(target="digits"))
    seen = {img.tobytes() for img in all_images(src)}
    assert not any(img.tobytes() in seen for img in all_images(tgt))
    raw = {img.tobytes() for img in load_digits_pool().x}
    assert seen <= raw  # unshifted source images are the original digits


def test_shifted_source_works():
    src, tgt = build_domains(cfg_with(source="digits_shifted", target="digits"))
    assert src.name == "digits_shifted" and tgt.name == "digits"
    assert src.x_train.min() == 0.25 and tgt.x_train.min() == 0  # the raised background is on the source now


def test_stratified_splits(domains):
    for d in domains:
        n = sum(d.counts().values())
        for s, frac in (("val", 0.15), ("test", 0.25)):
            _, y = d.split(s)
            assert abs(len(y) / n - frac) < 0.01
            counts = np.bincount(y, minlength=10)
            assert counts.min() > 0
            # stratified: each class within 3 images of its share of the split
            assert np.all(np.abs(counts - len(y) / 10) <= 3)


def test_subset_caps_train_only():
    src, tgt = build_domains(cfg_with(subset=50))
    full_src, _ = build_domains(Config())
    for d in (src, tgt):
        assert len(d.y_train) == 50
        assert np.bincount(d.y_train, minlength=10).min() == 5
    # the cap changes nothing else: val/test stay as in the full run
    np.testing.assert_array_equal(src.x_test, full_src.x_test)
    np.testing.assert_array_equal(src.y_val, full_src.y_val)


def test_channels_3_repeats_grey(domains):
    src, tgt = build_domains(cfg_with(channels=3))
    assert src.x_train.shape[1:] == (3, 8, 8) and tgt.x_test.shape[1:] == (3, 8, 8)
    for c in range(3):
        np.testing.assert_array_equal(tgt.x_test[:, c], domains[1].x_test[:, 0])


def test_image_size_resizes_and_keeps_labels_aligned(domains):
    src, tgt = build_domains(cfg_with(image_size=16))
    assert src.x_train.shape[1:] == (1, 16, 16) and tgt.x_val.shape[1:] == (1, 16, 16)
    np.testing.assert_array_equal(src.y_test, domains[0].y_test)
    k = src.x_train * 16
    np.testing.assert_array_equal(k, np.rint(k))  # re-quantized to the same grid
    # aligned: each upsampled image, averaged back to 8×8, is closest to its own original
    small = src.x_test.reshape(-1, 8, 2, 8, 2).mean(axis=(2, 4)).reshape(len(src.x_test), -1)
    orig = domains[0].x_test.reshape(len(small), -1)
    nearest = ((small[:, None] - orig[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == np.arange(len(small))).mean() > 0.95


@pytest.mark.parametrize("name", ["mnist", "usps", "fashion_mnist", "npz:some/file.npz"])
def test_missing_dataset_files_say_so(name, tmp_path):
    # the real loaders are tested in test_real_data.py; here: no files -> a DataError, not a crash
    with pytest.raises(DataError, match="not found"):
        build_domains(cfg_with(target=name, root=str(tmp_path), download=False))


# ------------------------------------------------------------------------------------------- shift

def test_shift_deterministic_on_grid_and_each_knob_acts():
    x = load_digits_pool().x[:100]
    a = digits_shifted(x, ShiftConfig(), np.random.default_rng(5))
    b = digits_shifted(x, ShiftConfig(), np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a * 16, np.rint(a * 16))
    none = ShiftConfig(rotation_deg=0, thicken=0, contrast=1, background=0, clutter=0)
    np.testing.assert_array_equal(digits_shifted(x, none, np.random.default_rng(0)), x)
    for knob in ({"rotation_deg": 30}, {"thicken": 1}, {"contrast": 0.5}, {"background": 0.25}, {"clutter": 0.2}):
        y = digits_shifted(x, none.model_copy(update=knob), np.random.default_rng(0))
        assert np.abs(y - x).mean() > 0.01, knob
    assert np.median(a.reshape(100, -1), axis=1).min() >= 0.25 - 1e-6  # background raised


def _logreg(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LogisticRegression(max_iter=2000).fit(x.reshape(len(x), -1), y)


def _acc(m: LogisticRegression, x: np.ndarray, y: np.ndarray) -> float:
    return float(m.score(x.reshape(len(x), -1), y))


def test_shift_hurts_source_only_but_target_stays_learnable(domains):
    src, tgt = domains
    m = _logreg(src.x_train, src.y_train)
    in_domain, across = _acc(m, src.x_test, src.y_test), _acc(m, tgt.x_test, tgt.y_test)
    assert in_domain >= 0.9
    assert in_domain - across >= 0.15, (in_domain, across)
    oracle = _acc(_logreg(tgt.x_train, tgt.y_train), tgt.x_test, tgt.y_test)
    assert oracle >= 0.85, oracle
    # class information survives the shift: 5 labelled target images per class recover a lot
    few = np.concatenate([np.flatnonzero(tgt.y_train == k)[:5] for k in range(10)])
    mixed = _logreg(np.concatenate([src.x_train, tgt.x_train[few]]), np.concatenate([src.y_train, tgt.y_train[few]]))
    assert _acc(mixed, tgt.x_test, tgt.y_test) >= across + 0.2


# ----------------------------------------------------------------------------------------- observe

def test_gaussian_dequantization_stays_in_its_bin(domains):
    x = domains[1].x_train
    y = observe(x, "gaussian", 17, np.random.default_rng(0))
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == x.shape
    assert y.min() >= 0 and y.max() < 1
    np.testing.assert_array_equal(np.floor(y * 17), np.rint(x * 16))
    top = observe(torch.ones(200_000), "gaussian", 17, torch.Generator().manual_seed(0))
    assert abs(float((top * 17 - 16).mean()) - 0.5) < 0.01  # u is uniform over the bin


def test_gaussian_top_draw_does_not_round_into_next_bin(monkeypatch):
    # The largest float32 below 1 is what torch.rand can return; in float32, 16 + u rounds to 17.
    u_max = float(np.nextafter(np.float32(1), np.float32(0)))
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.full(shape, u_max, dtype=kw.get("dtype")))
    for levels in (17, 256):
        x = torch.linspace(0, 1, levels)
        y = observe(x, "gaussian", levels)
        assert y.max() < 1
        assert torch.equal(torch.floor(y * levels), torch.arange(levels, dtype=torch.float32))


def test_bernoulli_mean_matches_intensity():
    x = np.linspace(0, 1, 17, dtype=np.float32)
    draws = observe(np.tile(x, (20_000, 1)), "bernoulli", 17, np.random.default_rng(0))
    assert set(np.unique(draws)) <= {0.0, 1.0}
    # Monte-Carlo: the standard error is at most 0.5/sqrt(20000) ≈ 0.0035
    np.testing.assert_allclose(draws.mean(0), x, atol=0.015)
    assert draws[:, 0].max() == 0 and draws[:, -1].min() == 1


def test_observe_seeded_same_for_numpy_and_torch_and_reproducible():
    x = np.random.default_rng(1).integers(0, 17, size=(8, 1, 8, 8)).astype(np.float32) / 16
    for lik in ("gaussian", "bernoulli"):
        a = observe(x, lik, 17, np.random.default_rng(3))
        b = observe(x, lik, 17, np.random.default_rng(3))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, observe(x, lik, 17, np.random.default_rng(4)))
        t = observe(torch.from_numpy(x), lik, 17, torch.Generator().manual_seed(9))
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
        t2 = observe(torch.from_numpy(x), lik, 17, None)  # global RNG, as in training
        assert t2.shape == t.shape
    with pytest.raises(ValueError, match="likelihood"):
        observe(x, "poisson", 17)


# --------------------------------------------------------------------------------------- artifacts

def test_save_load_round_trip(tmp_path, domains):
    d = domains[1]
    ov, ot = observe(d.x_val, "gaussian", 17, np.random.default_rng(0)), observe(d.x_test, "gaussian", 17,
                                                                                np.random.default_rng(1))
    path = tmp_path / "target.npz"
    save_domain(path, d, ov, ot)
    back, obs = load_domain(path)
    for u, v in zip(arrays(d), arrays(back)):
        np.testing.assert_array_equal(u, v)
        assert u.dtype == v.dtype
    assert (back.levels, back.name, back.n_classes) == (17, "digits_shifted", 10)
    np.testing.assert_array_equal(obs["obs_val"], ov)
    np.testing.assert_array_equal(obs["obs_test"], ot)


def test_truncated_or_corrupt_file_is_refused(tmp_path, domains):
    d = domains[0]
    path = tmp_path / "source.npz"
    save_domain(path, d, d.x_val, d.x_test)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="source.npz"):
        load_domain(path)
    path.with_name("source.npz.sha256").unlink()  # without the checksum, the zip itself is unreadable
    with pytest.raises(ArtifactError, match="source.npz"):
        load_domain(path)


@pytest.mark.parametrize("bad", ["length", "label", "range"])
def test_inconsistent_contents_are_refused(tmp_path, domains, bad):
    from vaeflow.io import save_npz

    d = domains[0]
    z = {f"{p}_{s}": getattr(d, f"{p}_{s}").copy() for s in SPLIT_NAMES for p in ("x", "y")}
    z |= {"obs_val": d.x_val, "obs_test": d.x_test, "levels": np.array(17), "name": np.array("digits"),
          "n_classes": np.array(10)}
    if bad == "length":
        z["y_val"] = z["y_val"][:-1]
    elif bad == "label":
        z["y_test"][0] = 10
    else:
        z["x_train"][0, 0, 0, 0] = 1.5
    path = tmp_path / "source.npz"
    save_npz(path, **z)  # checksummed, so only the content check can catch it
    with pytest.raises(ArtifactError, match="source.npz"):
        load_domain(path)


# ----------------------------------------------------------------------------------- prepare stage

def test_prepare_stage(tmp_path):
    cfg = cfg_with(subset=40, likelihood="bernoulli")
    paths = Paths(tmp_path)
    summary = prepare.run(cfg, paths)
    assert summary["source"]["counts"]["train"] == 40 and summary["target"]["shape"] == [1, 8, 8]
    src, obs = load_domain(paths.domain("source"))
    tgt, _ = load_domain(paths.domain("target"))
    assert set(np.unique(obs["obs_test"])) <= {0.0, 1.0}
    meta = json.loads(paths.data_meta.read_text())
    assert meta["likelihood"] == "bernoulli"
    assert meta["domains"]["target"]["counts"] == tgt.counts()
    assert sum(meta["domains"]["source"]["class_counts"]["train"]) == 40
    assert (paths.figures / "data_examples.png").stat().st_size > 1000
    # fixed observations are reproducible: a second run writes identical arrays
    prepare.run(cfg, Paths(tmp_path / "again"))
    _, obs2 = load_domain(Paths(tmp_path / "again").domain("source"))
    np.testing.assert_array_equal(obs["obs_test"], obs2["obs_test"])
