"""Addresses `vaeflow tune` and `vaeflow submit` cannot use: exit 2, one `error:` line that names the address,
no traceback, and within seconds. Before these checks Ray retried a HOST:PORT where nothing listened for ever,
a ray:// one for half a minute, and raised tracebacks (exit 1) for malformed ones.

The fast tests need no Ray cluster: a port bound and closed again is one where nothing listens. The slow one
starts a loopback head (tests/ray_nodes.py) and joins it with a wrong token.
"""
from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from vaeflow.flows.cli import app

TINY_TUNE = ["--set", "tune.num_samples=1", "--set", "tune.max_epochs=1", "--set", "tune.grace_period=1"]
# A hang guard, not a timing: before the checks a HOST:PORT where nothing listened hung for ever (Ray's
# retries); the checks give up after 3 s. Each test is stopped (and fails) if it runs for a minute.
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: bound by the OS, then closed."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def no_ray_env(monkeypatch):
    """Neither Ray's address variables nor a cluster recorded by `ray start` may pick the address instead."""
    for k in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(k, raising=False)


def _invoke(args: list[str]):
    res = CliRunner().invoke(app, args)
    return res, " ".join(res.output.split())  # rich wraps long lines


def _refused(res, text: str, address: str) -> None:
    assert res.exit_code == 2, text
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in text
    assert text.startswith("error:") and address in text, text


@pytest.mark.parametrize("form", ["{}", "ray://{}"])
def test_tune_at_an_address_where_nothing_listens_fails_fast(project, no_ray_env, closed_port, form):
    address = form.format(f"127.0.0.1:{closed_port}")
    res, text = _invoke(["tune", "--address", address, *TINY_TUNE])
    _refused(res, text, address)
    assert "no Ray" in text and "ray start --head" in text
    assert not (project / "data").exists()  # refused before the data is prepared


@pytest.mark.parametrize("address", ["not a host", "127.0.0.1", "127.0.0.1:99999", "ray://"])
def test_tune_refuses_a_malformed_address(project, no_ray_env, address):
    res, text = _invoke(["tune", "--address", address, *TINY_TUNE])
    _refused(res, text, address)
    assert "auto, HOST:PORT" in text


def test_tune_if_used_joins_the_given_cluster_when_it_tunes(project, no_ray_env, closed_port):
    """The stage form (--if-used) tuned on a private local Ray whatever --address said; with use_tuned on it
    now checks and joins the address, and with it off it joins nothing (so checks nothing)."""
    address = f"127.0.0.1:{closed_port}"
    res, text = _invoke(["tune", "--if-used", "--address", address, "--set", "pretrain.use_tuned=true", *TINY_TUNE])
    _refused(res, text, address)
    res, text = _invoke(["tune", "--if-used", "--address", address])
    assert res.exit_code == 0 and "tuning skipped" in (project / "models" / "tuned" / "best_config.json").read_text()


def test_tune_refuses_a_dashboard_url_and_says_which_command_takes_one(project, no_ray_env, closed_port):
    address = f"http://127.0.0.1:{closed_port}"
    res, text = _invoke(["tune", "--address", address, *TINY_TUNE])
    _refused(res, text, address)
    assert "vaeflow submit --address" in text


def test_submit_to_a_job_server_where_nothing_listens_fails_fast(project, no_ray_env, closed_port):
    address = f"http://127.0.0.1:{closed_port}"
    res, text = _invoke(["submit", "--address", address, "--no-wait"])
    _refused(res, text, address)
    assert "no Ray job server" in text


@pytest.mark.parametrize("address", ["127.0.0.1:{}", "not a url", "http://", "http://127.0.0.1:notaport"])
def test_submit_refuses_what_is_not_a_job_server_url(project, no_ray_env, closed_port, address):
    """A GCS HOST:PORT (what tune takes) made Ray ask that port for the dashboard for 42 s, then fail."""
    address = address.format(closed_port)
    res, text = _invoke(["submit", "--address", address, "--no-wait"])
    _refused(res, text, address)
    assert "http(s)://HOST:PORT" in text


def test_ray_address_from_the_environment_is_checked_and_named(project, monkeypatch, closed_port):
    """Ray lets RAY_ADDRESS override submit's --address: the message says where the address came from."""
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{closed_port}")
    res, text = _invoke(["submit", "--address", "http://127.0.0.1:8265", "--no-wait"])
    _refused(res, text, f"127.0.0.1:{closed_port} (from RAY_ADDRESS")


@pytest.mark.slow
def test_a_wrong_token_is_named_as_the_likely_cause(project, monkeypatch):
    """A running loopback head, joined with another token: Ray's ConnectionError (tune, after ~20 s) and
    AuthenticationError (submit) become exit 2 with a line saying the token must be the cluster's."""
    from tests.ray_nodes import LoopbackCluster

    with LoopbackCluster() as c:
        with c.driver():
            monkeypatch.setenv("RAY_AUTH_TOKEN", "0" * 64)
            for args, address in ((["tune", "--address", c.address, *TINY_TUNE], c.address),
                                  (["submit", "--address", c.dashboard, "--no-wait"], c.dashboard)):
                res, text = _invoke(args)
                error = text.partition("error:")[2]  # after tune's log lines (it prepares the data first)
                assert res.exit_code == 2 and address in error and "RAY_AUTH_TOKEN" in error, text
                assert "Traceback" not in text
