"""One clear message per failure (fast: no Prefect server, no training).

A failed stage's downstream tasks are never submitted (no "Upstream task run ... did not reach a 'COMPLETED'
state" per task), stages beside it still finish, the flow logs the failure once (stage, error with its file
or parameter, what did not run) and re-raises the exception unchanged; Prefect's own repeats of it are
filtered; `vaeflow run` prints it as one line with the exit code.
"""
from __future__ import annotations

import concurrent.futures as cf
import logging

import pytest
import typer

from vaeflow.io import ArtifactError

UPSTREAM = {"prepare": [], "gmm": ["prepare"], "pretrain": ["prepare"], "autoencoders": ["prepare"],
            "adapt": ["prepare", "pretrain"], "samplers": ["prepare", "gmm", "pretrain", "autoencoders"],
            "evaluate": ["gmm", "pretrain", "adapt", "autoencoders", "samplers"]}


class _Future:
    """The two things _run_dag asks of a Prefect future, over a concurrent.futures one."""

    def __init__(self, f: cf.Future) -> None:
        self.f = f

    def result(self, raise_on_failure: bool = True):
        try:
            return self.f.result()
        except Exception as e:  # noqa: BLE001
            if raise_on_failure:
                raise
            return e


class _Logger:
    def __init__(self) -> None:
        self.records: list[tuple[int, str, dict]] = []

    def error(self, msg, *args, exc_info=None, extra=None):
        self.records.append((logging.ERROR, msg % args if args else msg, extra or {}))

    def info(self, msg, *args, **kw):
        self.records.append((logging.INFO, msg % args if args else msg, {}))


def _dag(fail: str, exc: BaseException):
    from vaeflow.flows import training_pipeline as tp

    pool = cf.ThreadPoolExecutor(2)
    submitted: list[str] = []
    futures: dict[cf.Future, _Future] = {}

    def submit(name):
        def go(waits):
            assert all(not isinstance(w.result(False), BaseException) for w in waits)
            submitted.append(name)
            f = pool.submit(lambda: (_ for _ in ()).throw(exc) if name == fail else {"stage": name})
            futures[f] = _Future(f)
            return futures[f]
        return go

    def completed(running):
        raw = {r.f: r for r in running}
        return (raw[f] for f in cf.as_completed(raw))

    logger = _Logger()
    try:
        with pytest.raises(type(exc)) as raised:
            tp._run_dag(UPSTREAM, {n: submit(n) for n in UPSTREAM}, logger, completed=completed)
    finally:
        pool.shutdown()
    return submitted, logger.records, raised.value


def test_a_failed_stage_is_reported_once_and_its_downstream_never_submitted():
    exc = ArtifactError("models/vae.pt: sha256 mismatch (file changed after it was written)")
    submitted, records, raised = _dag("pretrain", exc)
    assert raised is exc  # unchanged: its type decides the CLI's exit code
    assert set(submitted) == {"prepare", "gmm", "pretrain", "autoencoders"}  # beside it: finished
    errors = [r for r in records if r[0] == logging.ERROR]
    assert len(errors) == 1
    msg = errors[0][1]
    assert msg == ("stage pretrain failed: models/vae.pt: sha256 mismatch (file changed after it was written); "
                   "not run: adapt, samplers, evaluate")
    assert raised.vaeflow_failure == msg and errors[0][2].get("vaeflow_reported")


def test_prefects_own_repeats_of_the_failure_are_filtered():
    from vaeflow.flows.training_pipeline import _ReportedOnce

    f = _ReportedOnce()

    def rec(name, msg, exc=None, **extra):
        r = logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, (type(exc), exc, None) if exc else None)
        r.__dict__.update(extra)
        return r

    exc = ArtifactError("models/vae.pt: sha256 mismatch")
    assert not f.filter(rec("prefect.task_runs", "Finished in state Failed('Task run encountered an exception "
                            "ArtifactError: models/vae.pt')", task_run_name="pretrain"))
    assert f.filter(rec("prefect.task_runs", "Finished in state Completed()", task_run_name="pretrain"))
    assert f.filter(rec("prefect.task_runs", "Task run failed with exception: OSError - Retry 1/3 will start",
                        task_run_name="gmm"))  # a transient error's retry is still said
    exc.vaeflow_failure = "stage pretrain failed: models/vae.pt: sha256 mismatch"
    assert not f.filter(rec("prefect.flow_runs", "Encountered exception during execution: ...", exc,
                            flow_name="training_pipeline"))
    assert not f.filter(rec("prefect.flow_runs", "Finished in state Failed('Flow run encountered an exception')",
                            flow_name="training_pipeline"))
    assert f.filter(rec("prefect.flow_runs", exc.vaeflow_failure, exc, flow_name="training_pipeline",
                        vaeflow_reported=True))  # the flow's own line


@pytest.mark.parametrize("exc, code", [(ArtifactError("models/vae.pt: sha256 mismatch"), 2),
                                       (FloatingPointError("pretrain: loss is NaN at epoch 3"), 1)])
def test_vaeflow_run_prints_one_line_with_the_exit_code(exc, code):
    from vaeflow.flows import cli
    from vaeflow.flows.app import console

    exc.vaeflow_failure = f"stage pretrain failed: {exc}; not run: adapt"
    with console.capture() as cap, pytest.raises(typer.Exit) as ex:
        cli._failed_once(exc)
    printed = " ".join(cap.get().split())  # one message; the console may wrap it at its width
    assert ex.value.exit_code == code
    assert printed == f"error: stage pretrain failed: {exc}; not run: adapt (exit code {code})", printed


def test_a_bug_keeps_its_traceback():
    from vaeflow.flows import cli

    bug = KeyError("not a user error")
    bug.vaeflow_failure = "stage adapt failed: 'not a user error'"
    with pytest.raises(KeyError):
        cli._failed_once(bug)
