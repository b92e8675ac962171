"""A checked `tune.search_space` turned into Ray domains, and sampled values back into plain ones.

The schema and its checks live with the params (vaeflow/config/search_space.py); Ray is imported only
when the space is built.
"""
from __future__ import annotations

from typing import Any


def plain(v: Any) -> Any:
    """A sampled value as params and JSON want it: Ray may hand back numpy scalars."""
    return v.item() if hasattr(v, "item") else v


def to_ray(space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ray Tune's param_space for an already-checked search space."""
    from ray import tune

    build = {"choice": tune.choice, "grid": tune.grid_search,
             "uniform": lambda a: tune.uniform(*a), "loguniform": lambda a: tune.loguniform(*a),
             "randint": lambda a: tune.randint(*a)}
    return {name: build[sampler](args) for name, spec in space.items() for sampler, args in spec.items()}
