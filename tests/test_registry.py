"""The variant registry (vaeflow/variants.py) is the one source of every variant list: the config's allowed
names, the `data.pools: shared` guard, the report's notes and the docs all follow from it."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO
from vaeflow.config import AdaptConfig, ConfigError, load_config
from vaeflow.training.algorithms import Algorithm, resolve
from vaeflow.variants import BY_NAME, DEFAULT, NAMES, VARIANTS, lineage, reads_source_labels, reads_target_labels


def test_every_row_names_an_algorithm_and_known_data():
    for v in VARIANTS:
        assert issubclass(resolve(v.algorithm), Algorithm), v.name
        assert v.labelled in (None, "source", "few", "target", "joint") and v.init in ("pretrained", "random")
        assert v.continues is None or v.continues in BY_NAME
        assert v.note and not v.note.endswith(".")


def test_the_config_accepts_exactly_the_registered_variants():
    for name in NAMES:
        parents = [s.name for s in reversed(lineage(name))]
        cfg = load_config(REPO / "params.yaml", [f"adapt.variants=[{', '.join(parents)}]"])
        assert cfg.adapt.variants[-1] == name
    assert AdaptConfig().variants == list(DEFAULT)
    with pytest.raises(ConfigError, match="adapt.variants"):
        load_config(REPO / "params.yaml", ["adapt.variants=[not_a_method]"])


def test_shared_pools_refuse_every_variant_that_reads_source_labels_and_accept_the_rest():
    base = ["data.source=digits", "data.target=digits", "data.pools=shared"]
    for name in NAMES:
        chain = ", ".join(s.name for s in reversed(lineage(name)))
        if reads_source_labels(name):
            with pytest.raises(ConfigError, match="would read target labels"):
                load_config(REPO / "params.yaml", base + [f"adapt.variants=[{chain}]"])
        else:
            assert load_config(REPO / "params.yaml", base + [f"adapt.variants=[{chain}]"])
    assert reads_source_labels("shot") and reads_source_labels("adabn")  # through source_only
    assert not reads_target_labels("shot") and reads_target_labels("fixmatch")


def test_every_variant_reaches_the_report_notes_and_the_docs():
    from vaeflow.tasks.evaluate import _adapt_notes

    cfg = load_config(REPO / "params.yaml")
    lines = "\n".join(_adapt_notes({n: {} for n in NAMES}, cfg, {}))
    docs = (REPO / "docs" / "variants.md").read_text()
    for v in VARIANTS:
        assert f"`{v.name}`" in lines and v.note in lines
        assert f"| `{v.name}` |" in docs, f"docs/variants.md lacks {v.name}: run python -m vaeflow.variants"
    assert "(AdaBN) (AdaBN)" not in lines and f"`dann`: {BY_NAME['dann'].note} (AdaBN)" in lines


def test_the_docs_table_is_the_registry_as_generated():
    from vaeflow.variants import markdown_table

    assert markdown_table() in (REPO / "docs" / "variants.md").read_text()
