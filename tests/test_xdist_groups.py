"""`make test`'s lanes run on two pytest-xdist workers with `--dist loadgroup`, and conftest.py marks the tests that
must share a worker (the Ray modules; a module's tests that share a module-scoped fixture). xdist honours those
marks by renaming each test's node id with an "@group" suffix, which some pytest releases silently ignore (pytest
9.2 keeps node ids in another attribute): every test then ran on its own, module fixtures (a Prefect server, a
reproduced DVC project) were built once per worker, and two Rays ran at once. constraints.txt pins a pair that
works; this runs conftest.py's own hook under that pair, in a subprocess, and asserts where the tests ran."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.helpers import REPO

WHERE = textwrap.dedent("""\
    import json, os, pathlib
    import pytest

    def _record(request):
        out = pathlib.Path(os.environ["WHERE_DIR"]) / (request.node.name + ".json")
        out.write_text(json.dumps({"worker": os.environ.get("PYTEST_XDIST_WORKER"), "nodeid": request.node.nodeid}))
    """)

SHARED = textwrap.dedent("""\

    @pytest.fixture(scope="module")
    def shared():
        return object()
    """)


def _module(test: str, n: int, fixture: bool = False) -> str:
    """A test module whose test `test` runs n times, recording where; with `fixture`, all share a module fixture."""
    return WHERE + (SHARED if fixture else "") + textwrap.dedent(f"""\

        @pytest.mark.parametrize("i", range({n}))
        def {test}({"shared, " if fixture else ""}i, request):
            _record(request)
        """)


def test_loadgroup_keeps_conftest_s_groups_on_one_worker(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text("from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n")
    (suite / "test_shared_fixture.py").write_text(_module("test_fixture_user", 4, fixture=True))
    for name in ("ray_local", "tune_ray"):  # two of conftest.RAY_MODULES: one group across modules
        (suite / f"test_{name}.py").write_text(_module(f"test_{name}", 2))
    (suite / "test_free.py").write_text(_module("test_free", 6))
    (tmp_path / "where").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "WHERE_DIR": str(tmp_path / "where")}
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider",
                        "--rootdir", str(suite), "-c", os.devnull, str(suite)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    ran = {f.stem: json.loads(f.read_text()) for f in (tmp_path / "where").iterdir()}
    assert len(ran) == 4 + 2 + 2 + 6
    by_prefix = lambda prefix: {r["worker"] for n, r in ran.items() if n.startswith(prefix)}  # noqa: E731
    assert len(by_prefix("test_fixture_user")) == 1, ran
    assert len(by_prefix("test_ray_local") | by_prefix("test_tune_ray")) == 1, ran
    assert all(r["nodeid"].endswith("@test_shared_fixture") for n, r in ran.items() if n.startswith("test_fixture"))
    assert all("@" not in r["nodeid"] for n, r in ran.items() if n.startswith("test_free"))
