"""`vaeflow init DIR`: a new project that runs the installed vaeflow, as `dvc init` or `kedro new` make one.

The template is package data, vaeflow/templates/. In this repository its files are links to the
repository's own params.yaml, dvc.yaml, prefect.yaml, configs/, models/tuned/README.md and
.dvc/offline_plots.html, so a new project starts from exactly what the repository runs; a wheel holds copies.
Two files change on the way:

- dvc.yaml loses its code deps (paths under vaeflow/, tasks/, flows/). A project runs the installed
  package, whose files are not the project's and live at no fixed path (flows/deps.py).
- prefect.yaml names the flow by module (vaeflow.flows.training_pipeline), not by a file of the checkout.

Then `git init` and `dvc init`, so that `vaeflow run` records its stages in dvc.lock and `dvc repro` works (in
a folder of a git repository no repository is nested: `dvc init --subdir` makes the folder a DVC project,
init's files are staged and nothing is committed for the user), and DVC's plots page set up as the
repository's: `dvc plots show` renders offline (docs/dvc.md). Then one commit of exactly the files `init`
wrote (with the user's git identity), which `dvc exp run` needs: in the repository `init` created, or in the
one the folder already was. A folder may already hold the user's own files; they are left as they were, never
committed (a `git add -A` would sweep in notes, data or secrets).
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

from vaeflow.flows.app import _fail, app, console, guarded
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
    Returns what was created. Refuses (exit 2) a path that is a file, and a directory that already holds a
    project."""
    if root.exists() and not root.is_dir():  # else mkdir's FileExistsError, a traceback for a typo'd name
        _fail(2, f"{root} exists and is not a folder: `vaeflow init` makes a new project in a folder "
                 "(give a new name, or an existing folder)")
    taken = [n for n in (*COPIED, *WRITTEN, ".dvc") if (root / n).exists()]
    if taken:
        _fail(2, f"{root} already has {', '.join(taken)}: `vaeflow init` makes a new project only")
    guarded(lambda: root.mkdir(parents=True, exist_ok=True))  # a parent that is a file, no permission: exit 2
    users_dvcignore = (root / ".dvcignore").exists()  # `dvc init` keeps one the user had: theirs, not committed
    t = template()
    for name in COPIED:
        _copy(t / name, root / name)
    (root / "dvc.yaml").write_text(project_dvc_yaml((t / "dvc.yaml").read_text()))
    (root / "prefect.yaml").write_text(project_prefect_yaml((t / "prefect.yaml").read_text()))
    (root / ".gitignore").write_text((t / "gitignore").read_text())  # no dotfile in package data
    created = [*COPIED, *WRITTEN]
    outer = enclosing_repository(root)
    if (root / ".git").exists() or outer is not None:
        pass  # already a git repository (a fresh clone of an empty remote), or a folder of one: no repository in it
    elif shutil.which("git"):
        _run(["git", "init", "-q"], root)
        created.append(".git")
    dvc_init = [sys.executable, "-m", "dvc", "init", "-q"]  # DVC is a dependency of this interpreter's vaeflow
    git = ((root / ".git").exists() or outer is not None) and shutil.which("git")
    # `dvc init` stages its files, .dvcignore among them, even one the user had and git did not track yet
    unstage = git and users_dvcignore and not subprocess.run(
        ["git", "ls-files", "--", ".dvcignore"], cwd=root, capture_output=True, text=True).stdout.strip()
    # --subdir: a DVC project in a folder of a larger git repository (DVC's monorepo layout)
    _run(dvc_init if (root / ".git").exists() else [*dvc_init, "--subdir"] if outer else [*dvc_init, "--no-scm"], root)
    if unstage:
        _run(["git", "rm", "-q", "--cached", "--", ".dvcignore"], root)
    (root / ".dvc" / PLOTS_TEMPLATE).write_bytes((t / PLOTS_TEMPLATE_SOURCE).read_bytes())
    _run([sys.executable, "-m", "dvc", "config", "plots.html_template", PLOTS_TEMPLATE], root)  # into .dvc/config
    created.append(".dvc")
    if (root / ".dvcignore").exists() and not users_dvcignore:  # `dvc init` writes it beside .dvc/
        created.append(".dvcignore")
    if git and outer is None:
        _commit(root, [n for n in created if n != ".git"])
    elif outer is not None:  # the user's repository: staged, never committed on their behalf
        _run(["git", "add", "--", *created], root)
        console.print(f"inside the git repository {outer}: staged, not committed ({', '.join(created)}); "
                      "`dvc exp run` needs them committed: git commit", highlight=False, markup=False)
    return created


