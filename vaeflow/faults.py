"""The old fault-point functions, kept for callers not yet moved to vaeflow.hooks (the adapt loop, the CLI's
lock): each forwards to the hooks object this process has (`vaeflow.hooks.current()`), whose module doc
lists the points and the environment variables. New code calls the hooks object itself.
"""
from __future__ import annotations

from vaeflow import hooks


def pause_point(point: str) -> None:
    hooks.current().pause(point)


def count_write(name: str) -> int:
    return hooks.current().count_write(name)


def nan_at(run: str) -> tuple[int, int] | None:
    """(epoch, step) at which run `run` should see a NaN loss, if the hooks ask for one."""
    return hooks.current().nan_step(run)
