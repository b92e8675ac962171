"""A headless Chromium driven over the DevTools protocol: just enough to open a page, wait, read the DOM
and take a screenshot. Uses the system `chromium` (Debian's package; .ci/run installs it) and the
`websockets` client that Prefect already depends on, so no browser driver needs downloading."""
from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    env = os.environ.get("VAEFLOW_CHROMIUM")
    return env if env and Path(env).is_file() else next(filter(None, map(shutil.which, CANDIDATES)), None)


class Browser:
    """`with Browser() as b: b.goto(url); b.eval(js); b.screenshot(path)`; one page, one tab."""

    def __init__(self, exe: str, width: int = 1280, height: int = 900, timeout: float = 60) -> None:
        self.profile = tempfile.mkdtemp(prefix="vaeflow-chromium-")
        args = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        self._ids = itertools.count(1)
        port_file, deadline = Path(self.profile) / "DevToolsActivePort", time.monotonic() + timeout
        while not port_file.is_file() or len(port_file.read_text().split()) < 2:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.poll() is not None else ""
                self.close()
                raise RuntimeError(f"chromium did not start its DevTools endpoint: {err}")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        from urllib.request import urlopen

        with urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        from websockets.sync.client import connect

        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout)
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method: str, timeout: float = 60, **params) -> dict:
        """Send one command and return its result; events that arrive meanwhile are dropped."""
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def eval(self, expression: str):
        """The value of a JavaScript expression (awaited if it is a promise)."""
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression[:80]}…: {res['exceptionDetails'].get('text')}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60, poll: float = 0.5):
        """Poll until the expression is truthy; returns its value, or raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(poll)
        raise TimeoutError(f"not true after {timeout:g}s: {expression}")

    def screenshot(self, path: Path, full_height: int | None = None) -> Path:
        """A PNG of the viewport; with `full_height`, the viewport is first made that tall."""
        if full_height:
            self.call("Emulation.setDeviceMetricsOverride", width=1280, height=full_height, deviceScaleFactor=1,
                      mobile=False)
            time.sleep(1)  # let the layout settle at the new size
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
            self.ws = None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
