"""The CLI's own refusals: what a user types wrong before any stage runs gets exit 2 and a message that
quotes it exactly, and commands that would put a project in a state its tools cannot use refuse or fix it."""
from __future__ import annotations

import os
import subprocess

from typer.testing import CliRunner

from vaeflow.flows.cli import app
from vaeflow.flows import init_cli
from tests.helpers import REPO


def _words(res) -> str:
    return " ".join(res.output.split())  # rich wraps long lines


def test_an_error_message_keeps_square_brackets(project):
    """Rich reads [text] as markup: a path with brackets must still be printed as it is."""
    res = CliRunner().invoke(app, ["validate", "--set", "data.target=folder:/tmp/[mydata]x"])
    assert res.exit_code == 2 and "folder:/tmp/[mydata]x" in _words(res)
    (project / "broken.yaml").write_text("data: [unclosed\n")
    res = CliRunner().invoke(app, ["validate", "-p", "broken.yaml"])
    assert res.exit_code == 2 and "[unclosed" in _words(res)


def test_run_refuses_a_missing_data_path_before_the_flow_starts(project):
    res = CliRunner().invoke(app, ["run", "--set", "data.source=npz:/nonexistent/dir"])
    assert res.exit_code == 2 and "/nonexistent/dir/train.npz not found" in _words(res)
    assert "stage prepare" not in _words(res)  # refused by the CLI, not by a failed stage
    assert sorted(p.name for p in project.iterdir()) == ["params.yaml"]


def test_a_bad_cron_is_refused_before_anything_is_served(project):
    res = CliRunner().invoke(app, ["serve", "--cron", "0 3 * *"])
    assert res.exit_code == 2 and "--cron '0 3 * *' is not a valid cron schedule" in _words(res)
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_a_negative_wait_is_refused(project):
    res = CliRunner().invoke(app, ["run", "--wait", "-5"])
    assert res.exit_code == 2 and "--wait" in _words(res)


def test_a_negative_wait_is_refused_by_tune_too(project):
    res = CliRunner().invoke(app, ["tune", "--wait", "-1"])
    assert res.exit_code == 2 and "--wait" in _words(res)


def test_help_reads_as_typed_flags_take_no_value_and_paragraphs_are_not_broken():
    """Typer shows a flag's type as `<bool>` (as if `--help` took a value) and keeps a docstring's line
    breaks after its first paragraph, which Rich then wraps again."""
    for cmd in ([], ["run"], ["tune"], ["stage"], ["serve"], ["init"], ["report"]):
        res = CliRunner().invoke(app, [*cmd, "--help"])
        assert res.exit_code == 0 and "<bool>" not in res.output, cmd
    run = CliRunner().invoke(app, ["run", "--help"]).output  # 80 columns: the docstring broke after "Prefect's"
    assert "KEY=VALUE" in run and "SECONDS" in run
    assert "runs in Prefect's ephemeral mode; with it, against that server." in run


def test_stage_with_overrides_refuses_to_write_a_dvc_projects_tracked_outputs(project):
    """`run --set` writes to runs/<name>/ in a DVC project; a single stage cannot, so it refuses instead of
    overwriting what dvc.lock records for params.yaml. Outside a DVC project (scratch dirs) it runs."""
    (project / "dvc.yaml").write_text("stages: {}\n")
    (project / ".dvc").mkdir()
    res = CliRunner().invoke(app, ["stage", "prepare", "--set", "data.subset=100"])
    assert res.exit_code == 2 and "must match params.yaml" in _words(res) and "vaeflow run --set" in _words(res)
    assert sorted(p.name for p in project.iterdir()) == [".dvc", "dvc.yaml", "params.yaml"]


