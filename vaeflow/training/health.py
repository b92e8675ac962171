"""Label-free health checks of an adaptation run. Each reads predictions and source labels only, never a
target label: it flags a run in metrics/adapt.json, the stage's log and the report. Only `fallback` acts on
a flag (adapt.on_flag), and only on the retention check's, by the written rule below.

  collapse_check   the share of unlabelled target images predicted as each class, against that class's
                   share of the labelled set. A self-training method can absorb one class into another (a
                   mean-teacher seed on MNIST→USPS predicted 9 for 0.1 % of the target images, its labelled
                   prior 9.9 %), which no source metric shows.
  retention_check  the source-validation accuracy of a run that continues a source-trained network, against
                   that network's. A source-free method (SHOT) can keep every class predicted and still hand
                   whole target clusters the wrong labels (a convnet seed on a colour target: 11.9 % target
                   accuracy, lowest class share 0.59 of the prior, so the collapse check passes). Its features
                   have then moved so far that the frozen source head no longer reads the source either: that
                   run's source accuracy fell from 99.3 to 39.1 %, the two healthy seeds' to 91.9 and 94.5 %.
                   A variant trained on source labels that continues no source-trained network (the mean teacher
                   alone, DANN, AdaMatch) is held to a perfect reading of the source instead (IDEAL): with the same
                   ratio, its held-out source accuracy must be at least halfway from chance to 100 %. Distribution
                   alignment pulls a failed mean teacher's class shares back towards the labelled ones, which blinds
                   the collapse check; such a teacher still no longer reads the source (MNIST → printed digits:
                   9.9-21.3 % on held-out MNIST against ≥ 85 % for every run that adapted, bench/RESULTS.md).
  fallback         what adapt.on_flag=fallback does with a run the retention check flagged: it is scored as
                   the nearest network up its chain that was not flagged (for shot and its continuations,
                   source_only's run of the same repeat). A network that no longer reads the source may hand
                   target clusters permuted labels (that convnet seed: 11.9 %, below its source network's
                   19.4 %), so the source network is the safer answer; the decision reads source labels only.
"""
from __future__ import annotations

import logging

import numpy as np

from vaeflow.variants import BY_NAME, lineage

log = logging.getLogger("vaeflow")
COLLAPSE_RATIO, SHARE_IMAGES = 0.25, 4096
# A run is flagged when it has lost more than half of its source network's accuracy above chance. Set from
# what the check must tell apart (a network that no longer reads the source at all, against the few points
# that adapting features to a shifted target costs), not fitted to any run's target accuracy.
RETENTION_RATIO = 0.5
IDEAL = "a perfect reading"  # the reference of a variant with no source-trained network up its chain (ideal_retention)


