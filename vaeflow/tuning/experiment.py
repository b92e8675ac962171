"""The Ray side of tuning: connecting, resources, the Tuner (new or restored), and trial checkpoints.

Driver side: `connect`, `trial_resources`, `buffered_trainable`, `make_tuner`. Trial side: `BufferedResults`
(Tune's result buffering, working) and `TrialCheckpoint`, which bridges the training loop's own resumable
checkpoint file (vaeflow.training.checkpoint: model, optimizer, every RNG, epoch, early-stopping state) and
Tune's checkpoints, so a retried or resumed trial continues at the epoch after its last report instead of
starting over.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from vaeflow.config import Config, ConfigError
from vaeflow.tuning.storage import experiment_path, storage_root

log = logging.getLogger("vaeflow")
METRIC, MODE = "val_nelbo", "min"


def trial_resources(cfg: Config) -> dict[str, float]:
    """{"cpu", "gpu"} per trial. Asking for GPUs on a cluster that has none would leave every trial
    pending forever; instead it falls back to CPUs and says so once."""
    import ray

    cpus, gpus = cfg.tune.cpus_per_trial, cfg.tune.gpus_per_trial
    have = ray.cluster_resources().get("GPU", 0)
    if gpus > 0 and have == 0:
        log.warning("tune: the Ray cluster has no GPU, so tune.gpus_per_trial=%g is ignored and trials run on CPU "
                    "(%g CPU and %d torch threads each)", gpus, cpus, trial_threads(cpus))
        gpus = 0
    return {"cpu": cpus, "gpu": gpus}


def trial_threads(cpus: float) -> int:
    """torch threads for a trial holding `cpus` CPUs: no more threads than its share, never zero."""
    return max(1, int(cpus))


def buffered_trainable(fn: Any) -> type:
    """`fn` (a function trainable, e.g. from `tune.with_parameters`) as the class Tune would make of it
    (`ray.tune.trainable.wrap_function`), with BufferedResults mixed in: Tune's result buffering
    (TUNE_RESULT_BUFFER_LENGTH and _MIN_TIME_S, see tasks/tune.py) then buffers. Tune names its trials by the
    function's name either way. Apply `tune.with_resources` to the class this returns."""
    from ray.tune.trainable import wrap_function

    cls = wrap_function(fn)
    return type(cls.__name__, (BufferedResults, cls), {})


class BufferedResults:
    """Tune's `train_buffered` with its arguments in the order Tune's controller passes them.

    Ray 2.60's controller (ray/tune/execution/tune_controller.py, `_schedule_trial_train`) calls the trial
    actor's `train_buffered(buffer_length, buffer_time_s)`, but `Trainable.train_buffered`'s parameters are
    `(buffer_time_s, max_buffer_length)`: the actor takes the length (1000) for the seconds and the seconds
    (0.5) for the length, so every call returns after its first result, one driver round trip per result
    whatever TUNE_RESULT_BUFFER_LENGTH says. This is Trainable.train_buffered's loop on the arguments as
    meant: results until `buffer_time_s` has passed, `buffer_length` results, or one that is done, ends the
    function or carries a checkpoint (always at least one). Any other call (keywords, another arity: a
    Ray that calls it differently) goes to Ray's own method unchanged. tests/test_tune.py runs the
    controller's call on this class, so a Ray that fixed the order (this would then read the seconds as the
    length: one result per call, unbuffered as before, nothing lost) fails a test instead of slowing down
    unnoticed.

    Two differences to Ray's loop:
    - Ray's drops the results it has collected when training fails (a buffered trial's last epochs before a
      failure would be missing from its progress.csv and from ASHA). Here they are returned and the error is
      raised by the next call, as it is without buffering.
    - A result that carries a checkpoint goes alone, in the next reply. Tune's controller queues a "continue"
      for each earlier result of a reply and acts on it while it fetches the checkpoint, then continues again
      once the checkpoint is in: two train calls in flight. At a trial's end the second one finds the
      function returned and waits 1.2 s in the actor (Ray's result and error fetch timeouts) before the actor
      can be stopped or reused: 1.2 s of every trial, measured (bench/RESULTS_tune.md).
    """

    _deferred_error: BaseException | None = None
    _held: dict | None = None  # a checkpoint's result, held back for the next reply

    def train(self):
        if self._deferred_error is not None:
            err, self._deferred_error = self._deferred_error, None
            raise err
        return super().train()

    def train_buffered(self, *args: Any, **kwargs: Any) -> list[dict]:
        from ray.tune.result import DONE, RESULT_DUPLICATE, SHOULD_CHECKPOINT

        if kwargs or len(args) != 2:
            return super().train_buffered(*args, **kwargs)
        buffer_length, buffer_time_s = args
        if self._held is not None:
            held, self._held = self._held, None
            return [held]
        results: list[dict] = []
        send_at = time.time() + buffer_time_s
        while not results or time.time() < send_at:
            try:
                result = self.train()
            except Exception as e:
                if not results:
                    raise
                self._deferred_error = e
                break
            if result.get(SHOULD_CHECKPOINT, False) and results:
                self._held = result
                break
            results.append(result)
            if (result.get(DONE, False) or result.get(SHOULD_CHECKPOINT, False) or result.get(RESULT_DUPLICATE)
                    or len(results) >= buffer_length):
                break
        return results

    def reset_config(self, new_config: dict) -> bool:
        # a reused actor: the stopped trial's error, or result, is not the next one's
        self._deferred_error = self._held = None
        return super().reset_config(new_config)


