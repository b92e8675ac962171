"""The label-free collapse check of the adapt stage (vaeflow/training/health.py: collapse_check)."""
from __future__ import annotations

import logging

import numpy as np

from vaeflow.training.health import COLLAPSE_RATIO, RETENTION_RATIO, class_shares, collapse_check, retention_check


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


def test_a_class_without_labelled_images_is_not_a_collapse():
    # labels 1..3 (numbered from 1): class 0 exists in the network but has no image, labelled or predicted
    prior = np.array([0.0, 1 / 3, 1 / 3, 1 / 3])
    pred = np.repeat(np.arange(1, 4), [300, 300, 400])
    out = collapse_check("dann", [{"shares": class_shares(pred, 4)}], prior)
    assert out["flagged"] == [] and abs(out["min_share_ratio_runs"][0] - 0.9) < 1e-9


def test_the_report_names_flagged_variants_only():
    from vaeflow.tasks.evaluate import _collapse_lines
    a = {"mean_teacher": {"collapse": {"flagged": [1], "min_share_ratio_runs": [0.75, 0.008, 0.74]}},
         "dann": {"target_test_acc": 0.9}}
    text = "\n".join(_collapse_lines(a))
    assert "| `mean_teacher` | 2 | 0.008 |" in text and "dann" not in text
    assert _collapse_lines({"dann": {}}) == []


def _runs(*accs):
    return [{"source_val_acc": a} for a in accs]


def test_retention_is_the_share_of_above_chance_source_accuracy_kept(caplog):
    # the colour-target convnet runs: SHOT's seeds at 91.9, 94.5 and 39.1 % after a 99.3 % source model
    ref = _runs(0.993, 0.993, 0.993)
    with caplog.at_level(logging.WARNING, logger="vaeflow"):
        out = retention_check("shot", _runs(0.919, 0.945, 0.391), "source_only", ref, 10)
    expect = [(a - 0.1) / (0.993 - 0.1) for a in (0.919, 0.945, 0.391)]
    np.testing.assert_allclose(out["retained_runs"], expect)
    assert out["flagged"] == [2] and out["reference"] == "source_only" and out["threshold"] == RETENTION_RATIO
    assert "run 3" in caplog.text and "39.1 %" in caplog.text and "run 1" not in caplog.text


def test_retention_threshold_is_at_half_the_above_chance_accuracy():
    ref = _runs(0.9, 0.9)  # above chance (1/4): 0.65; half of it: 0.575
    out = retention_check("shot", _runs(0.576, 0.574), "source_only", ref, 4)
    assert out["flagged"] == [1]


def test_a_run_that_continues_a_flagged_run_is_flagged_too(caplog):
    # shot_mean_teacher relearns the source from its labels (89.4 %), but started from SHOT's lost network
    with caplog.at_level(logging.WARNING, logger="vaeflow"):
        out = retention_check("shot_mean_teacher", _runs(0.984, 0.894), "source_only", _runs(0.99, 0.99), 10,
                              inherited=[1])
    assert out["flagged"] == [1] and min(out["retained_runs"]) > RETENTION_RATIO
    assert "continues a run already flagged" in caplog.text


def test_the_report_names_runs_that_lost_the_source():
    from vaeflow.tasks.evaluate import _retention_lines
    a = {"shot": {"source_retention": {"flagged": [2], "reference": "source_only", "threshold": 0.5,
                                       "retained_runs": [0.91, 0.94, 0.33]}}, "dann": {}}
    text = "\n".join(_retention_lines(a))
    assert "| `shot` | 3 | `source_only` | 0.33 | as trained (on_flag=warn) |" in text and "dann" not in text
    a["shot"]["fallback"] = {"runs": [2], "to": ["source_only"], "unguarded_acc_runs": [0.9, 0.9, 0.1]}
    assert "| `shot` | 3 | `source_only` | 0.33 | run 3 as `source_only` |" in "\n".join(_retention_lines(a))
    assert _retention_lines({"dann": {}}) == []
    from vaeflow.training.health import IDEAL
    a = {"mean_teacher": {"source_retention": {"flagged": [0], "reference": IDEAL, "threshold": 0.5,
                                               "retained_runs": [0.12, 0.9]}}}
    assert f"| `mean_teacher` | 1 | `{IDEAL}` | 0.12 | as trained |" in "\n".join(_retention_lines(a))


