"""dvc.yaml's code deps follow the code: every project file a stage runs is a dep of that stage."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vaeflow.flows import deps
from tests.helpers import REPO, TINY


def _toy_project(root: Path) -> None:
    """tasks/one.py imports vaeflow.a at module level, vaeflow.b inside a function (lazy), vaeflow.pkg.c via
    importlib with a literal name, and a relative import inside the package."""
    files = {
        "tasks/__init__.py": "X = 1\n",
        "tasks/one.py": "import importlib\nfrom vaeflow import a\n\ndef run(cfg, paths):\n"
                        "    from vaeflow.b import f\n    importlib.import_module('vaeflow.pkg.c')\n",
        "vaeflow/__init__.py": "",  # empty: runs nothing, never listed (DVC warns about empty deps)
        "vaeflow/a.py": "X = 1\n",
        "vaeflow/b.py": "from .d import g\n\ndef f():\n    pass\n",
        "vaeflow/d.py": "def g():\n    pass\n",
        "vaeflow/unused.py": "X = 1\n",
        "vaeflow/pkg/__init__.py": "",
        "vaeflow/pkg/c.py": "X = 1\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "dvc.yaml").write_text(
        "stages:\n  one:\n    cmd: vaeflow stage one\n    deps:\n      - data/in  # not code: kept\n"
        "      - tasks/one.py\n      - vaeflow/a.py\n    outs:\n      - out\n")


def test_static_deps_include_lazy_relative_and_importlib_imports(tmp_path):
    _toy_project(tmp_path)
    assert deps.static_deps("one", tmp_path) == {
        "tasks/__init__.py", "tasks/one.py", "vaeflow/__init__.py", "vaeflow/a.py", "vaeflow/b.py", "vaeflow/d.py",
        "vaeflow/pkg/__init__.py", "vaeflow/pkg/c.py"}
    # vaeflow/pkg is wholly needed, so it is listed as a directory; vaeflow/ itself never is
    assert deps.collapse(deps.static_deps("one", tmp_path), tmp_path) == [
        "tasks/__init__.py", "tasks/one.py", "vaeflow/a.py", "vaeflow/b.py", "vaeflow/d.py", "vaeflow/pkg"]


def test_check_flags_a_missing_lazy_import_and_write_fixes_it(tmp_path):
    _toy_project(tmp_path)
    problems = deps.check(tmp_path, ["one"])
    assert "stage one: runs vaeflow/b.py but dvc.yaml does not list it" in problems
    assert "stage one: runs vaeflow/pkg/c.py but dvc.yaml does not list it" in problems
    assert deps.write(tmp_path, ["one"])
    assert deps.check(tmp_path, ["one"]) == []
    text = (tmp_path / "dvc.yaml").read_text()
    assert "- data/in  # not code: kept" in text and "vaeflow/unused.py" not in text
    assert not deps.write(tmp_path, ["one"])  # idempotent


def test_repo_dvc_yaml_lists_every_file_each_stage_imports():
    """The check CI runs: fails as soon as a stage imports a project module its dvc.yaml deps lack."""
    assert deps.check(REPO) == []
    import yaml

    listed = [d if isinstance(d, str) else next(iter(d))
              for s in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].values() for d in s.get("deps", [])]
    assert not [d for d in listed if deps.is_empty(d, REPO)], "an empty file as a dep: DVC warns on every run"


def test_every_stage_of_the_dag_is_in_dvc_yaml():
    import yaml

    assert set(deps.stages()) <= set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


@pytest.mark.slow
def test_files_a_stage_executes_are_its_deps(tmp_path):
    """Run every stage (tiny config, each in a fresh fork with no project module imported yet) and record the
    project files whose code executed: each must be covered by that stage's dvc.yaml deps, and found by the
    static analysis that writes them."""
    import yaml

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    from vaeflow.flows.deps_trace import traced_deps

    traced = traced_deps("params.yaml", TINY, tmp_path, root=REPO)
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage, files in traced.items():
        assert f"tasks/{stage}.py" in files, "the tracer saw nothing"
        listed = [d if isinstance(d, str) else next(iter(d)) for d in stages[stage]["deps"]]
        missing = sorted(f for f in files if not deps.covered(f, listed) and not deps.is_empty(f, REPO))
        assert not missing, f"stage {stage} runs {missing}, which dvc.yaml does not list"
        assert files <= deps.static_deps(stage, REPO), f"stage {stage}: a dynamic import the static analysis missed"


def test_a_project_without_vaeflow_code_has_no_code_deps(tmp_path, monkeypatch):
    """A project made by `vaeflow init` runs the installed package, wherever it is: the project is the working
    directory, which holds no code, so there is nothing to derive, check or write."""
    from typer.testing import CliRunner

    from vaeflow.flows.cli import app
    from vaeflow.flows.init_cli import project_dvc_yaml

    text = project_dvc_yaml((REPO / "dvc.yaml").read_text())
    (tmp_path / "dvc.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    assert not deps.is_source_checkout(tmp_path) and deps.check() == []
    res = CliRunner().invoke(app, ["deps", "--write"])
    assert res.exit_code == 0 and "no vaeflow code here" in res.output
    assert (tmp_path / "dvc.yaml").read_text() == text


def test_a_module_named_in_a_registry_string_is_a_dep(tmp_path):
    """A registry names classes as "package.module:Name" and imports them by that name when used
    (vaeflow/variants.py): the static analysis counts that module as imported."""
    _toy_project(tmp_path)
    (tmp_path / "vaeflow" / "registry.py").write_text(
        'import importlib\nROWS = {"x": "vaeflow.unused:Thing", "web": "http://a:b"}\n\n'
        'def load(ref):\n    module, _, name = ref.partition(":")\n    return getattr(importlib.import_module(module), name)\n')
    (tmp_path / "tasks" / "two.py").write_text("from vaeflow import registry\n")
    assert {"vaeflow/registry.py", "vaeflow/unused.py"} <= deps.static_deps("two", tmp_path)