def preflight(cfg: Config, root: Path, resume: bool) -> None:
    """What can be refused before Ray starts (seconds): nothing to resume, or nothing to tune."""
    from ray import tune

    path = experiment_path(cfg, root)
    if resume and not tune.Tuner.can_restore(path):
        raise ConfigError(f"--resume: no Tune experiment to resume at {path} "
                          "(from tune.storage_path and tune.experiment_name)")
    if not resume and not cfg.tune.search_space:
        raise ConfigError("tune.search_space is empty: name at least one hyperparameter to tune")


def make_tuner(trainable: Any, cfg: Config, root: Path, *, resume: bool, configs: list[dict] | None = None,
               callbacks: list[Any] | None = None) -> Any:
    """A Tuner for a fresh experiment over `configs` (every trial's configuration, in the order to start them:
    tasks/tune.py `trial_configs`), or, with `resume`, the interrupted one restored from storage.

    Restoring keeps finished trials as they are (they are not run again), resumes unfinished and errored
    trials from their last checkpoint, and keeps the search state, so no configuration is handed out twice."""
    from ray import tune

    from vaeflow.tuning.asha import ResumableASHA
    from vaeflow.tuning.order import Ordered

    # Tune's default loggers are CSV (progress.csv, which the trials table and curves read), JSON and, when
    # tensorboardX is importable, TensorBoard. With epochs of tens of milliseconds the driver's work on every
    # result competes with the trials, so TensorBoard is opt-in: name the loggers, switch off the automatic ones.
    # The CSV and JSON files are Tune's own, less the epochs a retry would report twice (vaeflow/tuning/progress.py).
    from ray.tune.logger import TBXLoggerCallback

    from vaeflow.tuning.progress import ProgressCSV, ResultJSON

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    callbacks = [ProgressCSV(), ResultJSON(), *([TBXLoggerCallback()] if cfg.tune.tensorboard else []),
                 *(callbacks or [])]
    path = experiment_path(cfg, root)
    if resume:
        log.info("tune: resuming %s", path)
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
    if tune.Tuner.can_restore(path):
        log.info("tune: starting a new experiment beside the one in %s (--resume would continue that one)", path)
    t = cfg.tune
    scheduler = ResumableASHA(path, time_attr="training_iteration", max_t=t.max_epochs,
                              grace_period=t.grace_period, reduction_factor=t.reduction_factor)
    if configs is None:
        raise ValueError("make_tuner: a new experiment needs its trials' configurations (tasks/tune.py trial_configs)")
    return tune.Tuner(
        trainable,
        # The space was sampled already (seeded: the same params draw the same trials, vaeflow/tuning/order.py);
        # the searcher hands the samples out in order, Tune's ConcurrencyLimiter caps how many run at once.
        param_space={},
        tune_config=tune.TuneConfig(
            metric=METRIC, mode=MODE, scheduler=scheduler, num_samples=len(configs),
            reuse_actors=True,  # a new trial reuses a finished one's process: no torch import and warm-up
            search_alg=Ordered(configs), max_concurrent_trials=t.max_concurrent_trials),
        run_config=tune.RunConfig(
            name=t.experiment_name, storage_path=storage_root(cfg, root), callbacks=callbacks, verbose=1,
            failure_config=tune.FailureConfig(max_failures=t.max_failures),
            # At least two (the schema's bound): one to resume from, one spare while the next is being written.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=t.keep_checkpoints)))


class TrialCheckpoint:
    """Inside a trial: a local file for the training loop's checkpoint, seeded from Tune's latest checkpoint
    (after a retry or a resume), and `report`, which hands that file to Tune with each epoch's metrics."""

    FILE = "train_state.pt"

    def __enter__(self) -> TrialCheckpoint:
        from ray import tune

        self.dir = Path(tempfile.mkdtemp(prefix="vaeflow-trial-"))
        self.path = self.dir / self.FILE
        self.restored = False
        ckpt = tune.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                for f in Path(d).iterdir():
                    shutil.copy2(f, self.dir / f.name)
            self.restored = True
        self.started = time.time()
        return self

    def report(self, metrics: dict[str, Any], checkpoint: bool = True) -> None:
        from ray import tune

        # With `checkpoint`, called after the training loop has atomically written this epoch's state: Tune
        # copies the directory into the experiment's storage before returning, so the next epoch may
        # overwrite it. Without, metrics only: ASHA still sees every epoch, and Tune's driver does far less.
        tune.report({**metrics, "started": self.started, "time": time.time()},
                    checkpoint=tune.Checkpoint.from_directory(str(self.dir)) if checkpoint else None)

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