def _record(acc, src_val=0.9):
    return {"acc": acc, "pred": np.full(4, int(acc * 10)), "state": {"w": acc}, "source_val_acc": src_val,
            "source_test_acc": src_val, "shares": np.full(10, 0.1), "res": f"history {acc}", "seconds": acc}


def test_a_flagged_run_is_scored_as_the_nearest_unflagged_network_up_its_chain(caplog):
    # source_only → shot → shot_mean_teacher, 3 repeats: shot's run 3 lost the source, so it and its
    # continuation's run 3 are scored as source_only's run 3; everything else is scored as trained.
    from vaeflow.training.health import fallback
    records = {(v, r): _record(acc) for v, accs in {"source_only": (0.2, 0.21, 0.19), "shot": (0.87, 0.83, 0.12),
                                                    "shot_mean_teacher": (0.94, 0.95, 0.09)}.items()
               for r, acc in enumerate(accs)}
    results = {"source_only": {}, "shot": {"source_retention": {"flagged": [2]}}}
    for r in range(3):  # what the mean teacher trained with (source_only has no such settings)
        records[("shot_mean_teacher", r)]["settings"] = {"align_floor": True}
    runs = [records[("shot_mean_teacher", r)] for r in range(3)]
    out, fell = fallback("shot_mean_teacher", runs, [2], results, records)
    assert [u["acc"] for u in out] == [0.94, 0.95, 0.19] and out[2]["state"] == {"w": 0.19}
    assert out[2]["res"] == "history 0.09" and out[2]["seconds"] == 0.09  # its own training history
    assert out[2]["settings"] == {"align_floor": True}  # and the settings it trained with
    assert fell == {"runs": [2], "to": ["source_only"], "unguarded_acc_runs": [0.94, 0.95, 0.09]}
    assert "shot_mean_teacher run 3: scored as `source_only`'s run 3" in caplog.text
    # its parent's run not flagged: the fallback is the parent
    out, fell = fallback("shot_mean_teacher", runs, [1], results, records)
    assert [u["acc"] for u in out] == [0.94, 0.83, 0.09] and fell["to"] == ["shot"]


def test_a_source_network_at_chance_has_nothing_to_lose():
    out = retention_check("shot", _runs(0.05, 0.3), "source_only", _runs(0.105, 0.6), 10)
    assert out["retained_runs"][0] is None and out["flagged"] == [1]


def test_a_variant_with_no_source_network_up_its_chain_is_held_to_a_perfect_reading(caplog):
    """ideal_retention: the same ratio with 100 % as the reference. The mean teacher alone on MNIST → printed digits
    read held-out MNIST at 9.9-21.3 % after alignment had hidden its collapse; every run that adapted read ≥ 85 %."""
    from vaeflow.training.health import IDEAL, ideal_retention
    with caplog.at_level(logging.WARNING, logger="vaeflow"):
        out = ideal_retention("mean_teacher", _runs(0.213, 0.099, 0.852, 0.551), 10)
    np.testing.assert_allclose(out["retained_runs"], [(a - 0.1) / 0.9 for a in (0.213, 0.099, 0.852, 0.551)])
    assert out["flagged"] == [0, 1] and out["reference"] == IDEAL  # 0.551 is just above halfway (0.55)
    assert "run 1: source validation accuracy 21.3 %, under halfway from chance (10.0 %)" in caplog.text
    assert "run 3" not in caplog.text


def test_flags_against_a_perfect_reading_are_not_inherited_and_a_flagged_root_is_the_fallback_floor():
    # DANN flagged against a perfect reading: DANN → mean teacher relearns the source from its labels and is
    # judged by its own check, and a continuation flagged against DANN is scored as DANN (nothing is above it)
    from vaeflow.training.health import IDEAL, fallback, inherited
    assert inherited({"source_retention": {"flagged": [1], "reference": IDEAL}}) == []
    assert inherited({"source_retention": {"flagged": [1], "reference": "source_only"}}) == [1]
    assert inherited({}) == []
    records = {(v, r): _record(acc) for v, accs in {"dann": (0.3, 0.2), "dann_mean_teacher": (0.9, 0.1)}.items()
               for r, acc in enumerate(accs)}
    results = {"dann": {"source_retention": {"flagged": [1], "reference": IDEAL}}}
    out, fell = fallback("dann_mean_teacher", [records[("dann_mean_teacher", r)] for r in range(2)], [1], results,
                         records)
    assert [u["acc"] for u in out] == [0.9, 0.2] and fell["to"] == ["dann"]