def _git(*args: str, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_init_commits_the_new_project_so_dvc_experiments_can_start(tmp_path, monkeypatch):
    for role in ("AUTHOR", "COMMITTER"):  # an identity of the user's, whatever the machine's git config says
        monkeypatch.setenv(f"GIT_{role}_NAME", "A User")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "user@example.org")
    init_cli.scaffold(tmp_path / "proj")
    head = _git("ls-tree", "-r", "--name-only", "HEAD", cwd=tmp_path / "proj")
    assert head.returncode == 0
    assert {"params.yaml", "dvc.yaml", ".dvc/config", ".gitignore"} <= set(head.stdout.split())
    assert _git("status", "--porcelain", cwd=tmp_path / "proj").stdout == ""


def test_init_without_a_git_identity_says_how_to_commit(tmp_path, monkeypatch):
    no_identity = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_COUNT": "1",
                   "GIT_CONFIG_KEY_0": "user.useConfigOnly", "GIT_CONFIG_VALUE_0": "true"}
    for k, v in no_identity.items():
        monkeypatch.setenv(k, v)
    for k in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(k, raising=False)
    env = dict(os.environ)
    res = CliRunner().invoke(app, ["init", str(tmp_path / "proj")])
    assert res.exit_code == 0 and "git commit -m 'vaeflow init'" in _words(res)
    assert _git("rev-parse", "HEAD", cwd=tmp_path / "proj", env=env).returncode != 0  # nothing committed


def test_validate_checks_a_data_roots_files_not_only_the_folder(project):
    """An existing but empty data.root passed `validate` and failed minutes later in prepare."""
    (project / "empty").mkdir()
    res = CliRunner().invoke(app, ["validate", "--set", "data.source=mnist", "--set", "data.root=empty",
                                   "--set", "data.download=false"])
    assert res.exit_code == 2 and "mnist files not found under data.root=empty" in _words(res)
    assert "docs/datasets.md" in _words(res)


def test_params_that_name_a_folder_and_dot_experiment_names_are_refused(project):
    (project / "d.yaml").mkdir()
    res = CliRunner().invoke(app, ["validate", "-p", "d.yaml"])
    assert res.exit_code == 2 and "params file d.yaml is a folder" in _words(res)
    for name in (".", ".."):  # the experiment would be written into tune.storage_path itself, or above it
        res = CliRunner().invoke(app, ["validate", "--set", f"tune.experiment_name={name}"])
        assert res.exit_code == 2 and "tune.experiment_name" in _words(res), name
    assert CliRunner().invoke(app, ["validate", "--set", "tune.experiment_name=a.b"]).exit_code == 0


def test_a_bad_flow_workers_variable_is_an_error_line_and_exit_2(project):
    for value in ("0", "abc", "-1"):
        res = CliRunner().invoke(app, ["validate"], env={"VAEFLOW_FLOW_WORKERS": value})
        assert res.exit_code == 2 and f"VAEFLOW_FLOW_WORKERS must be a whole number ≥ 1, got '{value}'" in _words(res)


def test_a_prefect_api_url_without_a_server_is_refused_before_anything_runs(project):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    for cmd in (["run"], ["serve", "--cron", "0 3 * * *"]):
        res = CliRunner().invoke(app, cmd, env=env)
        assert res.exit_code == 2 and f"PREFECT_API_URL=http://127.0.0.1:{port}/api: no Prefect server" in _words(res)
    assert sorted(p.name for p in project.iterdir()) == ["params.yaml"]


def test_report_explains_a_readme_without_markers_and_a_run_elsewhere(project, tmp_path_factory):
    from vaeflow import results_table as rt

    res = CliRunner().invoke(app, ["report"])
    assert res.exit_code == 2 and "pass it as --metrics" in _words(res)
    metrics = tmp_path_factory.mktemp("m") / "metrics.json"
    metrics.write_text((REPO / "metrics" / "metrics.json").read_text())
    (project / "README.md").write_text("# my project\n")
    for flag in ("--update-readme", "--check-readme"):
        res = CliRunner().invoke(app, ["report", "--metrics", str(metrics), flag])
        assert res.exit_code == 2 and "has no results block" in _words(res) and rt.BEGIN in res.output, flag
    assert (project / "README.md").read_text() == "# my project\n"
