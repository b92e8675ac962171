"""What the docs and comments claim, checked against the code: cited files exist, exit codes are listed,
schema defaults that differ from params.yaml say why, and a full disk is not retried as transient. And the
docs as a reader meets them: a short README with the whole DAG and the make targets, a MkDocs site that
builds with --strict, and pages that speak to a user, not about
how the project was built."""
from __future__ import annotations

import errno
import re
import subprocess
import sys

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
                             "add each to vaeflow/config/root.py's DEFAULTS_DIFFER_FROM_PARAMS_YAML")
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
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # requires-python is >=3.10; tomllib is 3.11's. The dev extras bring tomli on 3.10.
        tomllib = pytest.importorskip("tomli")

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\[<>=!~ ]", d, maxsplit=1)[0].lower() for d in deps}
    code = "\n".join(f.read_text() for d in ("vaeflow", "tasks", "flows") for f in (REPO / d).rglob("*.py"))
    for name in sorted(names - PINS_FOR_OTHERS):
        mod = IMPORT_NAMES.get(name, name.replace("-", "_"))
        assert re.search(rf"^\s*(from|import) {mod}\b", code, flags=re.M), f"{name} is declared but never imported"


# ----------------------------------------------------------------------------------- the docs as read

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
# The project's own history has no place in a user's docs: measurements carry command, machine and date.
HISTORY = [r"\bsessions?\b", r"\bissues? ?#?\d+", r"\(issue", r"no gpu was lent", r"the session that built",
           r"measured before the fix", r"\bthis task\b"]


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= 250, f"README.md has {n} lines; keep it to what a newcomer needs and move the rest to docs/"


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_no_page_speaks_of_the_projects_development_history(doc):
    text = doc.read_text()
    for pattern in HISTORY:
        hit = re.search(pattern, text, flags=re.I)
        assert hit is None, (f"{doc.relative_to(REPO)} says {text[max(0, hit.start() - 40):hit.end() + 40]!r}: "
                             "write for the user (what it does, how it was measured: command, machine, date)")


def test_readme_shows_every_stage_of_the_dag_with_its_upstreams():
    from vaeflow.tasks import UPSTREAM

    text = README.read_text()
    picture = text[text.index("## The pipeline"):text.index("## Two commands")]
    for stage, ups in UPSTREAM.items():
        assert re.search(rf"[│ ]{stage}[│ ]", picture), f"README's DAG picture lacks {stage}"
        assert f"| {stage} | {', '.join(ups) or '—'} |" in picture, f"README's stage table: {stage} after {ups}"


def test_readme_documents_the_make_targets_it_names():
    makefile, text = (REPO / "Makefile").read_text(), README.read_text()
    for target in ("run", "test", "test-fast", "clean"):
        assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), f"Makefile has no {target} target"
        assert f"make {target}" in text, f"README does not document `make {target}`"


def test_mkdocs_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[dev]' brings it)")
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    pages = list((tmp_path / "site").rglob("index.html"))  # one per page: site/<page>/index.html, and the home
    assert (tmp_path / "site" / "index.html").is_file() and len(pages) == len(DOCS)
