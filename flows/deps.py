"""Each stage's code deps in dvc.yaml, derived from the code instead of kept by hand.

`vaeflow run` and `dvc repro` both call a stage up to date when its deps are unchanged, so a project file
that a stage runs but dvc.yaml does not list makes an edit to it invisible (stale results reported as up to
date). Two views of "the files a stage runs":

- `static_deps(stage)`: the project files reachable from `tasks/<stage>.py` through import statements,
  wherever they are (lazy imports inside functions included), plus every package `__init__.py` on the way.
  An over-approximation: a branch that a config never takes still counts, as it must (a config can take it).
  This is what `vaeflow deps --write` puts into dvc.yaml.
- `traced_deps(...)` (flows/deps_trace.py): the project files whose code actually executes while the stage
  runs on a config, each stage in a freshly forked process with no project module imported yet
  (tests/test_deps.py). It catches what reading import statements cannot (an import with a computed name).

Only code deps (paths under CODE_ROOTS) are managed; data, model and metric deps are left as written.

The project is the working directory (where dvc.yaml and params.yaml are), never this file's location: in a
source checkout the code is there too, and its code deps are managed; a project made by `vaeflow init` runs
an installed vaeflow, whose files are not the project's, so its dvc.yaml lists no code deps.
Module names map to folders as pyproject.toml's package-dir says: vaeflow.tasks.gmm is tasks/gmm.py.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import typer

from vaeflow.flows.app import _fail, app, console

# Installed package -> its folder in a source checkout; the same mapping as pyproject.toml's package-dir
# (tests/test_packaging.py checks). Longest name first, so vaeflow.tasks wins over vaeflow.
PACKAGE_DIRS = {"vaeflow.flows": "flows", "vaeflow.tasks": "tasks", "vaeflow": "vaeflow"}
CODE_ROOTS = tuple(PACKAGE_DIRS.values())  # the checkout's code folders; deps under them are code deps
NOT_COLLAPSED = set(CODE_ROOTS)  # never list a whole package root: it would tie a stage to every module


def project_root() -> Path:
    return Path.cwd()


def is_source_checkout(root: Path) -> bool:
    """Whether `root` holds vaeflow's code (a clone of its repository), not only a project that uses it."""
    return all((root / d / "__init__.py").is_file() for d in CODE_ROOTS)


def _folder_parts(name: str) -> list[str] | None:
    """Module name -> its path parts in the checkout (vaeflow.tasks.gmm -> [tasks, gmm]); None if not ours."""
    for package, folder in PACKAGE_DIRS.items():
        if name == package or name.startswith(package + "."):
            return [folder, *name.split(".")[package.count(".") + 1:]]
    return None


def _module_name(parts: tuple[str, ...]) -> list[str]:
    """Path parts of a folder in the checkout -> its module name's parts ([tasks] -> [vaeflow, tasks])."""
    package = next(p for p, folder in PACKAGE_DIRS.items() if folder == parts[0])
    return [*package.split("."), *parts[1:]]


def module_file(name: str, root: Path | None = None) -> Path | None:
    """The file of project module `name` (a package's __init__.py), or None if it is not a project module."""
    parts = _folder_parts(name)
    if parts is None:
        return None
    base = (root or project_root()).joinpath(*parts)
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _package_inits(name: str, root: Path) -> list[Path]:
    """Importing a.b.c runs a/__init__.py and a/b/__init__.py first."""
    parts = name.split(".")
    return [f for i in range(1, len(parts)) if (f := module_file(".".join(parts[:i]), root))
            and f.name == "__init__.py"]


OBJECT_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")  # "vaeflow.training.mean_teacher:MeanTeacher"


def _imported_names(path: Path, root: Path) -> set[str]:
    """Every module name that `path` imports anywhere (module level or inside functions), with `from X import
    y` also giving X.y (y may be a submodule) and `importlib.import_module("literal")`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(root).with_suffix("")
    package = _module_name(rel.parts[:-1])  # a/b/c.py and a/b/__init__.py both sit in package a.b
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from ..a import b
                base = package[:len(package) - node.level + 1] if node.level > 1 else package
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names if a.name != "*")
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return names


def _object_refs(path: Path) -> tuple[set[str], bool]:
    """(modules named by "package.module:Name" string literals in `path`, whether `path` resolves such names:
    it calls import_module with a computed argument). A registry's rows name their classes this way."""
    refs, resolves = set(), False
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and OBJECT_REF.match(node.value):
            refs.add(node.value.split(":")[0])
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and not isinstance(node.args[0], ast.Constant)):
            resolves = True
    return refs, resolves


def static_deps(stage: str, root: Path | None = None) -> set[str]:
    """Project files (relative posix paths) that importing and running tasks/<stage>.py can execute.

    A "package.module:Name" string (a registry row naming its class) counts as an import only for a stage
    that also runs a resolver of such names (import_module with a computed name, outside a package's
    __init__.py, where it loads the package's own submodules): the config reads the variant registry in
    every stage, but only `adapt` imports the algorithms its rows name."""
    root = root or project_root()
    start = f"vaeflow.tasks.{stage}"
    seen: set[Path] = set()
    refs: set[str] = set()
    resolves = False
    todo = [f for f in [module_file(start, root), *_package_inits(start, root)] if f]
    while todo or (resolves and refs):
        if not todo:
            todo += [f for name in refs for f in [module_file(name, root), *_package_inits(name, root)] if f]
            refs = set()
            continue
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        more, res = _object_refs(f)
        refs |= more
        resolves |= res and f.name != "__init__.py"  # a package's lazy submodule loader is not a resolver
        for name in _imported_names(f, root):
            target = module_file(name, root)
            todo += [g for g in [target, *(_package_inits(name, root) if target else [])] if g and g not in seen]
    return {f.relative_to(root).as_posix() for f in seen}


