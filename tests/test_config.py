"""params.yaml validation: every mistake is named by its key path, before anything runs."""
from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO
from vaeflow.config import Config, ConfigError, load_config


def _leaves(d: dict, prefix: str = "") -> dict:
    """{"a.b.c": value}; tune.search_space is one value (a mapping of ranges), not a section."""
    return {k2: v2 for k, v in d.items() for k2, v2 in
            (_leaves(v, f"{prefix}{k}.").items() if isinstance(v, dict) and k != "search_space"
             else [(f"{prefix}{k}", v)])}


def test_params_yaml_validates_and_every_value_reaches_the_config_unchanged():
    """What params.yaml spells out is what the stages get: no key dropped, renamed, defaulted or coerced
    (a `seed: "0"` would load as 0 and fail here). Schema defaults against params.yaml: tests/test_docs.py."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    cfg = load_config(REPO / "params.yaml")
    assert set(raw) == set(Config.model_fields)  # every section spelled out: the file is the whole truth
    assert _leaves(cfg.model_dump(mode="json")) == _leaves(raw)
    assert cfg.data.source == "digits" and cfg.data.target == "digits_shifted"
    assert cfg.eval.iwae_samples >= 1000


@pytest.mark.parametrize("override, key, fragment", [
    ("vae.latnt_dim=3", "vae.latnt_dim", "did you mean 'vae.latent_dim'"),
    ("pretrain.epoch=3", "pretrain.epoch", "did you mean 'pretrain.epochs'"),
    ("vae.latent_dim=abc", "vae.latent_dim", "valid integer"),
    ("vae.latent_dim=0", "vae.latent_dim", "greater than or equal to 1"),
    ("pretrain.lr=-1", "pretrain.lr", "greater than 0"),
    ("device=tpu", "device", "'auto', 'cpu' or 'cuda'"),
    ("data.likelihood=poisson", "data.likelihood", "gaussian"),
    ("data.source=mnst", "data.source", "did you mean 'mnist'"),
    ("gmm.family=bernoulli", "gmm.family", "contradicts data.likelihood"),
    ("gmm.n_components=[]", "gmm.n_components", "must not be empty"),
    ("eval.iwae_chunk=5000", "eval.iwae_chunk", "must not exceed"),
    ("adapt.variants=[dann,magic]", "adapt.variants", "source_only"),
    ("vae.hidden=[]", "vae.hidden", "non-empty"),
    ("adapt.backbone=convnet", "adapt.backbone", "warm_start=false"),
    ("adapt.width=2", "adapt.width", "convnet trunk only"),
    ("adapt.width=0", "adapt.width", "greater than or equal to 1"),
    # a union (a number or 'auto'): the key itself, not a branch's name, and both alternatives in one line
    ("adapt.augment.intensity_flip=sometimes", "adapt.augment.intensity_flip:", "a number, or input should be 'auto'"),
    ("adapt.augment.intensity_flip=2", "adapt.augment.intensity_flip:", "less than or equal to 1, or input should be"),
    ("adapt.mean_teacher.align_floor=sometimes", "adapt.mean_teacher.align_floor:",
     "valid boolean, unable to interpret input, or input should be 'auto' (got 'sometimes')"),
])
def test_bad_overrides_name_the_key(override, key, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(REPO / "params.yaml", [override])
    assert key in str(e.value) and fragment in str(e.value)


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("- 1\n- 2\n", "mapping"),
    ("seed: [unclosed\n", "not valid YAML"),
    ("sed: 1\n", "did you mean 'seed'"),
])
def test_bad_files(tmp_path, text, fragment):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_config(p)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_override_parsing_types():
    cfg = load_config(REPO / "params.yaml", ["vae.hidden=[64, 32]", "pretrain.lr=3e-4", "data.subset=null"])
    assert cfg.vae.hidden == [64, 32] and cfg.pretrain.lr == 3e-4 and cfg.data.subset is None
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(REPO / "params.yaml", ["vae.hidden"])
    with pytest.raises(ConfigError, match="seed: is a value"):
        load_config(REPO / "params.yaml", ["seed.x=1"])