def class_shares(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(labels, minlength=n_classes) / max(len(labels), 1)


def collapse_check(variant: str, runs: list[dict], prior: np.ndarray) -> dict:
    """Per run: min over classes of (predicted share on unlabelled target) / (labelled share); a warning
    for each run below COLLAPSE_RATIO, naming the class. A class without labelled images (labels numbered from
    1, or with gaps: the classes are 0..max) cannot collapse: it has no share to lose, and is left out."""
    seen = prior > 0
    ratios = [np.where(seen, u["shares"] / np.maximum(prior, 1e-12), np.inf) for u in runs]
    out = {"min_share_ratio_runs": [float(r.min()) for r in ratios], "flagged": [], "threshold": COLLAPSE_RATIO}
    for i, r in enumerate(ratios):
        if r.min() < COLLAPSE_RATIO:
            c = int(r.argmin())
            out["flagged"].append(i)
            log.warning("adapt %s run %d: predicts class %d for %.1f %% of unlabelled target images, against "
                        "%.1f %% of the labelled set: a class may have collapsed (a label-free check)", variant,
                        i + 1, c, 100 * runs[i]["shares"][c], 100 * prior[c])
    return out


def source_root(variant: str, listed: list[str]) -> str:
    """The source-trained network at the root of the variant's chain among the `listed` variants (source_only
    for shot and its continuations): what retention_check compares with. The variant itself when none is."""
    root = next(s for s in reversed(lineage(variant)) if s.name in listed)
    return root.name if root.labelled == "source" else variant


def ideal_retention(variant: str, runs: list[dict], n_classes: int) -> dict:
    """retention_check against a perfect reading of the source: for a variant trained on source labels that continues
    no source-trained network, so has none of its own to compare with."""
    return retention_check(variant, runs, IDEAL, [{"source_val_acc": 1.0}] * len(runs), n_classes)


def inherited(parent: dict) -> list[int]:
    """The runs a continuation inherits a retention flag from: its parent's flagged runs (`parent`: the parent's
    summary, with its source_retention), where the parent was held to a network of its chain. A root held to a
    perfect reading (DANN's, say) may be continued by a method that relearns the source, and the continuation's own
    check reads that."""
    ret = parent.get("source_retention", {})
    return [] if ret.get("reference") == IDEAL else ret.get("flagged", [])


def retention_check(variant: str, runs: list[dict], reference: str, reference_runs: list[dict], n_classes: int,
                    inherited: list[int] = ()) -> dict:
    """Per run r: (source-val accuracy − chance) / (the same for run r of `reference`, the source-trained network
    the run continues). Flagged below RETENTION_RATIO, or when the run continues a flagged run (`inherited`:
    the continued variant's flagged runs), since it starts from a network that lost the source."""
    chance = 1.0 / n_classes
    # A source network within a point of chance reads nothing that could be lost: no ratio, no flag.
    ratios = [(u["source_val_acc"] - chance) / (ref["source_val_acc"] - chance)
              if ref["source_val_acc"] - chance > 0.01 else None for u, ref in zip(runs, reference_runs)]
    flagged = sorted({i for i, q in enumerate(ratios) if q is not None and q < RETENTION_RATIO} | set(inherited))
    for i in flagged:
        why = (f"source validation accuracy {100 * runs[i]['source_val_acc']:.1f} % against "
               f"{100 * reference_runs[i]['source_val_acc']:.1f} % for `{reference}`" if reference != IDEAL else
               f"source validation accuracy {100 * runs[i]['source_val_acc']:.1f} %, under halfway from chance "
               f"({100 * chance:.1f} %) to a perfect reading")
        if i in inherited and (ratios[i] is None or ratios[i] >= RETENTION_RATIO):
            why = "it continues a run already flagged"
        log.warning("adapt %s run %d: %s: it may no longer read the source's classes, so its target labels may be "
                    "permuted (a label-free check)", variant, i + 1, why)
    return {"reference": reference, "source_val_acc_runs": [float(u["source_val_acc"]) for u in runs],
            "retained_runs": [q if q is None else float(q) for q in ratios], "flagged": flagged, "threshold": RETENTION_RATIO}


def fallback(variant: str, runs: list[dict], flagged: list[int], results: dict[str, dict],
             records: dict) -> tuple[list[dict], dict]:
    """Replace each flagged run of `variant` (runs[i] is repeat i) by the run of the same repeat of the nearest
    variant up its chain whose run was not flagged (the chain's root, a source-trained network, never is).
    `records` holds every run as trained, keyed (variant, repeat); `results` the summaries of the variants
    done so far. The run's own training history stays (it is what was trained); the fallback's is scored."""
    out, to = list(runs), {}
    for i in flagged:
        p = BY_NAME[variant].continues
        # the chain's root is as far as it goes (a root flagged against a perfect reading has nothing above it)
        while BY_NAME[p].continues and i in results[p].get("source_retention", {}).get("flagged", []):
            p = BY_NAME[p].continues
        # what it trained with (history, time, resolved settings) stays the run's own; the prediction is p's
        out[i] = {**records[(p, i)], **{k: runs[i][k] for k in ("res", "seconds", "settings") if k in runs[i]}}
        to[i] = p
        log.warning("adapt %s run %d: scored as `%s`'s run %d instead (adapt.on_flag=fallback)", variant, i + 1, p, i + 1)
    return out, {"runs": sorted(to), "to": [to[i] for i in sorted(to)],
                 "unguarded_acc_runs": [float(u["acc"]) for u in runs]}
