"""One installed name: the wheel holds the package `vaeflow` only (flows/ and tasks/ install as vaeflow.flows and
vaeflow.tasks), and a non-editable install makes new projects with `vaeflow init` that `vaeflow run` and
`dvc repro` run."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, write_tiny_params
from vaeflow import uptodate
from vaeflow.flows import deps, init_cli
from vaeflow.tasks import UPSTREAM


def _setuptools_config() -> dict:
    """pyproject.toml's [tool.setuptools], read by setuptools itself (tomllib is Python 3.11+ only)."""
    from setuptools.config.pyprojecttoml import read_configuration

    return read_configuration(REPO / "pyproject.toml")["tool"]["setuptools"]


def test_every_package_of_the_checkout_is_in_the_wheel_under_vaeflow():
    """pyproject.toml lists the packages explicitly (package-dir maps flows/ and tasks/ under vaeflow): a new
    package folder must be added there, or the wheel ships without it."""
    found = set()
    for folder in deps.CODE_ROOTS:
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO).parts
            found.add(".".join(deps._module_name(parts)))
    cfg = _setuptools_config()
    assert set(cfg["packages"]) == found, "add the missing packages to pyproject.toml's [tool.setuptools] packages"
    assert cfg["package-dir"] == {k: v for k, v in deps.PACKAGE_DIRS.items() if k != "vaeflow"}


def test_the_project_template_is_the_repository_s_pipeline():
    """vaeflow/templates links to the repository's files; init drops only the code deps from dvc.yaml and names
    the flow by module in prefect.yaml."""
    t = init_cli.template()
    assert (t / "params.yaml").read_text() == (REPO / "params.yaml").read_text()
    assert sorted(p.name for p in (t / "configs").iterdir()) == sorted(p.name for p in (REPO / "configs").iterdir())
    dvc = yaml.safe_load(init_cli.project_dvc_yaml((t / "dvc.yaml").read_text()))
    repo_dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert list(dvc["stages"]) == list(repo_dvc["stages"]) and set(UPSTREAM) <= set(dvc["stages"])
    for name, stage in dvc["stages"].items():
        listed = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps") or []]
        repo_listed = [d if isinstance(d, str) else next(iter(d)) for d in repo_dvc["stages"][name].get("deps", [])]
        assert listed == [d for d in repo_listed if not deps.is_code_dep(d)]
        assert {k: v for k, v in stage.items() if k != "deps"} == \
               {k: v for k, v in repo_dvc["stages"][name].items() if k != "deps"}
    prefect = yaml.safe_load(init_cli.project_prefect_yaml((t / "prefect.yaml").read_text()))
    module, _, name = prefect["deployments"][0]["entrypoint"].rpartition(".")
    import importlib

    assert importlib.import_module(module).__dict__[name].name == "training_pipeline"


def test_init_refuses_a_directory_that_holds_a_project(tmp_path):
    from typer.testing import CliRunner

    from vaeflow.flows.cli import app

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    res = CliRunner().invoke(app, ["init", str(tmp_path)])
    assert res.exit_code == 2 and "already has dvc.yaml" in " ".join(res.output.split())  # rich wraps lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dvc.yaml"]


def _dvc(*args: str, cwd: Path) -> str:
    p = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p.stdout


def test_init_gives_a_project_the_repository_s_offline_dvc_plots_page(tmp_path):
    """The repository's .dvc/config points `dvc plots show` at a page template with Vega inlined (docs/dvc.md);
    a project made by `vaeflow init` gets the same setting and file, so its plots render without a CDN too."""
    project = tmp_path / "proj"
    init_cli.scaffold(project)
    setting = _dvc("config", "plots.html_template", cwd=project).strip()
    assert setting == _dvc("config", "plots.html_template", cwd=REPO).strip() == init_cli.PLOTS_TEMPLATE
    assert (project / ".dvc" / setting).read_bytes() == (REPO / ".dvc" / setting).read_bytes()
    (project / "metrics" / "plots").mkdir(parents=True)
    (project / "metrics" / "plots" / "pretrain.csv").write_text("epoch,train_loss,val_nelbo\n0,3.0,3.1\n1,2.0,2.2\n")
    _dvc("plots", "show", "-o", str(tmp_path / "plots"), "metrics/plots/pretrain.csv", cwd=project)
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "vegaEmbed(" in html and "<script src=" not in html and "cdn.jsdelivr" not in html


