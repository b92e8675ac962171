"""Batched data augmentation on the training device: random affine warps, intensity flips and Gaussian noise.

One call transforms a whole batch with one `affine_grid` + `grid_sample`, on whatever device the batch is
on: no per-image Python loop, no PIL, no host round trip. Randomness comes from torch's global RNG of that
device (or an explicit generator), which every checkpoint saves, so a resumed run draws the same warps.

French et al. (2018) found the augmentation, not the method, to be the lever on the digit benchmarks
(self-ensembling: ~88/92 % with noise only, ~98/99 % with small translations and affine jitter).
"""
from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from vaeflow.config import AugmentConfig


log = logging.getLogger(__name__)
NO_AUGMENT = AugmentConfig(translate=0, rotate_deg=0, scale=0, shear_deg=0, noise=0)


def is_identity(cfg: AugmentConfig) -> bool:
    return not any((cfg.translate, cfg.rotate_deg, cfg.scale, cfg.shear_deg, cfg.noise, cfg.intensity_flip))


def _uniform(n: int, bound: float, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """n draws from U(-bound, bound); a zero bound draws nothing, so switching a knob off keeps the others'
    random streams unchanged."""
    if bound == 0:
        return torch.zeros(n, device=like.device, dtype=like.dtype)
    return (torch.rand(n, device=like.device, dtype=like.dtype, generator=generator) * 2 - 1) * bound


def affine_matrices(n: int, cfg: AugmentConfig, like: torch.Tensor,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 2, 3) matrices for `F.affine_grid`, in its normalised coordinates ([-1, 1] across the image):
    rotation · shear / zoom, then a shift of at most `translate` image sides (2·translate in those units)."""
    ang = _uniform(n, math.radians(cfg.rotate_deg), like, generator)
    shear = _uniform(n, math.radians(cfg.shear_deg), like, generator)
    zoom = 1 + _uniform(n, cfg.scale, like, generator)
    tx = _uniform(n, 2 * cfg.translate, like, generator)
    ty = _uniform(n, 2 * cfg.translate, like, generator)
    cos, sin, tan = ang.cos(), ang.sin(), shear.tan()
    # [[cos, -sin], [sin, cos]] @ [[1, tan], [0, 1]], divided by the zoom: affine_grid maps output pixels to
    # the input positions they sample, so dividing by the zoom enlarges the content.
    theta = torch.stack([
        torch.stack([cos, cos * tan - sin, tx], 1),
        torch.stack([sin, sin * tan + cos, ty], 1)], 1)
    theta[:, :, :2] /= zoom[:, None, None]
    return theta


def affine_grid(theta: torch.Tensor, size) -> torch.Tensor:
    """F.affine_grid(theta, (N, C, H, W), align_corners=False), by broadcasting: grid[n, h, w] =
    theta[n] @ (x_w, y_h, 1). Why: F.affine_grid multiplies an (N, H·W, 3) base grid by theta with a batched
    3-term matmul that costs ~0.5 ms at 64×28×28 on one core (half of `augment`, three times per
    mean-teacher step); this is ~10x less. Same base coordinates as torch's, equal to it up to float
    rounding of the 3-term sum (tests/test_speed_equivalence.py)."""
    def centres(n: int) -> torch.Tensor:  # pixel centres in [-1, 1], computed as affine_grid's base grid is
        if n <= 1:
            return torch.zeros(n, device=theta.device, dtype=theta.dtype)
        return torch.linspace(-1, 1, n, device=theta.device, dtype=theta.dtype) * (n - 1) / n

    h, w = size
    xs, ys = centres(w), centres(h)
    t = theta[:, None, None]  # (N, 1, 1, 2, 3)
    return t[..., 0] * xs[None, None, :, None] + (t[..., 1] * ys[None, :, None, None] + t[..., 2])  # (N, H, W, 2)


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """A randomly warped and noised copy of the batch `x` (N×C×H×W), same shape, dtype and device.
    With every knob at zero, `x` itself (and no random draw)."""
    if is_identity(cfg):
        return x
    if cfg.translate or cfg.rotate_deg or cfg.scale or cfg.shear_deg:
        theta = affine_matrices(len(x), cfg, x, generator)
        grid = affine_grid(theta, x.shape[-2:])
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode=cfg.padding, align_corners=False)
    if cfg.intensity_flip:
        x = intensity_flip(x, cfg.intensity_flip, generator)
    if cfg.noise:
        x = x + cfg.noise * torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
    return x


def intensity_flip(x: torch.Tensor, prob: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image, with probability `prob`, mirrored about its own mean over pixels and channels: 2·mean − x. The
    mean is kept and every deviation from it negated, so under per-image standardisation it is exactly −x (French et
    al. negate standardised images); a dark background becomes a light one of the same distance from the mean.
    After the warp, so that the pixels its zero padding moved in are flipped with the background they continue."""
    if isinstance(prob, str):
        raise ValueError(f"adapt.augment.intensity_flip={prob!r} must be resolved to a probability first "
                         "(resolve_auto)")
    flip = torch.rand(len(x), device=x.device, generator=generator) < prob
    mean = x.flatten(1).mean(1).view((-1,) + (1,) * (x.dim() - 1))
    return torch.where(flip.view(mean.shape), 2 * mean - x, x)


def dark_on_light(x: torch.Tensor, limit: int = 5000) -> float:
    """The share of images (the first `limit`) whose border, the outermost ring of pixels, is brighter than the image
    as a whole (channels averaged): a dark figure on a light ground. No label is read."""
    g = x[:limit].float().mean(1)  # (n, h, w)
    ring = torch.cat([g[:, 0, :], g[:, -1, :], g[:, 1:-1, 0], g[:, 1:-1, -1]], 1).mean(1)
    return float((ring > g.flatten(1).mean(1)).float().mean()) if len(g) else 0.0


AUTO_FLIP_MINORITY = 0.1  # images of the rarer polarity (each domain weighted equally) that switch auto on


def auto_flip(shares: list[float], minority: float = AUTO_FLIP_MINORITY) -> float:
    """intensity_flip for "auto", from each domain's `dark_on_light` share: 0.5 (French et al.'s) where the domains,
    weighted equally, show both polarities, the rarer in at least `minority` of the images; 0 where (nearly) every
    image has the same one. Why not always: a flip teaches an invariance that costs a small network accuracy where
    no image needs it (the default flow's light-on-dark digits lost 3-40 points, bench/RESULTS.md). Where the domains
    differ in polarity (light digits → dark ones) the mean is near 0.5 and the flip is on."""
    p = sum(shares) / len(shares)
    return 0.5 if min(p, 1 - p) >= minority else 0.0


def resolve_auto(a, xs: torch.Tensor, xt: torch.Tensor):
    """The adapt section `a` as the methods train with it: intensity_flip "auto" (in adapt.augment, or in the strong
    view, adapt.fixmatch.strong) becomes a probability, from the two domains' unlabelled training images xs, xt.
    Other settings stay as set."""
    views = {"augment": a.augment, "strong": a.fixmatch.strong}
    if all(v.intensity_flip != "auto" for v in views.values()):
        return a
    shares = [dark_on_light(xs), dark_on_light(xt)]
    p = auto_flip(shares)
    log.info("adapt: intensity_flip auto → %g (images dark on light: source %.2f, target %.2f)", p, *shares)
    v = {k: c.model_copy(update={"intensity_flip": p}) if c.intensity_flip == "auto" else c
         for k, c in views.items()}
    fixmatch = a.fixmatch.model_copy(update={"strong": v["strong"]})
    return a.model_copy(update={"augment": v["augment"], "fixmatch": fixmatch})


def cutout(x: torch.Tensor, frac: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image with one square of side `frac`·(image side) at a uniformly drawn centre (clipped at the
    border) set to that image's mean intensity (DeVries & Taylor's cutout, as FixMatch's strong views)."""
    if frac <= 0:
        return x
    n, _, h, w = x.shape
    cy = torch.rand(n, device=x.device, generator=generator) * h
    cx = torch.rand(n, device=x.device, generator=generator) * w
    half_h, half_w = frac * h / 2, frac * w / 2
    rows = torch.arange(h, device=x.device, dtype=cy.dtype)[None, :] + 0.5
    cols = torch.arange(w, device=x.device, dtype=cx.dtype)[None, :] + 0.5
    in_r = (rows - cy[:, None]).abs() < half_h                 # (n, h)
    in_c = (cols - cx[:, None]).abs() < half_w                 # (n, w)
    box = (in_r[:, :, None] & in_c[:, None, :])[:, None]       # (n, 1, h, w)
    fill = x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x)
    return torch.where(box, fill, x)
