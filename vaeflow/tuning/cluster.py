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

Joining an address is checked first (`check_address`): Ray retries an address where nothing listens for
ever (HOST:PORT) or for half a minute (ray://), and raises tracebacks for a malformed one. A wrong address is
the user's to fix, so it is a RayAddressError (a ConfigError: the CLI prints one line and exits 2).
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
from collections.abc import Iterator
from typing import Any

from vaeflow.config import ConfigError

SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK = "127.0.0.1"


TUNE_FORMS = "auto, HOST:PORT (the head's GCS port, 6379 by default) or ray://HOST:PORT (Ray Client, 10001)"
START_HINT = ("start a head with `ray start --head --port=PORT`, or leave --address out for a private local Ray. "
              "--address takes " + TUNE_FORMS)
TOKEN_HINT = ("RAY_AUTH_TOKEN (or ~/.ray/auth_token, with RAY_AUTH_MODE=token) must hold the cluster's token "
              "when it uses token authentication, Ray's default")
CONNECT_TIMEOUT_S = 3.0
# A host name or IPv4 address, or an IPv6 one in brackets; then a port.
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?))"
                        r":(?P<port>[0-9]{1,5})$")


class RayChanged(RuntimeError):
    """The installed Ray no longer works the way the loopback-only mode relies on (see the module doc)."""


class RayAddressError(ConfigError):
    """An address naming no reachable Ray, or one Ray refused to join: the user's to fix (exit 2 in the CLI)."""


def host_port(text: str) -> tuple[str, int] | None:
    """(host, port) of 'HOST:PORT' or '[V6]:PORT'; None if `text` is not of that form."""
    m = _HOST_PORT.match(text.strip())
    if not m or not 0 < int(m["port"]) < 65536:
        return None
    return m["v6"] or m["host"], int(m["port"])


def check_reachable(host: str, port: int, shown: str, what: str, hint: str) -> None:
    """Raise RayAddressError unless something accepts a TCP connection at host:port within a few seconds.
    `shown` is the address as the user gave it; `what` names the server (e.g. 'Ray cluster')."""
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:  # refused, unreachable, unknown host (socket.gaierror), or timed out
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e)).lower()
        where = "" if shown == f"{host}:{port}" else f" at {host}:{port}"
        raise RayAddressError(f"no {what} at {shown} ({reason}{where}); {hint}") from None


def check_address(address: str) -> str:
    """Refuse an address Ray cannot join, before Ray retries it: a malformed one, or one where nothing
    listens. 'auto' is checked at the address Ray would pick (RAY_ADDRESS, or the cluster `ray start`
    recorded on this machine). Returns the address checked ('auto' resolved where Ray's lookup allowed)."""
    if address == "auto":
        address = _auto_address()
        if address is None:
            return "auto"
        shown = f"{address} (what --address auto found)"
    else:
        shown = address
    scheme, sep, rest = address.partition("://")
    if sep and scheme != "ray":
        raise RayAddressError(f"--address {address} is a URL; tune's --address takes {TUNE_FORMS}. (An "
                              "http://HEAD:8265 dashboard URL is what `vaeflow submit --address` takes.)")
    parsed = host_port(rest if sep else address)
    if parsed is None:
        raise RayAddressError(f"--address {address!r} is not an address Ray can join: it takes {TUNE_FORMS}")
    check_reachable(*parsed, shown, "Ray Client server" if sep else "Ray cluster", START_HINT)
    return address


def _auto_address() -> str | None:
    """The address Ray's 'auto' would join, or None when Ray's own lookup is not where it was (then Ray's
    error, mapped by `connect`, speaks)."""
    try:
        from ray._private import services  # private: Ray's own lookup, so the check matches what it joins
        return services.get_ray_address_from_environment("auto", None)
    except ConnectionError:
        raise RayAddressError(f"--address auto found no running Ray cluster: none is recorded on this machine "
                              f"(`ray start` records one) and RAY_ADDRESS is not set; {START_HINT}") from None
    except (ImportError, AttributeError, TypeError):
        return None


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
    resolved = check_address(address)
    from ray.exceptions import AuthenticationError, RpcError

    # A head on this machine's loopback (e.g. a cluster of nodes on one machine) is joined at 127.0.0.1
    # itself: Ray would otherwise dial the outward address, where such a head does not listen (also when
    # 'auto' finds it, e.g. RAY_ADDRESS=127.0.0.1:PORT: without this, ray.init retried for minutes).
    with single_node() if is_loopback(resolved) else contextlib.nullcontext():
        try:
            ray.init(address=address, log_to_driver=True)
        # Only here, while joining: something listens but is no Ray head that lets us in (a token mismatch
        # ends in ConnectionError after ~20 s; another server in RpcError; Ray's parse in ValueError).
        except (ConnectionError, AuthenticationError, RpcError, ValueError) as e:
            ray.shutdown()
            raise RayAddressError(f"could not join the Ray cluster at {address}: {one_line(e)}. Is it a Ray "
                                  f"head's GCS port (not another server)? {TOKEN_HINT}") from None
    return True


def one_line(e: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut to `limit` characters (Ray's run over many lines)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit] + "…"


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
