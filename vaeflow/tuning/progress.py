"""Tune's per-trial files (progress.csv, result.json) with each epoch written once, across retries and resumes.

Why: a retried trial restarts from its last *registered* checkpoint and reports the epochs after it again.
Ray's loggers write a result the moment the driver receives it, so those epochs were already in the files and
end up there twice. With timed checkpoints (`tune.checkpoint_every_s`) that is every epoch since the last
checkpoint; even with a checkpoint after every epoch there is a window: Ray's controller logs a result, then
asks the trial's actor for the checkpoint in a second call (`_schedule_trial_save`), and registers it only when
that call returns. A trial killed in between (a node lost, an OOM kill) is retried from the checkpoint before,
so the epoch it had just logged runs and is logged again (seen in a test that SIGKILLs trials).

The rule here: a result is written once it cannot be run again, i.e. when a checkpoint at or after it is
registered (`on_checkpoint`), or when its trial completes. Results held when a trial fails are dropped, since
the retry (or `vaeflow tune --resume`, which resumes errored trials from their checkpoints) reports them
again. So the files lag a live trial by at most one checkpoint interval, and a trial that failed for good ends
at its last checkpoint there (its error is in its error.txt). The scheduler, the search algorithm, Tune's
console and TensorBoard (opt-in) still see every result as it arrives.
"""
from __future__ import annotations

from typing import Any

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback


class WrittenOnce:
    """Mixin for a Ray `LoggerCallback`: holds a trial's results until they can no longer be re-run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: dict[Any, list[tuple[int, dict]]] = {}

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        # A copy: Tune hands the same dict on to later callbacks, which may change it in place.
        self._held.setdefault(trial, []).append((iteration, dict(result)))

    def _write_held(self, trial: Any) -> None:
        for iteration, result in self._held.pop(trial, []):
            super().log_trial_result(iteration, trial, result)

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        # Tune fetches a checkpoint right after the result that carries it and processes no later result of
        # the trial before it is registered, so everything held is at or before this checkpoint.
        self._write_held(trial)
        super().on_checkpoint(iteration=iteration, trials=trials, trial=trial, checkpoint=checkpoint, **info)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write_held(trial)
        super().on_trial_complete(iteration, trials, trial, **info)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._held.pop(trial, None)  # the retry reports these again
        super().on_trial_recover(iteration=iteration, trials=trials, trial=trial, **info)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._held.pop(trial, None)  # a --resume reruns them from the last checkpoint
        super().on_trial_error(iteration, trials, trial, **info)


class ProgressCSV(WrittenOnce, CSVLoggerCallback):
    """progress.csv (which vaeflow's trials table and curves read), each epoch once."""


class ResultJSON(WrittenOnce, JsonLoggerCallback):
    """result.json (which Tune's Result.metrics_dataframe reads), each epoch once."""
