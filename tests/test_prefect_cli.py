"""The Prefect CLI from the project's venv against a real `prefect server start` on a loopback port.

Prefect 3.8's client sends explicit nulls for the filters it does not use ({"artifacts": null, "limit":
null}); FastAPI 0.151+ validates an explicit null in an embedded body field instead of taking the default,
so such a server answered 422 to `prefect artifact ls`, `flow-run ls`, `deployment ls`, `work-pool ls`.
pyproject.toml pins fastapi<0.151; this test fails if that pin is lost (docs/prefect.md).
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.helpers import prefect_env as _env, prefect_server

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """This module's own server (tests/helpers.py): the listings below see only the rows seeded here."""
    with prefect_server(tmp_path_factory.mktemp("prefect_home")) as srv:
        yield srv


# A flow run with the report artifact `vaeflow run` publishes (same key), a deployment and a work pool, so
# that every listing below has a row to print; no training: the CLI is under test, not the pipeline.
SEED = """
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client

@flow(name="training_pipeline")
def training_pipeline():
    create_markdown_artifact("# vaeflow report", key="vaeflow-report")

training_pipeline()
with get_client(sync_client=True) as c:
    c.create_deployment(flow_id=c.read_flow_by_name("training_pipeline").id, name="vaeflow-scheduled")
"""


@pytest.fixture(scope="module")
def seeded(server):
    env = _env(server["home"], server["url"])
    res = subprocess.run([sys.executable, "-c", SEED], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", "vaeflow-pool", "--type",
                          "process"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return server


@pytest.mark.parametrize("args, expect", [
    (["artifact", "ls"], "vaeflow-report"),
    (["artifact", "inspect", "vaeflow-report"], "# vaeflow report"),
    (["flow-run", "ls"], "training_pipeline"),
    (["deployment", "ls"], "vaeflow-scheduled"),
    (["work-pool", "ls"], "vaeflow-pool"),
])
def test_prefect_cli_lists_against_a_real_server(seeded, args, expect):
    res = subprocess.run([sys.executable, "-m", "prefect", *args], env=_env(seeded["home"], seeded["url"]),
                         capture_output=True, text=True, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    # A 422 is the server refusing the CLI's request; match it as a status, not as digits that a random
    # run id may contain (a UUID with "422" in it failed CI once).
    assert not re.search(r"\b422\b|Unprocessable", out) and "Traceback" not in out, out[-3000:]
    assert expect in out, out[-3000:]
