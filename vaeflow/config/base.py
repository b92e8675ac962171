"""What every params section shares: closed (unknown keys are errors), frozen, no inf/nan."""
from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """A params file or override that does not validate. The message names the key path."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # .inf/.nan are never a setting
    # Keys that change how a run is carried out (how often it checkpoints, its time budget, what it logs, how
    # many processes train it), never its results: left out of checkpoint fingerprints, so that a run resumed
    # with other values continues where it stopped.
    RUN_ONLY: ClassVar[frozenset[str]] = frozenset()

    def fingerprint_dump(self, *exclude: str) -> dict:
        """The section's values that a checkpoint's fingerprint covers: all but RUN_ONLY (and `exclude`)."""
        return self.model_dump(exclude=set(self.RUN_ONLY) | set(exclude))