def is_empty(f: str, root: Path) -> bool:
    """An empty file (a bare package __init__.py) runs nothing; DVC warns about each one listed as a dep."""
    return (root / f).is_file() and (root / f).stat().st_size == 0


def collapse(files: set[str], root: Path | None = None) -> list[str]:
    """The shortest dvc.yaml listing of `files`, empty files left out: a directory stands for its files when
    every non-empty .py file under it is needed (so a module added there later is covered too)."""
    root = root or project_root()

    def all_needed(d: Path) -> bool:
        return all(f.relative_to(root).as_posix() in files or f.stat().st_size == 0
                   for f in d.rglob("*.py") if "__pycache__" not in f.parts)

    out: set[str] = set()
    for f in (f for f in files if not is_empty(f, root)):
        parts = Path(f).parts
        entry = f
        for i in range(1, len(parts)):  # the outermost collapsible directory wins
            d = Path(*parts[:i])
            if d.as_posix() not in NOT_COLLAPSED and all_needed(root / d):
                entry = d.as_posix()
                break
        out.add(entry)
    return sorted(out)


def is_code_dep(dep: str) -> bool:
    return dep.split("/")[0] in CODE_ROOTS


def covered(file: str, listed: list[str]) -> bool:
    return any(file == d or file.startswith(d.rstrip("/") + "/") for d in listed)


def stages() -> list[str]:
    from vaeflow.tasks import UPSTREAM

    return list(UPSTREAM)


def _dvc_yaml(root: Path):
    from ruamel.yaml import YAML

    rt = YAML(typ="rt")  # ruamel's round-trip loader (safe: builds no arbitrary objects); comments survive --write
    rt.indent(mapping=2, sequence=4, offset=2)
    rt.width = 120
    return rt, rt.load((root / "dvc.yaml").read_text())


def _dep_name(d) -> str:
    return d if isinstance(d, str) else next(iter(d))


def check(root: Path | None = None, names: list[str] | None = None) -> list[str]:
    """Problems with dvc.yaml's code deps: a stage of tasks.UPSTREAM missing from dvc.yaml, a file a stage
    imports that its deps do not cover, a listed code path that does not exist."""
    root = root or project_root()
    _, doc = _dvc_yaml(root)
    problems = []
    for stage in names or stages():
        if stage not in doc["stages"]:
            problems.append(f"stage {stage}: in tasks.UPSTREAM but not in dvc.yaml")
            continue
        listed = [_dep_name(d) for d in doc["stages"][stage].get("deps", []) if is_code_dep(_dep_name(d))]
        problems += [f"stage {stage}: dep {d} does not exist" for d in listed if not (root / d).exists()]
        problems += [f"stage {stage}: runs {f} but dvc.yaml does not list it"
                     for f in sorted(static_deps(stage, root)) if not covered(f, listed) and not is_empty(f, root)]
    return problems


def write(root: Path | None = None, names: list[str] | None = None) -> bool:
    """Replace each existing stage's code deps in dvc.yaml with the derived ones; True if dvc.yaml changed."""
    root = root or project_root()
    rt, doc = _dvc_yaml(root)
    for stage in names or stages():
        if stage not in doc["stages"]:
            continue  # a new stage's outs and params are its author's to write; check() reports it
        deps = doc["stages"][stage].setdefault("deps", [])
        for i in reversed(range(len(deps))):  # in place, so comments on the other deps stay put
            if is_code_dep(_dep_name(deps[i])):
                del deps[i]
        deps.extend(collapse(static_deps(stage, root), root))
    import io

    buf = io.StringIO()
    rt.dump(doc, buf)
    old = (root / "dvc.yaml").read_text()
    if buf.getvalue() != old:
        (root / "dvc.yaml").write_text(buf.getvalue())
    return buf.getvalue() != old


# --- `vaeflow deps` (registered on the app of flows/app.py; flows/cli.py, the entry point, imports this module) ---

@app.command("deps")
def deps_command(write_: bool = typer.Option(False, "--write", help="rewrite dvc.yaml's code deps from the code"),
                 check_: bool = typer.Option(False, "--check", help="exit 1 if dvc.yaml misses a file a stage runs")
                 ) -> None:
    """Each stage's code deps, derived from its imports (lazy ones included); --check or --write dvc.yaml."""
    if not is_source_checkout(project_root()):
        console.print("no vaeflow code here (the stages run the installed vaeflow, not this project's files): "
                      "code deps are derived only in a clone of vaeflow's repository", highlight=False)
        return
    if write_:
        console.print("dvc.yaml updated" if write() else "dvc.yaml already up to date", highlight=False)
    problems = check()
    if check_ or write_:
        if problems:
            typer.echo("\n".join(problems), err=True)
            _fail(1, "dvc.yaml's code deps are out of step with the code; run `vaeflow deps --write`")
        console.print("dvc.yaml lists every project file each stage runs", highlight=False)
        return
    for stage in stages():
        typer.echo(f"{stage}: " + " ".join(collapse(static_deps(stage))))
