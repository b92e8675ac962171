"""Long steps show progress: rich bars on a terminal (several at once, from two threads), plain log lines
elsewhere (at the start, every LOG_EVERY_S seconds, at the end)."""
from __future__ import annotations

import io
import logging
import threading

import numpy as np
import pytest
from rich.console import Console

from tests.helpers import LogLines
from vaeflow import progress


@pytest.fixture
def lines(monkeypatch):
    """The "vaeflow" logger's messages, and a console that is not a terminal (a log file, a Prefect worker)."""
    monkeypatch.setattr(progress, "console", Console(file=io.StringIO(), force_terminal=False))
    with LogLines(level=logging.INFO) as got:
        yield got


def test_without_a_terminal_a_long_step_logs_plain_lines(lines, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    with progress.epoch_bar("pretrain", 3, show="val_nelbo") as advance:
        for e in range(3):
            advance({"epoch": e, "val_nelbo": -60.5 - e})
    assert lines[0] == "pretrain: started (3 epochs)"
    assert lines[1].startswith("pretrain: epoch 1/3, val_nelbo=-60.500 (")
    assert lines[3].startswith("pretrain: epoch 3/3, val_nelbo=-62.500 (")
    assert "more if the other 2 epochs run)" in lines[1] and "more if the last epoch runs)" in lines[2]
    assert "more if" not in lines[3]  # nothing left
    assert lines[-1].startswith("pretrain: done, val_nelbo=-62.500 in ")


def test_without_a_terminal_lines_are_rate_limited(lines, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 3600.0)
    with progress.steps("gmm: EM", total=100, unit="K") as step:
        for _ in range(100):
            step.advance()
    assert len(lines) == 2 and lines[0] == "gmm: EM: started (100 K)" and lines[1].startswith("gmm: EM: done")


def test_a_step_ended_by_an_exception_says_stopped_not_done(lines):
    with pytest.raises(KeyboardInterrupt), progress.steps("pretrain", total=3) as step:
        step.advance(1, "val_nelbo=251.0")
        raise KeyboardInterrupt  # a SIGTERM or Ctrl-C mid-training
    assert lines[-1].startswith("pretrain: stopped, val_nelbo=251.0 in ")


def test_the_gmm_fit_reports_progress(lines, monkeypatch, tiny_cfg):
    from vaeflow.models.mixture import fit_mixture

    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    x = np.random.default_rng(0).random((60, 4))
    fit_mixture("gaussian", x, tiny_cfg.gmm, seed=0)
    assert lines[0] == "gmm: EM for K in [2, 3] on 60 images: started (2 K)"
    assert any("EM iteration" in ln for ln in lines)  # ticks from inside the EM loop
    assert any(ln.startswith("gmm: EM for K in [2, 3] on 60 images: K 2/2, K=3 BIC") for ln in lines)
    # the last line names the K that BIC chose (the one fit_mixture returns), not the last K tried
    model, info = fit_mixture("gaussian", x, tiny_cfg.gmm.model_copy(update={"n_components": [1, 2]}), seed=0)
    assert lines[-1].startswith(f"gmm: EM for K in [1, 2] on 60 images: done, K={info['n_components']} chosen (BIC ")


def test_on_a_terminal_two_threads_share_one_live_display(monkeypatch):
    """gmm and pretrain run at once in two threads; rich refuses a second live display (LiveError)."""
    out = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=out, force_terminal=True, width=120))
    errors: list[BaseException] = []
    started = threading.Barrier(2)

    def work(label: str) -> None:
        try:
            with progress.steps(label, total=5) as step:
                started.wait(timeout=10)
                for _ in range(5):
                    step.advance()
        except BaseException as e:  # noqa: BLE001 - the test reports it
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("gmm: EM", "pretrain: IWAE")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert "gmm: EM" in out.getvalue() and "pretrain: IWAE" in out.getvalue()
    assert progress._live["progress"] is None  # the display stops with the last step


def test_the_time_left_is_the_rate_of_this_process_times_the_units_left(lines, monkeypatch):
    """A resumed run jumps its epoch counter: the rate counts only the epochs this process trained."""
    reads = []

    def clock() -> float:  # the first two reads (the step's start, the first rate-limit check): 0 s; then 100 s
        reads.append(1)
        return 0.0 if len(reads) <= 2 else 100.0

    monkeypatch.setattr(progress.time, "monotonic", clock)
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    with progress.epoch_bar("pretrain", 500) as advance:
        advance({"epoch": 99})  # resumed at epoch 100: 1 epoch trained here in 100 s, 400 left
        assert lines[-1] == "pretrain: epoch 100/500 (100 s; ~11.1 h more if the other 400 epochs run)"
    assert [progress._duration(s) for s in (59, 119.4, 120, 7199, 7200)] == ["59 s", "119 s", "2 min", "120 min", "2.0 h"]
