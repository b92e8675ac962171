"""Prefect's ephemeral mode, started early: a throwaway API server subprocess for one `vaeflow run`.

Without PREFECT_API_URL, Prefect starts the same server itself, but only when the flow first calls the API,
and to do so the client imports `prefect.server.api.server` (~5 s) before the server subprocess starts
importing it too (~6 s more). Started here, before `vaeflow run` imports torch and Prefect, the server boots
on the other core while this process imports, and this process never imports Prefect's server code.
It is the same server Prefect starts (uvicorn serving `prefect.server.api.server:create_app` with the
ephemeral flags, on 127.0.0.1, the default SQLite database), so runs, logs and artifacts land in the same place.
"""
from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# A throwaway server for one run sends no analytics, whatever the user's shell says (flows/__init__.py).
EPHEMERAL_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
                 "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


class ServerError(RuntimeError):
    pass


def configured_api_url() -> str | None:
    """The API URL of a server of the user's that Prefect will talk to: PREFECT_API_URL in the environment or
    in the active Prefect profile (PREFECT_PROFILE, else profiles.toml's `active`; read with tomllib, so that
    asking costs no Prefect import). None: Prefect runs in ephemeral mode. "?" where a profile names one that
    could not be read."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")).expanduser()
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml")).expanduser()
    try:
        text = profiles.read_text()
    except OSError:
        return None
    try:
        import tomllib

        doc = tomllib.loads(text)
        active = os.environ.get("PREFECT_PROFILE") or doc.get("active", "ephemeral")
        return doc.get("profiles", {}).get(active, {}).get("PREFECT_API_URL") or None
    except (ImportError, ValueError, AttributeError):  # Python 3.10 has no tomllib; a malformed file: be safe
        return "?" if "PREFECT_API_URL" in text else None


def api_url_configured() -> bool:
    return configured_api_url() is not None


def health(url: str, timeout: float) -> tuple[int | None, str]:
    """GET <url>/health: (its HTTP status, "") or, when nothing answers (refused, timed out, not a URL),
    (None, why). The one probe of both callers, which judge the answer differently."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as r:
            return r.status, ""
    except urllib.error.HTTPError as e:
        return e.code, ""
    except (OSError, ValueError) as e:
        return None, str(getattr(e, "reason", None) or e)


def check_configured_server(timeout: float = 5.0) -> None:
    """Raise ServerError naming the URL when a configured server does not answer: without this, Prefect
    fails minutes into its retries with a traceback. Any HTTP answer counts (a Prefect Cloud URL may answer
    /health with 401 or 404); only no answer at all is refused."""
    url = configured_api_url()
    if url in (None, "?"):
        return
    status, reason = health(url, timeout)
    if status is None:
        raise ServerError(f"PREFECT_API_URL={url}: no Prefect server answers there ({reason}); start it "
                          "(prefect server start --host 127.0.0.1), or unset PREFECT_API_URL to run in Prefect's "
                          "ephemeral mode")


def wanted() -> bool:
    """Only where Prefect would start an ephemeral server itself: no API URL configured (a profile's is left
    to Prefect) and ephemeral mode not switched off."""
    if api_url_configured() or os.environ.get("VAEFLOW_EARLY_SERVER", "1") == "0":
        return False
    return os.environ.get("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true").lower() not in ("0", "false", "no")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        port = free_port(host)
        self.host, self.url = host, f"http://{host}:{port}/api"
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app", "--host",
               host, "--port", str(port), "--log-level", "error", "--lifespan", "on"]
        self.proc: subprocess.Popen | None = subprocess.Popen(cmd, env={**os.environ, **EPHEMERAL_ENV},
                                                               stdin=subprocess.DEVNULL)
        atexit.register(self.stop)  # registered before Prefect's log and event workers, so it runs after they drain

    def wait(self, timeout: float | None = None) -> str:
        """The server's API URL once /health answers. The URL is fixed (Prefect read it at import), so a
        server that died at start is not moved to another port: the error says what to do instead."""
        timeout = timeout or float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 60))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc is not None and self.proc.poll() is None:
            if health(self.url, 2)[0] == 200:  # our own server: only Prefect's healthy answer counts
                return self.url
            time.sleep(0.1)
        code = None if self.proc is None else self.proc.poll()
        self.stop()
        raise ServerError(f"Prefect's local API server did not answer at {self.url} within {timeout:g}s"
                          + (f" (it exited with code {code})" if code is not None else "")
                          + "; start one yourself (prefect server start --host 127.0.0.1) and set PREFECT_API_URL")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
