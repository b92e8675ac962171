"""Reading params.yaml: YAML with duplicate keys refused, `--set` overrides, and errors that name the key."""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from vaeflow.config.base import ConfigError
from vaeflow.config.root import Config


def _all_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _all_keys(ann, prefix + name + ".")
    return keys


# pydantic's names for a union's branches and validators in an error's location: not keys ("intensity_flip" is one,
# so a prefix test on "int" would drop it)
_BRANCH = re.compile(r"(int|float|bool|str|none|constrained-\w+|\w+(-\w+)*\[.*\])")


def _format(err: ValidationError) -> str:
    lines = []
    valid = _all_keys(Config)
    for loc, e in _merge_branches(err.errors()):
        path = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            near = difflib.get_close_matches(path, valid, n=1, cutoff=0.6)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            lines.append(f"{path}: unknown key{hint}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if not loc:  # a cross-section check: its message names the keys itself
                lines.append(msg)
            elif e["type"] == "value_error":
                lines.append(f"{path}: {msg}")
            else:
                lines.append(f"{path}: {msg} (got {e.get('input')!r})")
    return "invalid params:\n  " + "\n  ".join(dict.fromkeys(lines))


def _merge_branches(errors: list[dict]) -> list[tuple[tuple[str, ...], dict]]:
    """Each error with its key path (the location without pydantic's branch names), one per key for a union: a value
    that fits no branch of it (a number or 'auto') fails once per branch, and the reader needs the alternatives in
    one line. Errors that are not a union's branches are kept as they are."""
    out: dict = {}
    for i, e in enumerate(errors):
        parts = [str(p) for p in e["loc"]]
        key = tuple(p for p in parts if not _BRANCH.fullmatch(p))
        if len(key) == len(parts):  # not a branch: its own entry
            out[i] = (key, e)
        elif key in out and out[key][1]["msg"] != e["msg"]:
            first = out[key][1]
            out[key] = (key, {**first, "msg": first["msg"] + ", or " + e["msg"][0].lower() + e["msg"][1:]})
        else:
            out.setdefault(key, (key, e))
    return list(out.values())


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b=3` -> (['a', 'b'], 3). Values are parsed as YAML so lists and numbers work."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like KEY=VALUE, e.g. vae.latent_dim=8")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override '{item}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"{key}: value '{raw}' is not valid YAML ({e.__class__.__name__})") from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for i, part in enumerate(path[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"{'.'.join(path[:i + 1])}: is a value, cannot set '{'.'.join(path)}'")
            node = nxt
        node[path[-1]] = value
    return raw


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice in one mapping is an error: plain YAML silently
    keeps the last one, so a pasted duplicate would override a setting without a word."""


def _no_duplicate_keys(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool)):
            continue  # unhashable keys: construct_mapping reports those itself
        if key in seen:
            raise yaml.constructor.ConstructorError("while reading a mapping", node.start_mark,
                                                    f"found key '{key}' twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)


def flow_workers() -> int:
    """VAEFLOW_FLOW_WORKERS, the flow's task threads: 2 (gmm and pretrain side by side) unless set; 1 runs
    the stages one at a time (a 1-core box, or bench/bench_flow_overhead.py)."""
    raw = os.environ.get("VAEFLOW_FLOW_WORKERS", "2")
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ConfigError(f"VAEFLOW_FLOW_WORKERS must be a whole number ≥ 1, got {raw!r}")
    return int(raw)


def read_params_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"params file {path} is a folder; --params takes a YAML file such as params.yaml")
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if raw is None:
        raise ConfigError(f"{path}: file is empty; expected a mapping of params")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of params, got {type(raw).__name__}")
    return raw


def validate(raw: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format(e)) from None


def load_config(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Config:
    return validate(apply_overrides(read_params_file(path), list(overrides or [])))


# Where a schema default differs from params.yaml, and why (tests/test_docs.py fails on a difference not
# listed here). A schema default is what a params file that omits the key gets (presets, --params files);
# params.yaml's values were changed for the committed digits experiment after the schema was written.
