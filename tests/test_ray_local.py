"""`vaeflow tune` without --address: a private local Ray that joins no other cluster and listens on loopback.

A stale /tmp/ray/ray_current_cluster (a head killed without `ray stop`) made a plain `ray.init()` retry the
dead address for 13 minutes. And on Linux Ray takes the machine's outward address as the node's even when
asked for 127.0.0.1, so its GCS, raylet and workers listened on every interface. Both are checked on the
real CLI, with every socket that its process tree opens while it runs (tests/sockets.py).
"""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli_utils import cli_env, sets, vaeflow
from tests.conftest import REPO, TINY
from tests.sockets import Listener, Sampler
from tests.ray_nodes import free_ports

ONE_TRIAL = TINY + ["tune.max_epochs=2", "tune.grace_period=2", "tune.num_samples=1", "tune.max_concurrent_trials=1",
                    "tune.cpus_per_trial=1", "tune.gpus_per_trial=0", "tune.search_space={lr: {grid: [0.001]}}"]


def readme_allows() -> set[tuple[str, str]]:
    """(process, address) pairs that the docs' "What listens where" table says listen beyond loopback."""
    text = (REPO / "docs" / "reliability.md").read_text()
    section = text.split("## What listens where", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \|", section, flags=re.M)
    assert rows, "docs/reliability.md's 'What listens where' table is missing"
    return {(proc, addr.strip()) for proc, addr in rows if not addr.strip().startswith(("127.0.0.1", "loopback"))}


def beyond_loopback(seen: set[Listener]) -> list[str]:
    allowed = readme_allows()
    return sorted(str(s) for s in seen if not s.loopback and (s.process, s.ip) not in allowed)


def _run_sampled(cwd: Path, args: list[str], timeout: float) -> tuple[subprocess.CompletedProcess, set[Listener]]:
    proc = subprocess.Popen(vaeflow(*args), cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(proc)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"`vaeflow {' '.join(args[:1])}` still running after {timeout} s:\n{out[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out), sampler.join()


def test_connect_without_address_starts_a_private_local_ray(monkeypatch):
    """The call itself (the slow test below runs it): address="local", whatever RAY_ADDRESS says."""
    import ray

    from vaeflow.tuning import cluster
    from vaeflow.tuning.cluster import connect

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(cluster, "check_loopback", lambda: calls.append("checked"))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    assert connect(None) is True
    assert calls == [{"address": "local", "include_dashboard": False}, "checked"]


def test_a_ray_that_moved_its_single_node_switch_is_refused(monkeypatch):
    """The private constant cluster.py sets: if a Ray upgrade renames it or its variable, starting fails."""
    from ray._private import ray_constants

    from vaeflow.tuning.cluster import RayChanged, single_node

    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTERS_ENV_VAR", "RAY_SOMETHING_ELSE")
    with pytest.raises(RayChanged, match="single-node switch"):
        with single_node():
            pass
    monkeypatch.undo()
    monkeypatch.delattr(ray_constants, "ENABLE_RAY_CLUSTER")
    with pytest.raises(RayChanged):
        with single_node():
            pass


def test_a_private_ray_that_is_not_on_loopback_is_shut_down_loudly(monkeypatch):
    """Whatever the mechanism, the started node's address (public API) is checked."""
    import ray
    import ray.util

    from vaeflow.tuning.cluster import RayChanged, check_loopback

    down = []
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "10.1.2.3")
    monkeypatch.setattr(ray, "get_runtime_context", lambda: type("C", (), {"gcs_address": "10.1.2.3:6379"})())
    monkeypatch.setattr(ray, "shutdown", lambda: down.append(True))
    with pytest.raises(RayChanged, match="10.1.2.3"):
        check_loopback()
    assert down == [True]


@pytest.mark.slow
def test_tune_ignores_a_stale_cluster_file_and_listens_on_loopback_only(project):
    """A cluster file naming a closed port is where a bare ray.init() would go; `vaeflow tune` must not."""
    from ray._common.utils import get_ray_address_file

    (closed,) = free_ports(1)  # bound, then closed: nothing listens there
    cluster_file = Path(get_ray_address_file(None))  # /tmp/ray/ray_current_cluster unless RAY_TMPDIR/TMPDIR
    saved = cluster_file.read_bytes() if cluster_file.exists() else None
    cluster_file.parent.mkdir(parents=True, exist_ok=True)
    cluster_file.write_text(f"127.0.0.1:{closed}")
    t0 = time.monotonic()
    try:
        res, seen = _run_sampled(project, ["tune", *sets(ONE_TRIAL)], timeout=300)
    finally:  # put back whatever was there (another Ray of this machine's), or nothing
        if saved is None:
            cluster_file.unlink(missing_ok=True)
        else:
            cluster_file.write_bytes(saved)
    assert res.returncode == 0, res.stdout[-3000:]
    assert "best val −ELBO" in res.stdout and f":{closed}" not in res.stdout
    assert (project / "models" / "tuned" / "best_config.json").exists()
    print(f"vaeflow tune with a stale cluster file: {time.monotonic() - t0:.1f} s")
    names = {s.process for s in seen}
    # The measurement saw Ray itself, not just the driver: else it would prove nothing.
    assert {"gcs_server", "raylet"} <= names and any(n.startswith("ray::") for n in names), sorted(map(str, seen))
    assert beyond_loopback(seen) == [], sorted(map(str, seen))


@pytest.mark.slow
def test_run_listens_on_loopback_only(project):
    """`vaeflow run` in Prefect's ephemeral mode: its throwaway API server is the one listener."""
    res, seen = _run_sampled(project, ["run", *sets(TINY)], timeout=400)
    assert res.returncode == 0, res.stdout[-3000:]
    assert seen, "no listening socket seen: Prefect's throwaway server was expected"
    assert beyond_loopback(seen) == [], sorted(map(str, seen))
