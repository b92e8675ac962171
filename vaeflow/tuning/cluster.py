"""Reaching Ray: a private local Ray, or a cluster at an address, with loopback kept loopback.

On Linux Ray replaces 127.0.0.1 by the machine's outward address wherever it meets it (a node's address,
the address a driver joins), and its GCS, raylet and workers then listen on every interface. Its
single-node mode (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, the default on macOS and Windows) keeps 127.0.0.1.
vaeflow switches it on for its private Ray and for joining a cluster at a loopback address; docs/ray.md
("What listens where") has what was measured.

The switch is the environment variable Ray documents for it (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER), which every
process Ray starts reads at import. The driver, though, imported Ray before we could set it, and Ray has
no public API to change its mind in a running process: the constant it read (`ray._private.ray_constants.
ENABLE_RAY_CLUSTER`) is set here too. Both are guarded so that a Ray upgrade fails loudly instead of
silently listening beyond loopback: `single_node` refuses a Ray whose constant or variable moved, and
`start_local` checks, through Ray's public API, that the node it started is on 127.0.0.1.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterator
from typing import Any

SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK = "127.0.0.1"


class RayChanged(RuntimeError):
    """The installed Ray no longer works the way the loopback-only mode relies on (see the module doc)."""


def connect(address: str | None) -> bool:
    """Join the cluster at `address` ('auto', 'HOST:PORT', 'ray://HOST:PORT'), or start a private local Ray.
    True if this call initialised Ray (so the caller shuts it down).

    An already-initialised Ray (a test's, or a notebook's) is used as it is."""
    import ray

    if ray.is_initialized():
        return False
    if not address:
        start_local()
        return True
    # A head on this machine's loopback (e.g. a cluster of nodes on one machine) is joined at 127.0.0.1
    # itself: Ray would otherwise dial the outward address, where such a head does not listen.
    with single_node() if is_loopback(address) else contextlib.nullcontext():
        ray.init(address=address, log_to_driver=True)
    return True


def start_local(**init_kwargs: Any) -> None:
    """A private Ray on this machine only: address="local" never joins the cluster that
    /tmp/ray/ray_current_cluster or RAY_ADDRESS names (a dead head there made ray.init() retry for 13
    minutes), and every socket it opens listens on 127.0.0.1.

    `init_kwargs` go to ray.init (e.g. num_cpus in tests); no dashboard: it would serve on a port of its own."""
    import ray

    with single_node():
        ray.init(address="local", include_dashboard=False, **init_kwargs)
    check_loopback()


def check_loopback() -> None:
    """Shut Ray down and raise if the node just started, or its GCS, is not on 127.0.0.1 (public API only)."""
    import ray
    import ray.util

    node, gcs = ray.util.get_node_ip_address(), ray.get_runtime_context().gcs_address
    if node != LOOPBACK or not gcs.startswith(f"{LOOPBACK}:"):
        ray.shutdown()
        raise RayChanged(f"the private local Ray started on {node} (GCS at {gcs}), not on {LOOPBACK} only: "
                         f"Ray {ray.__version__} ignores {SINGLE_NODE_ENV}=0; see vaeflow/tuning/cluster.py")


@contextlib.contextmanager
def single_node() -> Iterator[None]:
    """Ray's single-node mode while Ray starts or connects. Ray reads it at import (the constant, for this
    process) and in the processes it starts (the environment); both are put back afterwards, so a later
    join of a remote cluster from this process is unaffected."""
    import ray
    from ray._private import ray_constants  # private: checked below, so an upgrade that moves it fails here

    if getattr(ray_constants, "ENABLE_RAY_CLUSTERS_ENV_VAR", None) != SINGLE_NODE_ENV or \
            not isinstance(getattr(ray_constants, "ENABLE_RAY_CLUSTER", None), bool):
        raise RayChanged(f"Ray {ray.__version__} no longer reads its single-node switch from {SINGLE_NODE_ENV} "
                         "into ray._private.ray_constants.ENABLE_RAY_CLUSTER; vaeflow cannot keep its private "
                         "Ray on loopback (see vaeflow/tuning/cluster.py)")
    saved = os.environ.get(SINGLE_NODE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_NODE_ENV], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved[1]
        if saved[0] is None:
            os.environ.pop(SINGLE_NODE_ENV, None)
        else:
            os.environ[SINGLE_NODE_ENV] = saved[0]


def is_loopback(address: str) -> bool:
    """Whether a HOST:PORT address names this machine's loopback ('auto' and ray:// do not)."""
    if "://" in address or address == "auto":
        return False
    host = address  # HOST, HOST:PORT, [V6]:PORT or a bare V6 address
    if address.startswith("["):
        host = address[1:].split("]", 1)[0]
    elif address.count(":") == 1:
        host = address.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
