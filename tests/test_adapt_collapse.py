"""The label-free collapse check of the adapt stage (tasks/adapt.py: collapse_check)."""
from __future__ import annotations

import logging

import numpy as np

from vaeflow.tasks.adapt import COLLAPSE_RATIO, class_shares, collapse_check


def test_class_shares_match_a_direct_count():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 7, size=1000)
    pred = pred[pred != 3]  # a class never predicted still gets its (zero) share
    values, counts = np.unique(pred, return_counts=True)
    expect = np.zeros(7)
    expect[values] = counts / len(pred)
    np.testing.assert_allclose(class_shares(pred, 7), expect)
    assert class_shares(pred, 7)[3] == 0


def test_a_run_that_absorbed_one_class_is_flagged_and_named(caplog):
    prior = np.full(10, 0.1)
    healthy = np.repeat(np.arange(10), 100)
    absorbed = np.where(healthy == 9, 7, healthy)  # every 9 predicted as 7
    absorbed[0] = 9                                 # ... but one: share 0.1 %, ratio 0.01
    runs = [{"shares": class_shares(healthy, 10)}, {"shares": class_shares(absorbed, 10)}]
    with caplog.at_level(logging.WARNING, logger="vaeflow"):
        out = collapse_check("mean_teacher", runs, prior)
    assert out["flagged"] == [1]
    np.testing.assert_allclose(out["min_share_ratio_runs"], [1.0, 0.01])
    assert "class 9" in caplog.text and "run 2" in caplog.text
    assert out["min_share_ratio_runs"][0] > COLLAPSE_RATIO


def test_a_target_prior_unlike_the_source_prior_is_not_a_collapse():
    # USPS has more zeros than MNIST: a share at half the labelled prior is a shift, not a collapse.
    prior = np.full(4, 0.25)
    pred = np.repeat(np.arange(4), [400, 250, 220, 130])
    out = collapse_check("shot", [{"shares": class_shares(pred, 4)}], prior)
    assert out["flagged"] == [] and abs(out["min_share_ratio_runs"][0] - 0.52) < 1e-9


def test_the_report_names_flagged_variants_only():
    from vaeflow.tasks.evaluate import _collapse_lines
    a = {"mean_teacher": {"collapse": {"flagged": [1], "min_share_ratio_runs": [0.75, 0.008, 0.74]}},
         "dann": {"target_test_acc": 0.9}}
    text = "\n".join(_collapse_lines(a))
    assert "| `mean_teacher` | 2 | 0.008 |" in text and "dann" not in text
    assert _collapse_lines({"dann": {}}) == []
