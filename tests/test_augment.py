"""Batched augmentation: exact warps against hand-shifted images, matrices within their bounds, noise with
the asked-for moments, and determinism under a seed."""
from __future__ import annotations

import math

import pytest
import torch

from vaeflow.config import AugmentConfig
from vaeflow.training.augment import affine_matrices, augment, is_identity

OFF = AugmentConfig(translate=0, rotate_deg=0, scale=0, shear_deg=0, noise=0)
ON = AugmentConfig(translate=0.1, rotate_deg=10, scale=0.1, shear_deg=5, noise=0.1)


def _images(n=16, c=1, side=12, seed=0, dtype=torch.float32):
    return torch.rand(n, c, side, side, generator=torch.Generator().manual_seed(seed)).to(dtype)


def test_off_is_the_identity_and_draws_nothing():
    x = _images()
    torch.manual_seed(3)
    before = torch.get_rng_state()
    assert is_identity(OFF) and augment(x, OFF) is x
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("channels, dtype", [(1, torch.float32), (3, torch.float32), (3, torch.float64)])
def test_shape_dtype_device_kept_and_seeded(channels, dtype):
    x = _images(c=channels, dtype=dtype)
    a = augment(x, ON, torch.Generator().manual_seed(7))
    b = augment(x, ON, torch.Generator().manual_seed(7))
    c = augment(x, ON, torch.Generator().manual_seed(8))
    assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
    assert torch.equal(a, b) and not torch.equal(a, c)
    # The global RNG path is covered by checkpoints (runtime.rng_state): the same seed gives the same batch.
    torch.manual_seed(1)
    g1 = augment(x, ON)
    torch.manual_seed(1)
    assert torch.equal(g1, augment(x, ON))


def test_a_one_pixel_translation_is_an_exact_shift_with_zero_fill():
    side = 10
    x = _images(n=2, side=side)
    # affine_grid's units: the image spans [-1, 1], so one pixel is 2/side; the output at column j samples
    # the input at column j+1, i.e. the content moves one pixel left.
    theta = torch.tensor([[1.0, 0.0, 2.0 / side], [0.0, 1.0, 0.0]]).expand(2, 2, 3)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    assert torch.allclose(out[..., :-1], x[..., 1:], atol=1e-6)
    assert torch.allclose(out[..., -1], torch.zeros_like(out[..., -1]), atol=1e-6)


def test_matrices_stay_inside_their_bounds():
    cfg = AugmentConfig(translate=0.1, rotate_deg=30, scale=0.2, shear_deg=10, noise=0)
    th = affine_matrices(4000, cfg, torch.zeros(1), torch.Generator().manual_seed(0))
    det = torch.linalg.det(th[:, :, :2].double())
    # rotation and shear have determinant 1, so det = 1/zoom² with zoom in [0.8, 1.2]
    assert det.min() >= 1 / 1.2**2 - 1e-6 and det.max() <= 1 / 0.8**2 + 1e-6
    assert th[:, :, 2].abs().max() <= 0.2 + 1e-6 and th[:, :, 2].abs().max() > 0.19  # 2·translate, reached
    rot_only = affine_matrices(4000, AugmentConfig(rotate_deg=30, translate=0, scale=0, shear_deg=0), torch.zeros(1),
                               torch.Generator().manual_seed(1))
    angles = torch.atan2(rot_only[:, 1, 0], rot_only[:, 0, 0])
    assert angles.abs().max() <= math.radians(30) + 1e-6 and angles.abs().max() > math.radians(29)
    assert torch.allclose(rot_only[:, 0, 0], rot_only[:, 1, 1], atol=1e-6)  # a pure rotation


def test_noise_has_the_configured_moments():
    x = torch.full((64, 3, 16, 16), 0.5)
    out = augment(x, AugmentConfig(noise=0.2, translate=0, rotate_deg=0, scale=0, shear_deg=0),
                  torch.Generator().manual_seed(0))
    d = out - x
    n = d.numel()  # 49,152 draws: the standard error of the mean is 0.2/sqrt(n) ≈ 0.0009
    assert abs(d.mean().item()) < 5 * 0.2 / math.sqrt(n)
    assert d.std().item() == pytest.approx(0.2, rel=0.02)


def test_intensity_flip_mirrors_each_image_about_its_mean_and_standardised_is_the_negative():
    from vaeflow.models.classifier import standardize
    x = _images(n=8, c=3)
    out = augment(x, AugmentConfig(intensity_flip=1.0, translate=0, rotate_deg=0, scale=0, shear_deg=0, noise=0),
                  torch.Generator().manual_seed(0))
    m = x.mean(dim=(1, 2, 3), keepdim=True)  # a direct computation, per image over pixels and channels
    assert torch.allclose(out, 2 * m - x, atol=1e-6)
    assert torch.allclose(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-6)
    assert torch.allclose(standardize(out), -standardize(x), atol=1e-4)  # French et al.'s −x on standardised images


