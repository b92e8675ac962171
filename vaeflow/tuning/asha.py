"""ASHA whose rungs survive `Tuner.restore`.

Tune restores the scheduler as it was when the experiment started (from tuner.pkl): every rung empty.
After a resume, the first trial to reach a rung would then always pass it, whatever the trials that
finished before the interruption scored. This scheduler writes its rungs (trial -> metric at each
milestone) as JSON in the experiment's scheduler/ folder whenever they change, and reads them back before its
first decision in a restored driver. The file is named by an id drawn when the experiment starts (and
pickled with it), so a fresh experiment in the same folder never reads an earlier one's rungs.

It relies on ASHA's bracket internals (`_brackets[i]._rungs`), pinned by constraints.txt and checked by
tests/test_tune.py (trials that start after a resume are still cut by the rungs recorded before it).
"""
from __future__ import annotations

import json
import uuid
from typing import Any

from ray.tune.schedulers import ASHAScheduler

from vaeflow.tuning.storage import read_file, storage_fs, write_file


class ResumableASHA(ASHAScheduler):
    def __init__(self, experiment: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # In a subfolder: on restore Tune copies the experiment folder's top-level *.json into its staging
        # dir and later uploads that copy back, which would overwrite newer rungs with the restored ones.
        self._state_uri = f"{experiment.rstrip('/')}/scheduler/asha-{uuid.uuid4().hex[:12]}.json"
        self._loaded = False

    def _rungs(self) -> list:
        return [[[milestone, recorded] for milestone, recorded in b._rungs] for b in self._brackets]

    def _load(self, fs: Any, path: str) -> None:
        self._loaded = True
        data = read_file(fs, path)
        if data is None:
            return
        saved = json.loads(data)
        for b, rungs in zip(self._brackets, saved["rungs"]):
            b._rungs = [(milestone, dict(recorded)) for milestone, recorded in rungs]
        self._num_stopped = saved["num_stopped"]

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_fs"}  # a filesystem client is not state

    def _tracked(self, fn: Any, *args: Any) -> Any:
        if getattr(self, "_fs", None) is None:  # one client per driver (an S3 client resolves credentials)
            self._fs = storage_fs(self._state_uri)
        fs, path = self._fs
        if not self._loaded:
            self._load(fs, path)
        before = json.dumps(self._rungs())
        out = fn(*args)
        after = json.dumps(self._rungs())
        if after != before:  # rungs change only at milestones: a few small writes per trial
            write_file(fs, path, json.dumps({"rungs": json.loads(after), "num_stopped": self._num_stopped}).encode())
        return out

    def on_trial_add(self, controller: Any, trial: Any) -> None:
        self._tracked(super().on_trial_add, controller, trial)

    def on_trial_result(self, controller: Any, trial: Any, result: dict) -> str:
        return self._tracked(super().on_trial_result, controller, trial, result)

    def on_trial_complete(self, controller: Any, trial: Any, result: dict) -> None:
        self._tracked(super().on_trial_complete, controller, trial, result)
