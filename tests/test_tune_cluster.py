"""Ray Tune across nodes: a head and a worker node on this machine's loopback (tests/ray_nodes.py), each
with 1 CPU, trials on both, the worker node lost mid-trial, results on storage both nodes reach.

- Two trials of one config and seed, one per node (1 CPU each, 1 CPU per trial). The worker node's raylet
  and all its processes are SIGKILLed while its trial is inside an epoch. Its trial is retried on the head
  from its last checkpoint (in tune.storage_path, not on the lost node), every epoch is reported once, and
  it ends with weights bit-identical to the trial that was never interrupted.
- `vaeflow tune --address` on the cluster, its driver SIGKILLed mid-experiment, then `--resume` from the
  shared storage completes it.

Each test cleans up only its own nodes, by PID, and no /tmp/ray/ray_current_cluster is left behind.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.cli_utils import cli_env, sets, vaeflow
from tests.helpers import KILL, KILL_EPOCHS, REPO, final_weights, progress_by_trial
from tests.ray_nodes import LoopbackCluster, Node
from vaeflow.config import load_config
from vaeflow.paths import Paths

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """A head with 1 CPU; `worker` adds a worker node with 1 CPU when the last one was lost."""
    from ray._common.utils import get_ray_address_file

    default_file = Path(get_ray_address_file(None))
    before = default_file.read_bytes() if default_file.exists() else None
    with LoopbackCluster(head_cpus=1, head_resources='{"vf_head": 1}') as c:
        yield c
    assert c.alive() == []  # every process of its nodes is gone, and only those were stopped
    # `ray start` records its head in the node's own temp dir (removed), never in /tmp/ray.
    assert (default_file.read_bytes() if default_file.exists() else None) == before


@pytest.fixture
def worker(cluster) -> Node:
    live = [n for n in cluster.nodes[1:] if n.processes()]
    return live[0] if live else cluster.add_node(num_cpus=1, resources='{"vf_worker": 1}')


def _project(root: Path, overrides: list[str]):
    from vaeflow.tasks import prepare

    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    cfg = load_config(root / "params.yaml", overrides)
    prepare.run(cfg, Paths(root))
    return cfg


def _node_killer(cluster: LoopbackCluster, worker: Node, log: dict):
    """A Tune callback: once the worker node's trial has reported epoch 1, SIGKILL the whole worker node
    half an epoch later (inside epoch 2, or its checkpoint); then time Tune's detection and the restart."""
    from ray import tune

    class NodeKiller(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("node_id") == worker.node_id and result.get("epoch") == 1 and "victim" not in log:
                log["victim"] = trial.trial_id

                def kill():
                    log["killed_at"] = time.time()
                    log["killed_pids"] = cluster.kill_node(worker)

                threading.Timer(0.5 * result["time_this_iter_s"], kill).start()
            elif trial.trial_id == log.get("victim") and result.get("resumed") and "restart_report" not in log:
                log["restart_started"], log["restart_report"] = result["started"], time.time()
                log["restart_node"] = result["node_id"]

        def on_trial_recover(self, iteration, trials, trial, **info):
            log.setdefault("recovered_at", time.time())

    return NodeKiller()


def run_node_loss(cluster: LoopbackCluster, worker: Node, root: Path) -> dict:
    """The experiment of the first test (also run by bench/bench_multinode.py): returns its timings."""
    from vaeflow.tasks.tune import tune

    storage = root / "shared"  # what both nodes reach: here a local folder, on a cluster NFS or s3://
    cfg = _project(root, KILL + [f"tune.storage_path={storage}"])
    log: dict = {}
    t0 = time.time()
    with cluster.driver():
        summary = tune(cfg, Paths(root), address=cluster.address, callbacks=[_node_killer(cluster, worker, log)])
    return {**log, "summary": summary, "storage": storage, "wall_s": time.time() - t0}


def test_trials_spread_over_two_nodes_and_one_survives_the_loss_of_its_node(cluster, worker, tmp_path):
    head = cluster.nodes[0]
    res = run_node_loss(cluster, worker, tmp_path)
    assert "killed_pids" in res, "the worker node's trial never reported epoch 1"
    assert worker.processes() == []  # the worker node is gone: raylet, workers, agents
    exp = res["storage"] / "vae_tune"
    trials = progress_by_trial(exp)
    assert res["summary"]["n_trials"] == 2 and len(trials) == 2
    victim, other = res["victim"], next(t for t in trials if t != res["victim"])
    # Placement: one trial on each node; the victim moved to the head after its node died.
    assert set(trials[other]["node_id"]) == {head.node_id}
    assert list(dict.fromkeys(trials[victim]["node_id"])) == [worker.node_id, head.node_id]
    table = pd.read_csv(tmp_path / "metrics" / "tune_trials.csv", dtype={"trial_id": str, "node_id": str})
    table = table.set_index("trial_id")
    assert table.loc[victim, "node_id"] == f"{worker.node_id};{head.node_id}"
    assert table.loc[other, "node_id"] == head.node_id
    assert set(table["status"]) == {"completed"} and set(table["epochs"]) == {KILL_EPOCHS}
    for df in trials.values():  # every epoch reported exactly once, across the node loss
        assert list(df["epoch"]) == list(range(KILL_EPOCHS))
    runs = list(dict.fromkeys(trials[victim]["started"]))  # one per process that ran the victim
    assert len(runs) == 2 and trials[victim].loc[trials[victim]["started"] == runs[1], "resumed"].all()
    assert res["restart_node"] == head.node_id
    # The restarted run continued from a checkpoint in the shared storage: the lost node's temp dir is gone
    # and held none (Tune writes checkpoints straight to tune.storage_path).
    assert len(list(next(exp.glob(f"trial_{victim}_*")).glob("checkpoint_*"))) >= 2
    a, b = final_weights(exp, victim), final_weights(exp, other)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    print(json.dumps({k: round(res[k] - res["killed_at"], 2) for k in ("recovered_at", "restart_started",
                                                                        "restart_report")}))


def test_resume_from_shared_storage_after_the_driver_is_killed(cluster, worker, tmp_path):
    """`vaeflow tune --address` on the cluster; its driver is SIGKILLed once both trials have checkpoints;
    `vaeflow tune --address … --resume` reads the experiment back from tune.storage_path and completes it."""
    storage = tmp_path / "shared"
    over = KILL + ["tune.search_space={lr: {grid: [0.003, 0.001]}}", "tune.max_epochs=8", "tune.grace_period=8",
                   f"tune.storage_path={storage}"]
    _project(tmp_path, over)
    env = cli_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.token)
    args = ["tune", "--address", cluster.address, *sets(over)]
    with open(tmp_path / "first.log", "w") as out:
        driver = subprocess.Popen(vaeflow(*args), cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    exp = storage / "vae_tune"
    deadline = time.monotonic() + 300
    while len(list(exp.glob("trial_*/checkpoint_000001"))) < 2:
        assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoints after 300 s"
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and anything it started; the cluster lives on
    driver.wait()
    assert not (tmp_path / "metrics" / "tune_trials.csv").exists()
    res = subprocess.run(vaeflow(*args, "--resume"), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:]
    table = pd.read_csv(tmp_path / "metrics" / "tune_trials.csv", dtype={"trial_id": str, "node_id": str})
    assert set(table["status"]) == {"completed"} and list(table["epochs"]) == [8, 8]
    curves = pd.read_csv(tmp_path / "metrics" / "plots" / "tune_curves.csv", dtype={"trial_id": str})
    assert all(sorted(g["epoch"]) == list(range(8)) for _, g in curves.groupby("trial_id"))  # each epoch once
    nodes = {n for cell in table["node_id"] for n in cell.split(";")}
    assert nodes == {cluster.nodes[0].node_id, worker.node_id}  # the two trials ran on both nodes
    best = json.loads((tmp_path / "models" / "tuned" / "best_config.json").read_text())
    assert best["experiment"] == str(exp) and (exp / "outputs" / "tune_trials.csv").exists()
