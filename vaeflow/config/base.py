"""What every params section shares: closed (unknown keys are errors), frozen, no inf/nan."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """A params file or override that does not validate. The message names the key path."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # .inf/.nan are never a setting
