"""A prompt stop (vaeflow/stop.py): a signal sets a flag and still does what it did before; a training loop that
sees the flag ends within a step, and the same call then resumes from its checkpoint to the weights an
uninterrupted run reaches."""
from __future__ import annotations

import os
import signal

import pytest
import torch

from tests.helpers import pixel_classes, pixel_classifier
from vaeflow import stop
from vaeflow.config import AugmentConfig
from vaeflow.progress import tick
from vaeflow.training.adapt_trainer import fit
from vaeflow.training.mean_teacher import MeanTeacher

SIG = signal.SIGUSR1  # not one the test runner uses


@pytest.fixture(autouse=True)
def _clear():
    stop.clear()
    yield
    stop.clear()


def test_a_signal_sets_the_flag_and_still_reaches_the_handler_before_it():
    calls = []

    def record(s, f):
        calls.append(s)

    before = signal.signal(SIG, record)
    try:
        with stop.forwarding((SIG,)):
            assert not stop.requested()
            os.kill(os.getpid(), SIG)
            assert stop.requested() and calls == [SIG]
            with pytest.raises(KeyboardInterrupt, match="last checkpoint"):  # Stopped: handled as Ctrl-C is
                stop.check()
        assert signal.getsignal(SIG) is record  # the handler before is back in place ...
        stop.clear()
        os.kill(os.getpid(), SIG)  # ... and alone: no flag this time
        assert calls == [SIG, SIG] and not stop.requested()
    finally:
        signal.signal(SIG, before)


def test_a_new_run_in_the_same_process_is_not_stopped_by_the_last_ones_signal():
    """A notebook's Ctrl-C stops one run; the next call of the flow in that kernel must train."""
    stop.request()
    with stop.forwarding((SIG,)):
        assert not stop.requested()
        stop.check()


def test_an_ignored_signal_stays_ignored():
    before = signal.signal(SIG, signal.SIG_IGN)  # a nohup'd run ignores SIGHUP; a background one, Ctrl-C
    try:
        with stop.forwarding((SIG,)):
            os.kill(os.getpid(), SIG)
            assert not stop.requested() and signal.getsignal(SIG) is signal.SIG_IGN
    finally:
        signal.signal(SIG, before)


def test_long_loops_that_report_progress_stop_too():
    tick("EM iteration 1")
    stop.request()
    with pytest.raises(stop.Stopped):
        tick("EM iteration 2")


def _algo():
    torch.manual_seed(0)
    return MeanTeacher(pixel_classifier(dropout=True, standardize=True), threshold=0.5, lr=1e-2, weight_decay=0.0,
                       augment=AugmentConfig(noise=0.05))


def test_a_stopped_training_ends_within_a_step_and_resumes_to_the_uninterrupted_weights(tmp_path):
    x, y = pixel_classes(n=64)
    xu, _ = pixel_classes(n=64, seed=3)
    kw = dict(epochs=3, steps_per_epoch=4, batch_size=8, fingerprint="f")

    algo = _algo()
    torch.manual_seed(1)
    ref = fit(algo, x, y, xu, ckpt_path=tmp_path / "ref.pt", **kw)
    steps = []

    def after_epoch(row):
        if row["epoch"] == 0:
            stop.request()  # as the signal handler would, from the main thread, while this one trains

    algo = _algo()
    torch.manual_seed(1)
    with pytest.raises(stop.Stopped):
        fit(algo, x, y, xu, ckpt_path=tmp_path / "run.pt", on_epoch=after_epoch, **kw)
    assert int(algo.steps) == 4  # the first step of epoch 1 was never taken
    stop.clear()
    torch.manual_seed(123)  # the resumed run restores every RNG from its checkpoint
    res = fit(_algo(), x, y, xu, ckpt_path=tmp_path / "run.pt", on_epoch=steps.append, **kw)
    assert [r["epoch"] for r in steps] == [1, 2]  # resumed after epoch 0
    for k in ref.state:
        assert torch.equal(ref.state[k], res.state[k]), k


@pytest.mark.slow
def test_sigterm_ends_a_real_run_mid_training_with_143_and_leaves_nothing_running(tmp_path):
    """`kill PID` on `vaeflow run` (the process only, not its group) while pretrain trains in Prefect's task
    thread: before, the process went on until the stage ended."""
    import shutil
    import time

    from tests.cli_utils import sets, spawn, wait_until
    from tests.conftest import REPO, TINY

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    long = ["pretrain.epochs=100000", "pretrain.patience=100000", "pretrain.checkpoint_every_s=0"]
    proc = spawn(tmp_path, "run", *sets(TINY + long), log="run.log")
    log = tmp_path / "logs" / "run.log"
    wait_until(proc, (tmp_path / "runs" / "checkpoints" / "pretrain.pt").exists, "pretrain's first checkpoint", log)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=120)  # a guard against a hang: uninterrupted, pretrain would train 100,000 epochs
    text = log.read_text()
    assert rc == 143, text[-3000:]
    assert "terminated (SIGTERM)" in text and "resume" in text and "Traceback" not in text
    assert not (tmp_path / "metrics" / "pretrain.json").exists()  # the stage was stopped, not finished
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the session's other processes (Prefect's local server) exit with it
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("processes of the stopped run are still alive")