def test_intensity_flip_flips_the_asked_share_of_images_and_leaves_the_rest_untouched():
    x = _images(n=4000, c=1, side=4)
    out = augment(x, AugmentConfig(intensity_flip=0.3, translate=0, rotate_deg=0, scale=0, shear_deg=0, noise=0),
                  torch.Generator().manual_seed(1))
    same = (out == x).flatten(1).all(1)
    flipped = torch.isclose(out, 2 * x.mean(dim=(1, 2, 3), keepdim=True) - x, atol=1e-6).flatten(1).all(1)
    assert bool((same ^ flipped).all())  # every image is either itself or its mirror, never both or neither
    share = flipped.float().mean().item()  # binomial(4000, 0.3): standard error 0.0072
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 4000)


def test_intensity_flip_off_leaves_the_other_draws_unchanged():
    # a run with the knob at 0 draws exactly what it drew before the knob existed (resumed runs, old figures)
    x = _images(c=3)
    with_flip_off = augment(x, ON.model_copy(update={"intensity_flip": 0.0}), torch.Generator().manual_seed(5))
    assert torch.equal(with_flip_off, augment(x, ON, torch.Generator().manual_seed(5)))
    assert not is_identity(OFF.model_copy(update={"intensity_flip": 0.5}))


def _printed(n: int, light_on_dark: bool, c: int = 3, side: int = 10) -> torch.Tensor:
    """n images of a bar (the figure) on a plain ground, in one polarity."""
    x = torch.full((n, c, side, side), 0.1 if light_on_dark else 0.9)
    x[:, :, 3:7, 4:6] = 0.9 if light_on_dark else 0.1
    return x


def test_dark_on_light_counts_the_images_whose_border_is_brighter_than_the_whole():
    from vaeflow.training.augment import dark_on_light
    x = torch.cat([_printed(30, True), _printed(10, False)])
    assert dark_on_light(x) == pytest.approx(10 / 40)
    assert dark_on_light(_printed(5, True, c=1)) == 0.0 and dark_on_light(_printed(5, False, c=1)) == 1.0
    # the direct computation on random images: the mean of the outermost ring against the image mean
    r = _images(n=50, c=3, side=6)
    g = r.mean(1)
    ring = torch.cat([g[:, 0], g[:, -1], g[:, 1:-1, 0], g[:, 1:-1, -1]], 1)
    assert ring.shape[1] == 4 * 6 - 4
    assert dark_on_light(r) == pytest.approx(float((ring.mean(1) > g.flatten(1).mean(1)).float().mean()))


@pytest.mark.parametrize("shares, flip", [([0.0, 0.0], 0.0), ([0.0, 0.97], 0.5), ([0.49, 0.49], 0.5),
                                          ([0.05, 0.1], 0.0), ([1.0, 1.0], 0.0), ([0.2, 0.0], 0.5)])
def test_auto_flip_is_on_where_the_domains_show_both_polarities(shares, flip):
    from vaeflow.training.augment import auto_flip
    assert auto_flip(shares) == flip


def test_resolve_auto_reads_the_images_and_leaves_a_number_alone():
    from vaeflow.config.adapt import AdaptConfig
    from vaeflow.training.augment import resolve_auto
    auto = AdaptConfig()
    assert auto.augment.intensity_flip == "auto"
    light = _printed(20, True)
    assert resolve_auto(auto, light, light).augment.intensity_flip == 0.0
    assert resolve_auto(auto, light, _printed(20, False)).augment.intensity_flip == 0.5  # the domains differ
    fixed = auto.model_copy(update={"augment": auto.augment.model_copy(update={"intensity_flip": 0.25})})
    assert resolve_auto(fixed, light, _printed(20, False)) is fixed
    # FixMatch's strong view may say auto too, and gets the same value; a number there stays
    both = AdaptConfig(fixmatch={"strong": {"intensity_flip": "auto"}}, augment={"intensity_flip": 0.25})
    out = resolve_auto(both, light, _printed(20, False))
    assert out.fixmatch.strong.intensity_flip == 0.5 and out.augment.intensity_flip == 0.25
    assert out.fixmatch.strong.translate == both.fixmatch.strong.translate  # the rest of the view is kept


def test_an_unresolved_auto_or_a_bad_value_is_refused_by_name():
    from pydantic import ValidationError
    with pytest.raises(ValueError, match="intensity_flip='auto'"):
        augment(_images(), AugmentConfig(intensity_flip="auto"))
    for bad in ("sometimes", 1.5, -0.1):
        with pytest.raises(ValidationError, match="intensity_flip"):
            AugmentConfig(intensity_flip=bad)


def test_the_report_says_the_flip_the_runs_trained_with():
    """The report's pipeline line: "auto" with the value the adapt stage resolved it to (metrics/adapt.json), a
    number as set, 0 not at all; a metrics file without the value (an older run) keeps the setting's word."""
    from vaeflow.tasks.evaluate import _flip_text

    assert _flip_text("auto", 0.0) == ", intensity flip 0 (auto)"
    assert _flip_text("auto", 0.5) == ", intensity flip 0.5 (auto)"
    assert _flip_text("auto", None) == ", intensity flip auto"
    assert _flip_text(0.5, 0.5) == ", intensity flip 0.5"
    assert _flip_text(0.0, 0.0) == ""
