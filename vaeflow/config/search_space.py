"""The schema of `tune.search_space` in params.yaml: one sampler per hyperparameter, checked when params load.

    lr:         {loguniform: [0.0003, 0.003]}
    latent_dim: {choice: [8, 16, 32]}
    hidden:     {grid: [[128, 64], [256, 128]]}   # every value, crossed with the other grids

Samplers: choice, grid (values); uniform, loguniform (float bounds); randint (int bounds, high excluded,
as in Ray).

Part of the params schema, so it lives in the config package (were it imported from vaeflow/tuning/, every
stage's dvc.yaml deps would include the tuning package). Turning a checked space into Ray domains is
tuning's business (vaeflow/tuning/space.py: to_ray).
"""
from __future__ import annotations

from typing import Any, Callable

VALUE_SAMPLERS = ("choice", "grid")
RANGE_SAMPLERS = ("uniform", "loguniform", "randint")
SAMPLERS = VALUE_SAMPLERS + RANGE_SAMPLERS


def _normalize(name: str, sampler: str, args: Any, coerce: Callable[[str, Any], Any]) -> list[Any]:
    """The sampler's arguments as params.yaml's schema types them (YAML reads 1e-5 as a string)."""
    if not isinstance(args, list) or not args:
        raise ValueError(f"{name}.{sampler}: expected a non-empty list, got {args!r}")
    if sampler in VALUE_SAMPLERS:
        return [coerce(name, v) for v in args]
    if len(args) != 2:
        raise ValueError(f"{name}.{sampler}: expected two bounds, low and high; got {args!r}")
    if sampler == "randint":
        if not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            raise ValueError(f"{name}.randint: bounds must be integers, got {args!r}")
        lo, hi = args
        coerce(name, lo), coerce(name, hi - 1)  # high is excluded, as in Ray: the values drawn must be valid
    else:
        lo, hi = (coerce(name, a) for a in args)
        if not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in (lo, hi)):
            raise ValueError(f"{name}.{sampler}: expected two numbers, low and high; got {args!r}")
    if not lo < hi:
        raise ValueError(f"{name}.{sampler}: low must be below high, got {args!r}")
    if sampler == "loguniform" and lo <= 0:
        raise ValueError(f"{name}.loguniform: bounds must be positive, got {args!r}")
    return [lo, hi]


def normalize_search_space(space: dict[str, Any], coerce: Callable[[str, Any], Any]) -> dict[str, dict[str, Any]]:
    """The search space with every value typed by the schema; ValueError naming the key if a sampler is
    malformed or can produce a value params.yaml itself would reject.

    `coerce(name, value)` returns the value as the schema types it, or raises ValueError."""
    out = {}
    for name, spec in space.items():
        if not isinstance(spec, dict) or len(spec) != 1:
            raise ValueError(f"{name}: expected one sampler, e.g. {{choice: [8, 16]}} or "
                             f"{{loguniform: [0.0001, 0.01]}}; got {spec!r}")
        (sampler, args), = spec.items()
        if sampler not in SAMPLERS:
            raise ValueError(f"{name}: unknown sampler '{sampler}'; use one of {', '.join(SAMPLERS)}")
        out[name] = {sampler: _normalize(name, sampler, args, coerce)}
    return out