def _build_wheel(out: Path) -> Path:
    """`pip wheel --no-deps .` on a copy of what git tracks for the package (symlinks kept, as in a clone),
    offline and without build isolation: this interpreter's setuptools builds it."""
    src = out / "src"
    for name in ("pyproject.toml", "README.md", "params.yaml", "dvc.yaml", "prefect.yaml"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "templates")
    for d in ("vaeflow", "flows", "tasks", "configs"):
        shutil.copytree(REPO / d, src / d, ignore=skip)
    shutil.copytree(REPO / "vaeflow" / "templates", src / "vaeflow" / "templates", symlinks=True)
    (src / "models" / "tuned").mkdir(parents=True)
    shutil.copy2(REPO / "models" / "tuned" / "README.md", src / "models" / "tuned" / "README.md")
    (src / ".dvc").mkdir()  # vaeflow/templates/dvc_offline_plots.html links here
    shutil.copy2(REPO / ".dvc" / "offline_plots.html", src / ".dvc" / "offline_plots.html")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(out / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    wheel, = (out / "dist").glob("vaeflow-*.whl")
    return wheel


def _bare_venv(where: Path) -> Path:
    """A new virtualenv without vaeflow. Its dependencies (torch, Prefect, DVC, Ray, ...) come from this
    interpreter's site-packages through a .pth file: offline, the versions constraints.txt pinned, and seconds
    instead of minutes. That directory's own .pth files (the editable install of this checkout) are not
    processed, so `vaeflow` is not importable there unless installed or put on PYTHONPATH."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    py = where / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return py


def test_a_checkout_imports_uninstalled(tmp_path):
    """A clone on PYTHONPATH (or a Ray job's working_dir) finds vaeflow.flows and vaeflow.tasks in the folders
    beside vaeflow/ (vaeflow/__init__.py), with no install of this checkout anywhere."""
    py = _bare_venv(tmp_path / "venv")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([str(py), "-c", "import vaeflow.flows.app, vaeflow.tasks.gmm as g; print(g.__file__)"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == str(REPO / "tasks" / "gmm.py"), out.stderr[-2000:]


def _fresh_venv(where: Path, wheel: Path) -> Path:
    """A new virtualenv with the wheel installed non-editable (and no other vaeflow)."""
    py = _bare_venv(where)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--ignore-installed",
                    "-c", str(REPO / "constraints.txt"), str(wheel)], check=True, capture_output=True, timeout=300)
    return where / "bin"


@pytest.mark.slow
@pytest.mark.timeout(2400)  # a wheel, a venv, a tiny run and dvc: ~1 min on 2 idle cores, longer under load
def test_a_wheel_installs_one_package_and_its_init_makes_a_project_that_runs(tmp_path):
    wheel = _build_wheel(tmp_path / "build")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"vaeflow", wheel.name.split("-py")[0] + ".dist-info"}
    assert "vaeflow/flows/cli.py" in names and "vaeflow/tasks/__init__.py" in names
    assert "vaeflow/templates/params.yaml" in names and "vaeflow/templates/configs/mnist_usps.yaml" in names
    assert "vaeflow/templates/dvc_offline_plots.html" in names
    entry = zipfile.ZipFile(wheel).read(wheel.name.split("-py")[0] + ".dist-info/entry_points.txt").decode()
    assert "vaeflow = vaeflow.flows.cli:main" in entry

    bin_ = _fresh_venv(tmp_path / "venv", wheel)
    (tmp_path / "home").mkdir()  # a new user's: Prefect creates its database there
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PREFECT_API_URL")}
    env.update(PATH=f"{bin_}{os.pathsep}{env['PATH']}", HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1",
               COLUMNS="200")
    where = subprocess.run([str(bin_ / "python"), "-c", "import vaeflow.flows.cli as c; print(c.__file__)"],
                           cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout
    assert where.startswith(str(tmp_path / "venv")), f"not the installed wheel: {where}"

    def sh(*cmd: str, cwd: Path, timeout: float = 300) -> str:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        assert p.returncode == 0, f"{cmd}: {p.stdout[-2000:]}\n{p.stderr[-3000:]}"
        return p.stdout + p.stderr

    sh("vaeflow", "init", "proj", cwd=tmp_path)
    project = tmp_path / "proj"
    assert {".git", ".dvc", ".gitignore", "params.yaml", "dvc.yaml", "prefect.yaml", "configs"} <= \
           {p.name for p in project.iterdir()}
    assert "html_template = offline_plots.html" in (project / ".dvc" / "config").read_text()  # plots offline
    assert (project / ".dvc" / "offline_plots.html").read_bytes() == (REPO / ".dvc" / "offline_plots.html").read_bytes()
    # The shipped default's own run is test_clean_run's and test_report's; here the installed package is on
    # trial, so the project's params.yaml is made tiny, as a user edits it (~15 s instead of ~2 min a run).
    write_tiny_params(project / "params.yaml")
    sh("vaeflow", "run", cwd=project, timeout=2000)
    assert set(yaml.safe_load((project / "dvc.lock").read_text())["stages"]) == {uptodate.CHECK, *UPSTREAM}
    assert "adapt" in yaml.safe_load((project / "metrics" / "metrics.json").read_text())
    # dvc repro: everything up to date after the run, and a stage it reruns calls the installed `vaeflow`
    assert "up to date" in sh(str(bin_ / "python"), "-m", "dvc", "status", cwd=project)
    sh(str(bin_ / "python"), "-m", "dvc", "repro", "--force", "--single-item", "evaluate", cwd=project)
    assert "up to date" in sh(str(bin_ / "python"), "-m", "dvc", "status", cwd=project)
