"""`vaeflow init` where a newcomer first meets it: a path that is a file, a folder that already holds their own
files, and the closing message that must say where file-based datasets are read from (data.root), since the
new project's params.yaml is the repository's, whose data.root names this checkout's data folder."""
from __future__ import annotations

import subprocess

import pytest
from typer.testing import CliRunner

from vaeflow.flows.cli import app


def _words(res) -> str:
    return " ".join(res.output.split())  # rich wraps long lines


def _git(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture
def git_identity(monkeypatch):
    """A git identity of the user's, whatever the machine's git config says: init commits with it."""
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "A User")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "user@example.org")


def test_init_refuses_a_path_that_is_a_file(tmp_path):
    """Was a FileExistsError traceback from mkdir, exit 1: now a message naming the path, exit 2."""
    (tmp_path / "afile").write_text("x\n")
    res = CliRunner().invoke(app, ["init", str(tmp_path / "afile")])
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)  # no traceback
    assert f"error: {tmp_path / 'afile'} exists and is not a folder" in _words(res)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing created beside it
    assert (tmp_path / "afile").read_text() == "x\n"


def test_init_refuses_a_path_under_a_file(tmp_path):
    (tmp_path / "afile").write_text("x\n")
    res = CliRunner().invoke(app, ["init", str(tmp_path / "afile" / "proj")])
    assert res.exit_code == 2 and "Not a directory" in _words(res), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_init_in_a_folder_with_the_users_files_commits_only_its_own(tmp_path, git_identity):
    """Init's commit held everything in the folder (`git add -A`): a user's notes, data or secrets too."""
    proj = tmp_path / "ne"
    proj.mkdir()
    (proj / "notes.txt").write_text("hi\n")
    res = CliRunner().invoke(app, ["init", str(proj)])
    assert res.exit_code == 0, res.output
    committed = set(_git("ls-tree", "-r", "--name-only", "HEAD", cwd=proj).stdout.split())
    assert {"params.yaml", "dvc.yaml", "prefect.yaml", ".gitignore", ".dvc/config", ".dvcignore",
            "models/tuned/README.md", "configs/mnist_usps.yaml"} <= committed
    assert "notes.txt" not in committed
    assert _git("status", "--porcelain", cwd=proj).stdout == "?? notes.txt\n"  # untracked, all else committed
    assert "left as they were, out of init's commit: notes.txt" in _words(res)


def test_init_in_an_existing_repository_commits_its_files_and_leaves_the_users_staging(tmp_path, git_identity):
    """An existing repository got no commit, .dvc/ staged and the rest untracked. Now one commit of init's
    files; what the user had staged stays staged and out of it."""
    proj = tmp_path / "repo"
    proj.mkdir()
    _git("init", "-q", cwd=proj)
    (proj / "staged.txt").write_text("mine\n")
    _git("add", "staged.txt", cwd=proj)
    res = CliRunner().invoke(app, ["init", str(proj)])
    assert res.exit_code == 0, res.output
    committed = set(_git("ls-tree", "-r", "--name-only", "HEAD", cwd=proj).stdout.split())
    assert {"params.yaml", "dvc.yaml", ".dvc/config"} <= committed and "staged.txt" not in committed
    assert _git("status", "--porcelain", cwd=proj).stdout == "A  staged.txt\n"
    assert "committed" in _words(res) and "'vaeflow init'" in _words(res)


def test_init_in_a_folder_of_a_repository_nests_no_repository_and_commits_nothing(tmp_path, git_identity):
    """In a folder of the user's git repository (a monorepo): a DVC project of that folder (`dvc init --subdir`),
    no repository nested in it, init's files staged and nothing committed on the user's behalf."""
    outer = tmp_path / "mono"
    outer.mkdir()
    assert _git("init", "-q", cwd=outer).returncode == 0
    (outer / "mine.txt").write_text("x\n")
    res = CliRunner().invoke(app, ["init", str(outer / "sub")])
    assert res.exit_code == 0, res.output
    assert not (outer / "sub" / ".git").exists() and (outer / "sub" / ".dvc").is_dir()
    assert _git("rev-parse", "--verify", "-q", "HEAD", cwd=outer).returncode != 0  # nothing committed
    staged = set(_git("diff", "--cached", "--name-only", cwd=outer).stdout.split())
    assert {"sub/params.yaml", "sub/dvc.yaml", "sub/.dvc/config"} <= staged and "mine.txt" not in staged
    assert f"inside the git repository {outer}" in _words(res)
    import sys

    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=outer / "sub", capture_output=True, text=True)
    assert status.returncode == 0, status.stderr  # DVC finds its project in the folder


def test_init_says_where_file_based_datasets_are_read_from(tmp_path, git_identity):
    res = CliRunner().invoke(app, ["init", str(tmp_path / "proj")])
    assert res.exit_code == 0, res.output
    out = _words(res)
    assert "data.root" in out and "--set data.root=" in out and "need" in out  # the digits need no files
    import yaml

    root = yaml.safe_load((tmp_path / "proj" / "params.yaml").read_text())["data"]["root"]
    assert f"data.root, now {root}" in out


def test_the_default_digits_need_no_data_root():
    """What the closing message claims: the default pair reads no file under data.root."""
    from vaeflow.config import Config
    from vaeflow.data.files import check_roots

    from vaeflow.data import DataError

    dc = Config().data.model_copy(update={"root": "/nonexistent/data/root", "download": False})
    assert (dc.source, dc.target) == ("digits", "digits_shifted")
    check_roots(dc)  # passes: no file is read for the digits
    with pytest.raises(DataError, match="data.root"):  # while a dataset that needs files there is refused
        check_roots(dc.model_copy(update={"source": "mnist"}))


def test_the_copied_prefect_yaml_gives_the_deploy_command_of_docs_prefect_md():
    """The pull step reads $VAEFLOW_ROOT: `prefect deploy --all` without it registers an unusable deployment."""
    from tests.conftest import REPO
    from vaeflow.flows import init_cli

    text = init_cli.project_prefect_yaml((init_cli.template() / "prefect.yaml").read_text())
    assert "{{ $VAEFLOW_ROOT }}" in text
    assert "VAEFLOW_ROOT=$PWD prefect deploy --all" in text
    assert "VAEFLOW_ROOT=$PWD prefect deploy --all" in (REPO / "docs" / "prefect.md").read_text()
