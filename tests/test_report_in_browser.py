"""The `vaeflow-report` artifact as a person sees it: in the Prefect UI, in a real (headless) Chromium.

A Prefect server on loopback (the fixture of test_prefect_server.py, UI included), a tiny `vaeflow run`
against it, then the artifact's page: every figure the report links must have loaded (naturalWidth > 0).
The screenshot is written under the test's tmp dir (its path is printed) for a person to look at.
"""
from __future__ import annotations

import json
import re

import httpx
import pytest

from browser import Browser, find_chromium
from test_prefect_server import _cli, _sets, server  # noqa: F401  (server: this module's own instance)

pytestmark = [pytest.mark.slow, pytest.mark.server, pytest.mark.timeout(900)]
REPORT_BUDGET = 1_000_000  # bytes per report in Prefect's database; the default's is 0.33 MB, the tiny run's less

IMGS = "Array.from(document.querySelectorAll('.artifact-data-markdown img'))"


def _latest(api: str, key: str) -> dict:
    arts = httpx.post(f"{api}/artifacts/filter", timeout=30, json={
        "artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1}).json()
    assert arts, f"no {key} artifact"
    return arts[0]


def test_report_artifact_figures_render_in_the_prefect_ui(server, project, tmp_path):  # noqa: F811
    exe = find_chromium()
    if exe is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's `chromium`; or set VAEFLOW_CHROMIUM)")
    res = _cli(["run", *_sets()], project, server)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    on_disk = (project / "reports" / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)\s]+)", on_disk)
    assert len(linked) >= 8 and all(not s.startswith(("data:", "file:", "/")) for s in linked), linked
    art = _latest(server["url"], "vaeflow-report")
    md = art["data"]
    assert len(md.encode()) < REPORT_BUDGET, len(md)
    assert md.count("](data:image/") == len(linked) and "](figures/" not in md

    shot = tmp_path / "vaeflow-report.png"
    with Browser(exe) as b:
        b.goto(server["url"].removesuffix("/api") + f"/artifacts/artifact/{art['id']}")
        try:  # every <img> there and decoded; a broken image is `complete` with naturalWidth 0
            b.wait_for(f"{IMGS}.length >= {len(linked)} && {IMGS}.every(i => i.complete)", timeout=120)
            ok = True
        except TimeoutError:
            ok = False
        imgs = b.eval(f"{IMGS}.map(i => ({{alt: i.alt, w: i.naturalWidth, h: i.naturalHeight, src: i.src.slice(0, 30)}}))")
        # The page scrolls inside a container: make the viewport as tall as the content, then capture it.
        height = b.eval("Math.max(...Array.from(document.querySelectorAll('*')).map(e => e.scrollHeight))")
        b.screenshot(shot, full_height=min(int(height) + 100, 16000))
    print(f"screenshot: {shot}")
    assert ok, f"images not loaded after 120 s: {json.dumps(imgs)}; screenshot {shot}"
    assert len(imgs) == len(linked), (imgs, linked)
    assert all(i["w"] > 0 and i["h"] > 0 and i["src"].startswith("data:image/") for i in imgs), imgs
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
