"""The report's tables in the Prefect UI, in a real (headless) Chromium, on a narrow window: no column cut off.

The UI draws a markdown table with its own table component (fixed column widths, a hidden scrollbar), which
cut a 5-column report table off at the right on a 760 px window. The artifact carries its tables as HTML
instead (vaeflow.inline_figures.html_tables); here both forms go to a real server, and on the HTML form the
last column of every table must lie inside the visible area, wrapped rather than cut.
"""
from __future__ import annotations

import httpx
import pytest

from browser import Browser, find_chromium
from test_prefect_server import server  # noqa: F401  (this module's own instance)
from vaeflow.inline_figures import html_tables

pytestmark = [pytest.mark.slow, pytest.mark.server, pytest.mark.timeout(600)]
WIDTH = 760  # a laptop's half screen
LONG = "a sampler description long enough to need wrapping on a narrow window"
REPORT = "\n".join([
    "# report", "", "## tables", "",
    "| variant | target test acc (mean ± std over seeds) | source test acc | labelled images | seconds |",
    "|---|---|---|---|---|",
    *[f"| variant_{i} | 0.9{i}0 ± 0.011 | 0.949 | 540 | 7.5 |" for i in range(4)], "",
    "| sampler | what it draws | K | Fréchet ↓ | entropy |", "|---|---|---|---|---|",
    *[f"| sampler_{i} | {LONG} | 5 | 1.323 ± 0.085 | 1.060 |" for i in range(4)], "",
])
# For each table: the right edge of its last header cell, and of the nearest ancestor that clips or scrolls it.
MEASURE = """Array.from(document.querySelectorAll('.artifact-data-markdown table')).map(t => {
  const heads = t.querySelectorAll('th'), last = heads[heads.length - 1];
  let p = t.parentElement;
  while (p && getComputedStyle(p).overflowX === 'visible') p = p.parentElement;
  return {last: last.innerText.trim(), right: last.getBoundingClientRect().right,
          clip: Math.min(p.getBoundingClientRect().right, window.innerWidth)};
})"""


def _show(browser: Browser, ui: str, api: str, markdown: str) -> list[dict]:
    r = httpx.post(f"{api}/artifacts/", json={"key": "vaeflow-tables", "type": "markdown", "data": markdown},
                   timeout=30)
    r.raise_for_status()
    browser.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=900, deviceScaleFactor=1, mobile=False)
    browser.goto(f"{ui}/artifacts/artifact/{r.json()['id']}")
    browser.wait_for("document.querySelectorAll('.artifact-data-markdown table').length >= 2", timeout=120)
    browser.wait_for("document.fonts.status === 'loaded'", timeout=30)
    return browser.eval(MEASURE)


def test_wide_report_tables_wrap_instead_of_being_cut_off(server):  # noqa: F811
    exe = find_chromium()
    if exe is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's `chromium`; or set VAEFLOW_CHROMIUM)")
    api = server["url"]
    ui = api.removesuffix("/api")
    with Browser(exe) as b:
        as_markdown = _show(b, ui, api, REPORT)
        as_html = _show(b, ui, api, html_tables(REPORT))
    # the UI's own component: at least one table reaches past what it shows (the reason for HTML tables)
    assert any(t["right"] > t["clip"] + 1 for t in as_markdown), as_markdown
    assert [t["last"] for t in as_html] == ["seconds", "entropy"], as_html
    assert all(t["right"] <= t["clip"] + 1 for t in as_html), as_html
