"""The adapt stage's trainings in worker processes give what the in-process path gives, bit for bit."""
from __future__ import annotations

import math

import pytest
import torch

from tests.cli_utils import copy_tree
from tests.conftest import REPO, TINY
from vaeflow.tasks.adapt import chains
from vaeflow.tasks.adapt_parallel import n_workers
from vaeflow.config import load_config
from vaeflow.io import load_torch
from vaeflow.paths import Paths
from vaeflow.tasks import STAGES

VARIANTS = "adapt.variants=[source_only, adabn, shot, dann, self_training, finetune]"


def test_chains_keep_each_continuation_with_what_it_continues():
    work = chains(["source_only", "adabn", "dann", "shot", "self_training", "oracle"], 2)
    assert work == [[("source_only", 0), ("adabn", 0), ("shot", 0)], [("dann", 0), ("self_training", 0)],
                    [("oracle", 0)], [("source_only", 1), ("adabn", 1), ("shot", 1)],
                    [("dann", 1), ("self_training", 1)], [("oracle", 1)]]


@pytest.mark.parametrize("workers, threads, device, expect", [
    (0, 1, "cpu", None), (0, 0, "cpu", 1), (0, 1, "cuda", 1), (3, 1, "cpu", 3), (8, 1, "cpu", 6)])
def test_worker_count(workers, threads, device, expect, monkeypatch):
    import vaeflow.tasks.adapt_parallel as ap

    monkeypatch.setattr(ap, "usable_cores", lambda: 4)
    cfg = load_config(REPO / "params.yaml", [f"adapt.workers={workers}", f"threads={threads}"])
    got = n_workers(cfg, torch.device(device), 6)
    assert got == (expect if expect is not None else 4)


def _strip(out: dict) -> dict:
    """adapt.json without wall times."""
    return {v: {k: x for k, x in r.items() if "seconds" not in k} for v, r in out["variants"].items()}


def test_two_workers_give_the_in_process_results_bit_for_bit(tmp_path, monkeypatch):
    base = load_config(REPO / "params.yaml", TINY + [VARIANTS, "adapt.layer_bn=true", "adapt.shot.epochs=1",
                                                     "adapt.self_training.rounds=1", "adapt.self_training.epochs=1"])
    a, b = tmp_path / "one", tmp_path / "two"
    for stage in ("prepare", "pretrain"):
        STAGES[stage](base, Paths(a))
    copy_tree(a, b, "data/prepared")
    copy_tree(a, b, "models")
    one = STAGES["adapt"](base, Paths(a))
    # workers started ahead of the stage, as the flow does while pretrain trains: the stage takes them
    import vaeflow.tasks.adapt_parallel as ap

    cfg2 = base.model_copy(update={"adapt": base.adapt.model_copy(update={"workers": 2})})
    ap.prewarm(cfg2)
    assert "workers" in ap._prewarmed
    two = STAGES["adapt"](cfg2, Paths(b))
    assert ap._prewarmed == {}
    assert _strip(one) == _strip(two)
    assert not math.isnan(one["variants"]["shot"]["target_test_acc"])
    # the retention check on the real stage: each continuation against its chain's source-trained network
    v = one["variants"]
    assert "source_retention" not in v["finetune"]  # trained on target labels: no source to read
    from vaeflow.training.health import IDEAL  # a source-trained root is held to a perfect reading
    assert v["source_only"]["source_retention"]["reference"] == IDEAL == v["dann"]["source_retention"]["reference"]
    assert v["self_training"]["source_retention"]["reference"] == "dann"
    ret = v["shot"]["source_retention"]
    assert ret["reference"] == "source_only" and ret["source_val_acc_runs"] == v["shot"]["source_val_acc_runs"]
    chance = 1 / len(v["shot"]["confusion"])
    expect = [(s - chance) / (r - chance) if r - chance > 0.01 else None
              for s, r in zip(ret["source_val_acc_runs"], v["source_only"]["source_val_acc_runs"])]
    assert ret["retained_runs"] == pytest.approx(expect)
    for v in ("source_only", "adabn", "shot", "dann", "self_training", "finetune"):
        wa, wb = load_torch(Paths(a).adapt_model(v)), load_torch(Paths(b).adapt_model(v))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), v
    # adapt.on_flag=fallback on the real stage: with every continuation flagged (threshold above any share),
    # each flagged run is scored as its chain's unflagged network; warn scores it as trained. The rerun
    # resumes every training from its checkpoint (on_flag is not part of a run's fingerprint).
    from vaeflow.training import health

    monkeypatch.setattr(health, "RETENTION_RATIO", 2.0)
    guarded = STAGES["adapt"](base, Paths(a))["variants"]
    warned = STAGES["adapt"](base.model_copy(update={"adapt": base.adapt.model_copy(update={"on_flag": "warn"})}),
                             Paths(b))["variants"]
    for var, parent in (("adabn", "source_only"), ("shot", "source_only"), ("self_training", "dann")):
        fell = [i for i, q in enumerate(guarded[var]["source_retention"]["retained_runs"]) if q is not None]
        assert fell and guarded[var]["fallback"]["runs"] == fell and set(guarded[var]["fallback"]["to"]) == {parent}
        assert [guarded[var]["target_test_acc_runs"][i] for i in fell] == [guarded[parent]["target_test_acc_runs"][i]
                                                                          for i in fell]
        assert guarded[var]["fallback"]["unguarded_acc_runs"] == warned[var]["target_test_acc_runs"] == \
            one["variants"][var]["target_test_acc_runs"]
        assert "fallback" not in warned[var] and warned[var]["source_retention"]["flagged"] == fell


def test_prewarmed_workers_that_no_stage_takes_are_shut_down():
    """A flow whose adapt stage turned out up to date: `release` ends the workers it started ahead."""
    import os

    import vaeflow.tasks.adapt_parallel as ap

    cfg = load_config(REPO / "params.yaml", TINY + ["adapt.workers=2"])
    ap.prewarm(cfg)
    w = ap._prewarmed["workers"]
    from vaeflow.tasks.workers import _ready

    pids = {w.pool.submit(_ready).result(timeout=120) for _ in range(4)}
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids
    ap.release()
    assert ap._prewarmed == {}
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_cancelled_pool_kills_its_running_chain_instead_of_waiting_for_it():
    """Workers.close(cancel=True) (an error, or a stop: vaeflow/stop.py) ends a running chain at once; it reads
    ProcessPoolExecutor's private process table, so this fails if a Python release renames it."""
    import time
    from concurrent.futures import wait

    from vaeflow.tasks.adapt_parallel import Workers

    w = Workers(1, 1)
    w.start()
    f = w.pool.submit(time.sleep, 600)  # a chain that would hold the pool for ten minutes
    while not f.running():
        time.sleep(0.05)
    assert len(w.pool._processes) == 1
    procs = list(w.pool._processes.values())
    w.close(cancel=True)
    done, _ = wait([f], timeout=0)
    assert done and f.exception() is not None  # broken by the kill, not finished
    assert all(not p.is_alive() for p in procs)
