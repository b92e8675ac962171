"""`vaeflow init DIR`: a new project that runs the installed vaeflow, as `dvc init` or `kedro new` make one.

The template is package data, vaeflow/templates/. In this repository its files are links to the
repository's own params.yaml, dvc.yaml, prefect.yaml, configs/, models/tuned/README.md and
.dvc/offline_plots.html, so a new project starts from exactly what the repository runs; a wheel holds copies.
Two files change on the way:

- dvc.yaml loses its code deps (paths under vaeflow/, tasks/, flows/). A project runs the installed
  package, whose files are not the project's and live at no fixed path (flows/deps.py).
- prefect.yaml names the flow by module (vaeflow.flows.training_pipeline), not by a file of the checkout.

Then `git init` and `dvc init`, so that `vaeflow run` records its stages in dvc.lock and `dvc repro` works,
and DVC's plots page set up as the repository's: `dvc plots show` renders offline (docs/dvc.md). A repository
`init` created gets a first commit (with the user's git identity), which `dvc exp run` needs.
Registered on the app (flows/app.py) when flows/cli.py, the entry point, imports this module.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import typer

from vaeflow.flows.app import _fail, app, console
from vaeflow.flows.deps import CODE_ROOTS

COPIED = ("params.yaml", "configs", "models")  # as they are
WRITTEN = ("dvc.yaml", "prefect.yaml", ".gitignore")  # adapted, below
FLOW_FILE_ENTRYPOINT = "flows/training_pipeline.py:training_pipeline"
FLOW_MODULE_ENTRYPOINT = "vaeflow.flows.training_pipeline.training_pipeline"  # Prefect imports it by name
# DVC's default plots page loads Vega from a CDN; the repository's .dvc/config names this page template, Vega
# inlined, instead (plots.html_template, relative to .dvc/). A new project gets both.
PLOTS_TEMPLATE = "offline_plots.html"
PLOTS_TEMPLATE_SOURCE = "dvc_offline_plots.html"  # its name in the package: no dotfile (.dvc/) in package data

DVC_HEADER = """\
# Written by `vaeflow init`: the same stages as `vaeflow run`, for `dvc repro`. Each stage calls
# `vaeflow stage NAME`, which validates params.yaml exactly as every other entry point does.
# The stages run the installed vaeflow package, so its code is not a dep here: after upgrading vaeflow,
# `dvc repro --force` runs everything again.
"""


def template() -> Traversable:
    return resources.files("vaeflow") / "templates"


def project_dvc_yaml(text: str) -> str:
    """The repository's dvc.yaml without its code deps and their header comment. Line-based: deps.write
    writes one dep a line, and a ruamel round trip would keep the comments that describe the checkout."""
    code_dep = re.compile(rf"^\s+- (?:{'|'.join(CODE_ROOTS)})/\S*\s*$")
    body = text[text.index("stages:"):]  # the header above it describes the repository's dvc.yaml
    lines = [line for line in body.splitlines(keepends=True) if not code_dep.match(line)]
    # A stage whose deps were all code (prepare) keeps no `deps:` key: DVC refuses an empty one.
    indent = lambda line: len(line) - len(line.lstrip())  # noqa: E731
    kept = [line for i, line in enumerate(lines) if not (
        line.strip() == "deps:" and not any(indent(n) > indent(line) for n in lines[i + 1:i + 2] if n.strip()))]
    return DVC_HEADER + "".join(kept)


def project_prefect_yaml(text: str) -> str:
    if FLOW_FILE_ENTRYPOINT not in text:  # the template changed: refuse to write a deployment that cannot load
        raise RuntimeError(f"prefect.yaml template has no entrypoint {FLOW_FILE_ENTRYPOINT}")
    return text.replace(FLOW_FILE_ENTRYPOINT, FLOW_MODULE_ENTRYPOINT)


def _copy(src: Traversable, dst: Path) -> None:
    if src.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
        for child in src.iterdir():
            _copy(child, dst / child.name)
    else:
        dst.write_bytes(src.read_bytes())


def _run(cmd: list[str], cwd: Path) -> None:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        _fail(1, f"`{' '.join(cmd)}` failed in {cwd}: {(p.stderr or p.stdout).strip()}")


def scaffold(root: Path) -> list[str]:
    """Write the project files into `root` (created if missing), then `git init` and `dvc init` there.
    Returns what was created. Refuses (exit 2) a directory that already holds a project."""
    taken = [n for n in (*COPIED, *WRITTEN, ".dvc") if (root / n).exists()]
    if taken:
        _fail(2, f"{root} already has {', '.join(taken)}: `vaeflow init` makes a new project only")
    root.mkdir(parents=True, exist_ok=True)
    t = template()
    for name in COPIED:
        _copy(t / name, root / name)
    (root / "dvc.yaml").write_text(project_dvc_yaml((t / "dvc.yaml").read_text()))
    (root / "prefect.yaml").write_text(project_prefect_yaml((t / "prefect.yaml").read_text()))
    (root / ".gitignore").write_text((t / "gitignore").read_text())  # no dotfile in package data
    created = [*COPIED, *WRITTEN]
    if (root / ".git").exists():
        pass  # already a git repository (e.g. a fresh clone of an empty remote): keep it
    elif shutil.which("git"):
        _run(["git", "init", "-q"], root)
        created.append(".git")
    dvc_init = [sys.executable, "-m", "dvc", "init", "-q"]  # DVC is a dependency of this interpreter's vaeflow
    _run(dvc_init if (root / ".git").exists() else [*dvc_init, "--no-scm"], root)
    (root / ".dvc" / PLOTS_TEMPLATE).write_bytes((t / PLOTS_TEMPLATE_SOURCE).read_bytes())
    _run([sys.executable, "-m", "dvc", "config", "plots.html_template", PLOTS_TEMPLATE], root)  # into .dvc/config
    if (root / ".git").exists() and shutil.which("git"):  # staged with the rest of .dvc/, as `dvc init` left it
        _run(["git", "add", f".dvc/{PLOTS_TEMPLATE}", ".dvc/config"], root)
    if ".git" in created:
        _first_commit(root)
    return [*created, ".dvc"]


def _first_commit(root: Path) -> None:
    """Commit the new project in the repository `init` created: DVC's experiments (`dvc exp run`) need a commit
    to start from, and a repository without one fails with "Empty git repo". With the user's own git identity
    only: where git has none, say so and how, rather than commit under a made-up name."""
    _run(["git", "add", "-A"], root)
    p = subprocess.run(["git", "commit", "-q", "-m", "vaeflow init"], cwd=root, capture_output=True, text=True)
    if p.returncode != 0:
        console.print(f"not committed ({(p.stderr or p.stdout).strip().splitlines()[0]}): `dvc exp run` needs a "
                      f"first commit; set your git identity, then in {root}: git commit -m 'vaeflow init'",
                      highlight=False, markup=False)


@app.command("init")
def init(directory: Path = typer.Argument(..., help="the new project's directory (created if missing)")) -> None:
    """Start a new project: params.yaml, dvc.yaml, prefect.yaml, configs/, .gitignore, git and DVC."""
    created = scaffold(directory)
    console.print(f"created {directory}: {', '.join(created)}\nnext: cd {directory} && vaeflow run   "
                  "(or `dvc repro`; edit params.yaml or pick one of configs/ with --params)", highlight=False,
                  markup=False)