def enclosing_repository(root: Path) -> Path | None:
    """The git work tree that the folder `root` lies in, below its top; None if none (or no git)."""
    if (root / ".git").exists() or not shutil.which("git"):
        return None
    p = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True)
    return Path(p.stdout.strip()) if p.returncode == 0 and p.stdout.strip() else None


def _commit(root: Path, paths: list[str]) -> None:
    """Commit the files `init` wrote, and only those: DVC's experiments (`dvc exp run`) need a commit to start
    from, and a repository without one fails with "Empty git repo". The paths are named both to `git add` and
    to `git commit` (its --only mode): the user's own files in the folder stay untracked, and whatever they had
    staged in a repository that already existed stays staged, out of this commit. With the user's own git
    identity only: where git has none (or a hook refuses), say so and give the exact command, everything of
    init's staged for it, rather than commit under a made-up name."""
    _run(["git", "add", "--", *paths], root)
    commit = ["git", "commit", "-q", "-m", "vaeflow init", "--", *paths]
    p = subprocess.run(commit, cwd=root, capture_output=True, text=True)
    if p.returncode != 0:
        why = ((p.stderr or p.stdout).strip().splitlines() or ["git commit failed"])[0]
        console.print(f"not committed ({why}): `dvc exp run` needs a first commit; set your git identity, then "
                      f"in {root}: {' '.join(commit[:2])} -m 'vaeflow init' -- {' '.join(paths)}",
                      highlight=False, markup=False)
        return
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    console.print(f"committed {sha.stdout.strip()} 'vaeflow init': {', '.join(paths)}", highlight=False,
                  markup=False)


@app.command("init")
def init(directory: Path = typer.Argument(..., help="the new project's directory (created if missing)")) -> None:
    """Start a new project: params.yaml, dvc.yaml, prefect.yaml, configs/, .gitignore, git and DVC."""
    before = guarded(lambda: sorted(p.name for p in directory.iterdir()) if directory.is_dir() else [])
    created = scaffold(directory)
    mine = [n for n in before if n != ".git"]
    # params.yaml is the repository's own, whose data.root names that checkout's data folder: a new project's
    # files (MNIST, USPS, folder:, npz:) are elsewhere. The default pair (digits, digits_shifted) needs none:
    # scikit-learn ships the digits (vaeflow/data/digits.py), so the first `vaeflow run` works as it is.
    root = _data_root(directory)
    console.print(
        f"created {directory}: {', '.join(created)}"
        + (f"\nleft as they were, out of init's commit: {', '.join(mine)}" if mine else "")
        + f"\ndata: the default pair (digits -> digits_shifted) is made from scikit-learn's bundled digits and "
          f"needs no files. MNIST, USPS and Fashion-MNIST are read from data.root, now {root} (relative to the "
          "folder you run in): set it in params.yaml, or per run with --set data.root=/path/to/data"
        + f"\nnext: cd {directory} && vaeflow run   (or `dvc repro`; edit params.yaml or pick one of configs/ "
          "with --params)", highlight=False, markup=False)


def _data_root(directory: Path) -> str:
    import yaml

    try:
        return str(yaml.safe_load((directory / "params.yaml").read_text())["data"]["root"])
    except (OSError, KeyError, TypeError, yaml.YAMLError):  # a template without it: say so, do not fail init
        return "unset"
