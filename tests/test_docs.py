"""What the docs and comments claim, checked against the code: cited files exist, exit codes are listed,
schema defaults that differ from params.yaml say why, and a full disk is not retried as transient."""
from __future__ import annotations

import errno
import re

import pytest
import yaml

from tests.conftest import REPO

TEXT_FILES = [*REPO.glob("*.yaml"), *REPO.glob("configs/*.yaml"), *REPO.glob("*.md"), *REPO.glob("docs/*.md"),
              *REPO.glob("flows/*.py"), *REPO.glob("tasks/*.py"), *REPO.rglob("vaeflow/**/*.py")]


def test_every_cited_doc_exists():
    for f in TEXT_FILES:
        for cited in re.findall(r"\bdocs/[\w.-]+\.md\b", f.read_text()):
            assert (REPO / cited).is_file(), f"{f.relative_to(REPO)} cites {cited}, which does not exist"


def test_cited_dvc_stages_exist():
    stages = set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    for f in [*REPO.glob("flows/*.py"), *REPO.glob("tasks/*.py")]:
        for stage in re.findall(r"dvc\.yaml's (\w+) stage", f.read_text()):
            assert stage in stages, f"{f.relative_to(REPO)} cites a dvc.yaml {stage} stage that does not exist"


def test_cli_header_and_readme_list_every_exit_code():
    codes = set()
    for f in REPO.glob("flows/*.py"):
        codes |= {int(c) for c in re.findall(r"_fail\((\d+)", f.read_text())}
    import vaeflow.flows.cli

    header, readme = vaeflow.flows.cli.__doc__, (REPO / "README.md").read_text()
    assert {1, 2, 3, 130} <= codes
    for c in codes:
        assert re.search(rf"\b{c}\b", header), f"flows/cli.py's header does not list exit code {c}"
        assert f"| {c} |" in readme, f"README's exit-code table lacks {c}"


def _leaves(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "search_space":  # search_space is one value: a mapping of ranges
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_schema_defaults_differ_from_params_yaml_only_where_a_comment_says_why():
    from vaeflow.config import DEFAULTS_DIFFER_FROM_PARAMS_YAML, Config

    schema = _leaves(Config().model_dump(mode="json"))
    params = _leaves(yaml.safe_load((REPO / "params.yaml").read_text()))
    differ = {k for k in set(schema) | set(params) if schema.get(k) != params.get(k)}
    explained = set(DEFAULTS_DIFFER_FROM_PARAMS_YAML)
    unexplained = sorted(k for k in differ if not any(k == e or k.startswith(e + ".") for e in explained))
    assert not unexplained, (f"schema defaults differ from params.yaml without a reason: {unexplained}; "
                             "add each to vaeflow/config.py's DEFAULTS_DIFFER_FROM_PARAMS_YAML")
    stale = sorted(e for e in explained if not any(k == e or k.startswith(e + ".") for k in differ))
    assert not stale, f"DEFAULTS_DIFFER_FROM_PARAMS_YAML lists keys that no longer differ: {stale}"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_a_full_or_read_only_disk_is_not_retried(code):
    from vaeflow.flows.training_pipeline import is_transient

    assert not is_transient(OSError(code, "No space left on device"))
    assert is_transient(OSError(errno.EIO, "Input/output error"))  # a hiccup still is
    assert is_transient(TimeoutError())
    assert not is_transient(FileNotFoundError(errno.ENOENT, "gone"))


# Declared only to pin what Prefect imports (versions that work with prefect 3.8), never imported by us.
PINS_FOR_OTHERS = {"fastapi", "sqlalchemy"}
IMPORT_NAMES = {"pillow": "PIL", "pyyaml": "yaml", "scikit-learn": "sklearn"}


def test_every_declared_dependency_is_used():
    """dvclive was declared and never imported (metrics and plots reach DVC through dvc.yaml's metrics: and
    plots: instead); a dependency nobody imports is dropped, or listed above with the reason it stays."""
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\[<>=!~ ]", d, maxsplit=1)[0].lower() for d in deps}
    code = "\n".join(f.read_text() for d in ("vaeflow", "tasks", "flows") for f in (REPO / d).rglob("*.py"))
    for name in sorted(names - PINS_FOR_OTHERS):
        mod = IMPORT_NAMES.get(name, name.replace("-", "_"))
        assert re.search(rf"^\s*(from|import) {mod}\b", code, flags=re.M), f"{name} is declared but never imported"
