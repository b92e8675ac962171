"""README's default-results block comes from a command (`vaeflow report`), never from typing."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.helpers import REPO
from vaeflow import results_table as rt

METRICS = {
    "gmm": {"family": "gaussian", "n_components": 5, "test_nll_nats": -65.0612, "test_bits_per_dim": 2.6213,
            "fit_seconds": 17.0, "covariance_type": "full"},
    "vae": {"n_test": 448, "test_nelbo_nats": -64.3649, "test_nelbo_bits_per_dim": 2.6371, "iwae_samples": 1000,
            "test_nll_nats": -68.5712, "test_nll_stderr": 0.8123, "test_bits_per_dim": 2.5421},
    "adapt": {"source_only": {"n_labelled": 540, "target_test_acc": 0.504, "target_test_acc_std": 0.059,
                              "target_test_acc_runs": [0.5, 0.45, 0.56], "source_test_acc": 0.908},
              "a_new_variant": {"n_labelled": 20, "target_test_acc": 0.7, "target_test_acc_std": 0.01,
                                "target_test_acc_runs": [0.69, 0.71], "source_test_acc": 0.9}},
    "samplers": {"vae_prior": {"frechet": 0.344, "entropy": 2.3, "converged": True, "bic": {"1": -3.0}},
                 "real": {"frechet": 0.0036}, "train_seconds": 3.2},
    "checks": {"vae_beats_gmm": True},
    "seconds": {"gmm_fit": 17.0},
}


def test_render_has_every_figure_variant_and_section_from_the_metrics():
    text = rt.render(METRICS)
    assert "| Gaussian mixture, K = 5, full covariances (EM) | −65.06 | 2.621 |" in text
    assert rt.gmm_name({"family": "bernoulli", "n_components": 3, "covariance_type": None}) == "Bernoulli mixture, K = 3"
    assert rt.gmm_name({"family": "gaussian", "n_components": 3}) == "Gaussian mixture, K = 3"  # metrics of before
    assert "| VAE, IWAE k = 1000 (NLL estimate ± s.e.) | **−68.57** ± 0.81 | **2.542** |" in text
    assert "| source_only | 540 | 0.504 ± 0.059 (3 seeds) | 0.908 |" in text
    assert "| a_new_variant | 20 | 0.700 ± 0.010 (2 seeds) | 0.900 |" in text  # a variant nobody told it about
    assert "nats per image below the mixture's" in text and "3.51 nats per image" in text  # -68.57 vs -65.06
    assert "4.21 nats tighter" in text and "a_new_variant +19.6" in text
    assert "| samplers | entropy | frechet |" in text and "| vae_prior | 2.3 | 0.344 |" in text  # a new section
    assert "converged" not in text and "bic" not in text and "seconds" not in text and "17" not in text
    assert "Checks: vae_beats_gmm yes." in text
    assert text.index("| a_new_variant |") < text.index("| source_only |")  # best first, as in the report
    close = {**METRICS, "adapt": {**METRICS["adapt"], "near": {**METRICS["adapt"]["a_new_variant"], "target_test_acc": 0.55}}}
    assert "near +4.6 (within noise)" in rt.render(close) and "a_new_variant +19.6," in rt.render(close)


def test_update_and_check_a_readme(tmp_path):
    readme = f"# x\n\nbefore\n\n{rt.BEGIN}\nold, typed by hand\n{rt.END}\n\nafter\n"
    new = rt.update(readme, METRICS, "here")
    assert new.startswith("# x\n\nbefore\n\n") and new.endswith("\n\nafter\n") and "typed by hand" not in new
    assert rt.matches(new, METRICS) and not rt.matches(readme, METRICS)
    assert rt.readme_machine(new) == "here"
    assert rt.matches(new.replace("here", "another machine"), METRICS)  # where it was made is not a figure
    assert not rt.matches(new.replace("−68.57", "−69.50"), METRICS)  # a hand-edited figure is caught
    with pytest.raises(ValueError, match="no generated results block"):
        rt.update("# no markers\n", METRICS, "here")


def test_cli_prints_updates_and_checks(tmp_path):
    from vaeflow.flows.cli import app

    (tmp_path / "m.json").write_text(json.dumps(METRICS))
    (tmp_path / "README.md").write_text(f"{rt.BEGIN}\n{rt.END}\n")
    args = ["--metrics", str(tmp_path / "m.json"), "--readme", str(tmp_path / "README.md")]
    r = CliRunner().invoke(app, ["report", "--readme-table", *args])
    assert r.exit_code == 0 and r.stdout == rt.render(METRICS)
    r = CliRunner().invoke(app, ["report", "--check-readme", *args])
    assert r.exit_code == 1 and "vaeflow report --update-readme" in r.output
    assert CliRunner().invoke(app, ["report", "--update-readme", *args]).exit_code == 0
    assert CliRunner().invoke(app, ["report", "--check-readme", *args]).exit_code == 0
    r = CliRunner().invoke(app, ["report", "--metrics", str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "vaeflow run" in r.output


def test_readme_holds_one_generated_block_and_no_typed_default_figures():
    text = (REPO / "README.md").read_text()
    assert text.count(rt.BEGIN) == 1 and text.count(rt.END) == 1
    assert rt.readme_machine(text)
    block = rt.readme_block(text)
    assert "| source_only |" in block and "IWAE" in block
    # the figures the issue found stale were typed outside any generated block
    outside = text.replace(block, "")
    for typed in ("−68.57", "0.637 ± 0.014", "0.659 ± 0.007", "0.504 ± 0.059"):
        assert typed not in outside


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the default run: ~1.5 min on 2 idle cores, 14 min measured under load 14
def test_readme_matches_a_fresh_default_run(default_run):
    """`vaeflow run` on params.yaml as committed, in a fresh copy (the session's `default_run`, conftest.py),
    then `vaeflow report --check-readme`. On the machine the block names, the block must match digit for
    digit; elsewhere (another CPU instruction set or library build), the same tables and rows (README says
    why and how to regenerate)."""
    m = json.loads((default_run.project / "metrics" / "metrics.json").read_text())
    readme = (REPO / "README.md").read_text()
    if rt.readme_machine(readme) == rt.machine():
        assert rt.matches(readme, m), "README's results are not what a fresh default run gives: " \
                                      "run `vaeflow report --update-readme` after `vaeflow run`"
    else:
        # the same rows, in whatever order: rows are ranked by their figures, which another CPU changes
        shape = lambda s: sorted(ln.split("|")[1] for ln in s.splitlines() if ln.startswith("| "))  # noqa: E731
        assert shape(rt.readme_block(readme)) == shape(rt.render(m))


def test_report_tables_become_html_that_wraps_in_the_prefect_ui():
    """The UI's table component cuts wide tables off; the artifact's copy of the report carries them as plain
    HTML tables instead (one HTML block each), with inline code and bold kept and everything else escaped."""
    from vaeflow.inline_figures import html_tables

    md = ("# r\n\ntext | not a table\n\n| sampler | what | Fréchet ↓ |\n|---|:---:|---|\n"
          "| `vae_prior` | z ~ N(0, I) <b> & \\| pipe | **0.71** ± 0.1 |\n| real | the floor | 0.5 |\n\nafter\n")
    out = html_tables(md)
    assert out.startswith("# r\n\ntext | not a table\n\n<table") and out.endswith("</table>\n\nafter\n")
    block = out[out.index("<table"):out.index("</table>")]
    assert "\n\n" not in block and "|---" not in block and "<td>`" not in block
    assert "<th>Fréchet ↓</th>" in block and "<td><code>vae_prior</code></td>" in block
    assert "<td>z ~ N(0, I) &lt;b&gt; &amp; | pipe</td>" in block and "<td><b>0.71</b> ± 0.1</td>" in block
    assert block.count("<tr>") == 3


def test_report_sentences_follow_the_numbers_not_one_dataset():
    """The same code must read right when source-only is near the oracle, when the VAE loses to the mixture,
    and when a gap is inside the seeds' spread (the prose is computed: vaeflow/report_prose.py)."""
    from vaeflow import report_prose as rp

    def acc(x, sd, src=0.95):
        return {"target_test_acc": x, "target_test_acc_std": sd, "target_test_acc_runs": [x] * 3, "source_test_acc": src}

    near = {"source_only": acc(0.887, 0.012, src=0.90), "oracle": acc(0.893, 0.010), "dann": acc(0.95, 0.004)}
    text = " ".join(rp.domain_gap(near) + rp.adaptation(near))
    assert "poorly" not in text and "default" not in text.lower()
    assert "costs it 1.3 points (within its seed spread)" in text and "above `source_only` (within noise)" in text
    assert "- `dann`: +6.3 points, clearly above `source_only`" in text and "Highest: `dann`" in text
    paired = {"dann": {"reference": "source_only", "mean": 0.063, "se": 0.04}}
    assert "within noise of `source_only` (paired by seed)" in " ".join(rp.adaptation(near, paired))
    g = {"family": "bernoulli", "test_nll_nats": 90.0}
    v = {"test_nll_nats": 92.5, "test_nll_stderr": 0.3, "test_nelbo_nats": 95.0, "iwae_samples": 5000}
    assert "2.50 nats per image higher (worse) than the bernoulli mixture's (clearly" in rp.likelihoods(g, v)[0]
    assert rp.domain_gap({"oracle": acc(0.9, 0.01)}) == [] and rp.adaptation({"dann": acc(0.9, 0.01)}) == []
    # one dataset on both sides (mnist_binary): no "shift" in the prose, and the latent figure's panel says so
    same = " ".join(rp.domain_gap(near, same_data=True)) + rp.latent_figure(same_data=True)
    assert "shift costs" not in same and "differ by 1.3 points, with no shift between them" in same
    assert "no domain shift to bridge" in same and "no domain shift" not in rp.latent_figure()


def test_dot_plot_any_number_of_rows_with_and_without_spread(tmp_path):
    from PIL import Image

    from vaeflow.plots import dots

    dots({"only": -65.0}, tmp_path / "one.png", "nats", "one row", lower_is_better=True, relative="vs best")
    names = {f"a_rather_long_variant_name_{i}": 0.5 + i / 100 for i in range(12)}
    dots(names, tmp_path / "many.png", "accuracy", "twelve rows", errors={n: 0.01 for n in list(names)[:6]},
         groups={n: "group " + str(i % 3) for i, n in enumerate(names)}, ref="a_rather_long_variant_name_0")
    with Image.open(tmp_path / "one.png") as one, Image.open(tmp_path / "many.png") as many:
        assert many.height > 2 * one.height  # one row each: the names never overlap
