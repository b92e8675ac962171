"""What the Prefect UI is given: figures inlined as data: URIs (decoded back and compared with the files),
tables whose columns carry units, and the provenance of a run. The browser check is test_report_in_browser.py."""
from __future__ import annotations

import base64
import io
import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from vaeflow.inline_figures import inline_images

URI = re.compile(r"data:(image/[a-z+]+);base64,([A-Za-z0-9+/=]+)")


def _decode(uri_match: re.Match) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(uri_match[2])))


@pytest.fixture
def figures(tmp_path):
    """A report folder: a few-colour RGBA plot-like figure, a grey image grid, a huge figure, an SVG."""
    rng = np.random.default_rng(0)
    fig = tmp_path / "figures"
    fig.mkdir()
    palette = np.array([[255, 255, 255, 255], [31, 119, 180, 255], [255, 127, 14, 255], [0, 0, 0, 255]], np.uint8)
    plot = palette[rng.integers(0, 4, (120, 200))]
    Image.fromarray(plot, "RGBA").save(fig / "plot.png")
    grey = (rng.integers(0, 17, (64, 96)) * 15).astype(np.uint8)  # 17 grey levels, like the digits
    Image.fromarray(grey, "L").save(fig / "grid.png")
    Image.fromarray(palette[rng.integers(0, 4, (300, 3000))], "RGBA").save(fig / "huge.png")
    (fig / "v.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>')
    return tmp_path, plot, grey


def test_every_linked_local_image_is_inlined_and_decodes_to_the_same_pixels(figures):
    root, plot, grey = figures
    md = ("# r\n![a plot](figures/plot.png)\n\ntext ![grid](figures/grid.png \"title\")\n"
          f'<img alt="x" src="{(root / "figures" / "grid.png").as_uri()}">\n'
          "![again](figures/plot.png)\n![web](https://example.org/a.png)\n![gone](figures/missing.png)\n")
    out = inline_images(md, root)
    uris = list(URI.finditer(out.markdown))
    assert len(uris) == 4 and [u[1] for u in uris] == ["image/png"] * 4
    assert np.array_equal(np.asarray(_decode(uris[0]).convert("RGBA")), plot)  # 4 colours: the palette is lossless
    assert np.array_equal(np.asarray(_decode(uris[1]).convert("L")), grey)
    assert np.array_equal(np.asarray(_decode(uris[2]).convert("L")), grey)  # the <img> tag, by file:// URI
    assert ' "title")' in out.markdown and '<img alt="x" src="data:image/png' in out.markdown
    assert "![web](https://example.org/a.png)" in out.markdown  # URLs are the browser's business
    assert "![gone](figures/missing.png)" in out.markdown and out.missing == ["figures/missing.png"]
    assert set(out.figures) == {"figures/plot.png", "figures/grid.png", (root / "figures" / "grid.png").as_uri()}
    assert out.uri_bytes == sum(len(u[0]) for u in uris[:3])


def test_a_huge_figure_is_downscaled_and_an_svg_is_embedded_as_it_is(figures):
    root, _, _ = figures
    out = inline_images("![h](figures/huge.png) ![v](figures/v.svg)", root, max_px=1200)
    uris = list(URI.finditer(out.markdown))
    assert _decode(uris[0]).size == (1200, 120)
    assert uris[1][1] == "image/svg+xml" and base64.b64decode(uris[1][2]) == (root / "figures" / "v.svg").read_bytes()


def test_metric_tables_name_their_units():
    from vaeflow.flows.artifacts import adaptation_rows, likelihood_rows, metric_rows, unit

    m = {"gmm": {"family": "gaussian", "n_components": 3, "test_nll_nats": -42.456, "test_bits_per_dim": 3.13051,
                 "test_nll_nats_source": -32.4, "test_nll_nats_target": -52.5, "fit_seconds": 0.1},
         "vae": {"test_nelbo_nats": 65.48, "test_nelbo_bits_per_dim": 5.56, "test_nll_nats": 64.95,
                 "test_nll_stderr": 0.05, "iwae_samples": 20, "test_bits_per_dim": 5.55, "test_nll_nats_source": 65.4,
                 "test_nll_nats_target": 64.5, "best_epoch": 1},
         "adapt": {"dann": {"target_test_acc": 0.6371, "target_test_acc_std": 0.014, "target_test_acc_runs": [0.6, 0.67],
                            "source_test_acc": 0.9, "n_labelled": 540, "train_seconds": 3.21}},
         "checks": {"vae_beats_gmm": False}}
    flat = {r["metric"]: (r["value"], r["unit"]) for r in metric_rows(m)}
    assert flat["gmm.test_nll_nats"] == (-42.456, "nats/image") and flat["vae.test_nll_stderr"][1] == "nats/image"
    assert flat["adapt.dann.target_test_acc"] == (0.6371, "fraction") and flat["gmm.fit_seconds"][1] == "s"
    assert flat["vae.test_nelbo_bits_per_dim"][1] == "bits/dim" and flat["checks.vae_beats_gmm"] == (False, "")
    assert "adapt.dann.target_test_acc_runs" not in flat  # lists stay in the file
    assert unit("gmm.test_nll_nats_target") == "nats/image" and unit("vae.best_epoch") == "epochs"
    lik = likelihood_rows(m)
    assert [r["NLL (nats/image)"] for r in lik] == [-42.46, 65.48, 64.95] and lik[0]["bits/dim"] == 3.1305
    assert all(re.search(r"\(.+\)|bits/dim|model", c) for c in lik[0])  # every number column names its unit
    (row,) = adaptation_rows(m)
    assert row["target accuracy (fraction)"] == 0.637 and row["seeds"] == 2 and row["train time (s)"] == 3.2


@pytest.mark.parametrize("remote, url", [
    ("https://github.com/acme/vaeflow.git", "https://github.com/acme/vaeflow/commit/abc"),
    ("git@github.com:acme/vaeflow.git", "https://github.com/acme/vaeflow/commit/abc"),
    ("ssh://git@gitlab.com/g/sub/vaeflow", "https://gitlab.com/g/sub/vaeflow/commit/abc"),
    ("/srv/git/vaeflow.git", None), (None, None),
])
def test_commit_url(remote, url):
    from vaeflow.flows.artifacts import commit_url

    assert commit_url(remote, "abc") == url


def test_provenance_names_the_commit_and_uncommitted_changes(tmp_path):
    from vaeflow.flows.artifacts import provenance

    text, url = provenance(tmp_path, "params.yaml", [], tracked=False)
    assert "not a git checkout" in text and url is None
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    (tmp_path / "a.txt").write_text("1")
    for cmd in (["init", "-q"], ["add", "a.txt"], ["commit", "-qm", "x"],
                ["remote", "add", "origin", "https://github.com/acme/vaeflow.git"]):
        subprocess.run(git + cmd, cwd=tmp_path, check=True, capture_output=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    text, url = provenance(tmp_path, "params.yaml", ["vae.latent_dim=8"], tracked=False)
    assert sha in text and "clean working tree" in text and "vae.latent_dim=8" in text
    assert url == f"https://github.com/acme/vaeflow/commit/{sha}"
    (tmp_path / "a.txt").write_text("2")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages:\n  gmm:\n    outs:\n    - path: models/gmm.npz\n      md5: f00d\n")
    text, _ = provenance(tmp_path, "params.yaml", [], tracked=True)
    assert "uncommitted changes" in text and "| gmm | `models/gmm.npz` | `f00d` |" in text
