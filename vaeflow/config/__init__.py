"""The one schema for params.yaml, shared by the CLI, `dvc repro`, the Prefect flow and Ray jobs.

Everything is validated before any stage starts: unknown keys (with the nearest valid key suggested),
types, ranges and contradictions between sections. Errors carry the dotted key path.

One module per section: data, models (gmm, vae, pretrain, eval, ae, samplers), adapt, tune (with the
search-space schema); root holds the whole file and its cross-section checks; loading reads YAML and
applies `--set` overrides. Everything is re-exported here: `from vaeflow.config import X` is the interface.
"""
from vaeflow.config.adapt import (AdaMatchConfig, AdaptConfig, AugmentConfig, DANNConfig, FixMatchConfig, MeanTeacherConfig,
                                  SelfTrainingConfig, ShotConfig)
from vaeflow.config.base import ConfigError, Section
from vaeflow.config.data import DATASETS, DataConfig, ShiftConfig
from vaeflow.config.loading import (apply_overrides, flow_workers, load_config, parse_override, read_params_file,
                                    validate)
from vaeflow.config.models import AEConfig, EvalConfig, GMMConfig, PretrainConfig, SamplersConfig, VAEConfig
from vaeflow.config.root import DEFAULTS_DIFFER_FROM_PARAMS_YAML, Config
from vaeflow.config.tune import TUNABLE, TuneConfig

__all__ = ["AEConfig", "AdaMatchConfig", "AdaptConfig", "AugmentConfig", "Config", "ConfigError", "DANNConfig", "DATASETS",
           "DEFAULTS_DIFFER_FROM_PARAMS_YAML", "DataConfig", "EvalConfig", "FixMatchConfig", "GMMConfig",
           "MeanTeacherConfig", "PretrainConfig", "SamplersConfig", "Section", "SelfTrainingConfig", "ShiftConfig",
           "ShotConfig", "TUNABLE", "TuneConfig", "VAEConfig", "apply_overrides", "flow_workers",
           "load_config", "parse_override",
           "read_params_file", "validate"]
