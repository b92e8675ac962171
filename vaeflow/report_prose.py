"""The report's sentences that compare numbers, computed from them, so that they read right on any data.

A sentence written for one run ("source-only transfers poorly") is wrong on the next dataset; here every
verdict is a rule applied to the measured numbers and their spread, and the rule is stated beside it:
two results differ "clearly" when their difference exceeds twice their combined spread (std over seeds, or
the standard error of a seed-paired difference, for accuracies; the estimate's standard error for an IWAE
NLL), and are "within noise" otherwise.
Torch-free: the evaluate stage imports it.
"""
from __future__ import annotations

import math

RULE = "clearly: the difference exceeds twice the combined spread; otherwise within noise"


def _n(x: float, spec: str = ".2f") -> str:
    return format(x, spec).replace("-", "−")  # a typographic minus, as in the tables


def verdict(diff: float, spread_a: float | None, spread_b: float | None) -> str:
    """'clearly' or 'within noise' for a difference of two results with the given spreads (None: unknown,
    counted as 0, so a single measurement is compared by its value alone)."""
    finite = [x for x in (spread_a, spread_b) if x is not None and math.isfinite(x)]  # NaN: one repeat, no spread
    spread = math.hypot(*finite) if finite else 0.0
    return "within noise" if abs(diff) <= 2 * spread else "clearly"


def likelihoods(g: dict, v: dict) -> list[str]:
    """VAE against the mixture, and the IWAE bound against the ELBO, in nats per image."""
    gap = v["test_nll_nats"] - g["test_nll_nats"]
    se = v.get("test_nll_stderr") or 0.0
    side = "lower (better)" if gap < 0 else "higher (worse)"
    elbo_gap = v["test_nelbo_nats"] - v["test_nll_nats"]
    return [f"The VAE's IWAE NLL estimate is {_n(abs(gap))} nats per image {side} than the {g['family']} mixture's "
            f"({verdict(gap, se, None)}: the estimate's s.e. is {_n(se)}). The IWAE bound with k = {v['iwae_samples']} "
            f"lies {_n(elbo_gap)} nats below the −ELBO, "
            + ("as a tighter bound should." if elbo_gap >= 0 else
               "which a correct IWAE bound never does: **check the evaluation**."), ""]


def _acc(r: dict) -> tuple[float, float | None]:
    return r["target_test_acc"], r.get("target_test_acc_std") if len(r.get("target_test_acc_runs", [])) > 1 else None


def latent_figure(same_data: bool = False) -> str:
    """The paragraph before the latent-space figure. Where source and target are two parts of one dataset,
    its right panel shows the two parts, and there is no shift for a classifier to bridge."""
    shows = ("The figure below shows the test images' posterior means (2-D projection) coloured by class (left) "
             "and by domain (right). ")
    if same_data:
        return shows + ("Source and target are disjoint parts of one dataset here, so the two should overlap "
                        "everywhere: there is no domain shift to bridge. As measured:")
    return shows + ("Where the domains fall into separate regions, the VAE encodes the domain as well as the class: "
                    "a classifier on these features trained on source labels must bridge that, and DANN's "
                    "domain-adversarial loss works against it. What the shift costs, as measured:")


def domain_gap(a: dict, same_data: bool = False) -> list[str]:
    """What the shift costs a classifier trained on source labels: source_only's source vs target accuracy,
    and its distance to the oracle (all target labels), where those variants ran. With one dataset on both
    sides (`same_data`) the gap is sampling noise, and is called that."""
    so = a.get("source_only")
    if not so or so.get("source_test_acc") is None:
        return []
    t, t_sd = _acc(so)
    cost = so["source_test_acc"] - t
    gap = (f"the two parts differ by {_n(100 * cost, '.1f')} points, with no shift between them" if same_data
           else f"the shift costs it {_n(100 * cost, '.1f')} points")
    text = (f"`source_only` scores {so['source_test_acc']:.3f} on source test images and {t:.3f} ± {t_sd or 0:.3f} "
            f"on target test images: {gap}"
            + (" (within its seed spread)." if verdict(cost, t_sd, None) == "within noise" else "."))
    if "oracle" in a:
        o, o_sd = _acc(a["oracle"])
        d = o - t
        text += (f" The `oracle`, trained on all target labels, reaches {o:.3f}: {_n(abs(100 * d), '.1f')} points "
                 f"{'above' if d >= 0 else 'below'} `source_only` ({verdict(d, t_sd, o_sd)}).")
    return [text, ""]


def adaptation(a: dict, paired: dict | None = None, reference: str = "source_only") -> list[str]:
    """Each variant against the reference (the same network on source labels only), best first. Where the
    adapt stage paired the repeats by seed (`paired`: variant -> mean, se of the difference), the verdict
    uses that standard error, which the seeds' shared noise does not inflate; else the two std over seeds."""
    paired = {k: d for k, d in (paired or {}).items()
              if d.get("reference") == reference and d.get("se") is not None and math.isfinite(d["se"])}
    if reference not in a or len(a) < 2:
        return []
    ref, ref_sd = _acc(a[reference])
    rows = []
    for name, r in sorted(a.items(), key=lambda kv: -kv[1]["target_test_acc"]):
        if name == reference:
            continue
        x, sd = _acc(r)
        d = x - ref
        how = verdict(paired[name]["mean"], paired[name]["se"], None) if name in paired else verdict(d, sd, ref_sd)
        where = f"within noise of `{reference}`" if how == "within noise" else \
            f"clearly {'above' if d >= 0 else 'below'} `{reference}`"
        rows.append(f"- `{name}`: {_n(100 * d, '+.1f')} points, {where}" + (" (paired by seed)" if name in paired else ""))
    best = max(a, key=lambda k: a[k]["target_test_acc"])
    return [f"Target test accuracy against `{reference}` ({ref:.3f}), best first ({RULE}; spread = std over "
            "seeds, or the standard error of the seed-paired difference where marked). Highest: "
            f"`{best}`.", "", *rows, ""]
