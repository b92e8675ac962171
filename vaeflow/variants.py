"""The one table of adaptation variants. Everything else is derived from it: the names params.yaml accepts
(config), the `data.pools: shared` guard, what data `adapt` hands each variant, the report's notes and the
docs' list (tests/test_registry.py checks all of them).

A new method is one `Algorithm` subclass (vaeflow/training/) and one row here, nothing else. The table is
plain data (no torch import), so validating params.yaml stays cheap; `algorithm` is an import path that
`adapt` resolves only when it trains the variant.

Columns:
  algorithm   "module:Class" of the Algorithm that trains it
  labelled    whose labels the supervised loss reads: "source" (source training labels), "few"
              (adapt.labels_per_class target labels per class), "target" (all target training labels),
              "joint" (source labels, and every target training label for the unlabelled target batches),
              None (no labels of its own: a continuation, or a method that reads none)
  unlabelled  whether it also trains on the unlabelled target training images
  continues   the variant (same repeat) whose trained weights it starts from, instead of the VAE encoder
  init        "pretrained" (the VAE encoder's weights) or "random", for variants that start afresh
  target_bn   re-estimate every BatchNorm's statistics on the unlabelled target training images before it is
              scored (AdaBN, Li et al. 2017): the network is then normalised as the domain it is tested on
  default     listed in params.yaml's default variants
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VariantSpec:
    name: str
    algorithm: str
    note: str
    labelled: str | None = "source"
    unlabelled: bool = False
    continues: str | None = None
    init: str = "pretrained"
    target_bn: bool = False
    default: bool = False


VARIANTS: tuple[VariantSpec, ...] = (
    VariantSpec("source_only", "vaeflow.training.algorithms:ERM", "source labels only, scored with the statistics it was trained "
                "with (the source's)", default=True),
    VariantSpec("adabn", "vaeflow.training.algorithms:NoTraining", "source_only's network, its BatchNorm statistics re-estimated "
                "on the unlabelled target training images", labelled=None, continues="source_only",
                target_bn=True, default=True),
    VariantSpec("dann", "vaeflow.training.algorithms:DANN", "source labels + unlabelled target, domain-adversarial features "
                "(Ganin et al.)", unlabelled=True, target_bn=True, default=True),
    VariantSpec("self_training", "vaeflow.training.self_training:SelfTraining", "each DANN run, continued on "
                "source labels + its confident target pseudo-labels", unlabelled=True, continues="dann",
                target_bn=True),
    VariantSpec("mean_teacher", "vaeflow.training.mean_teacher:MeanTeacher", "source labels + consistency "
                "with an EMA teacher on two augmented views of unlabelled target images (French et al.); the "
                "teacher is scored", unlabelled=True, default=True),
    VariantSpec("shot", "vaeflow.training.shot:SHOT", "source_only's network, its head frozen, its features "
                "adapted on the unlabelled target alone: information maximisation + centroid pseudo-labels "
                "(Liang et al.)", labelled=None, unlabelled=True, continues="source_only"),
    VariantSpec("shot_mean_teacher", "vaeflow.training.mean_teacher:MeanTeacher", "each SHOT run, continued "
                "as a mean teacher (source labels + consistency on unlabelled target images): the teacher starts "
                "from an adapted network, not a source one (after SHOT++'s second, semi-supervised stage)",
                unlabelled=True, continues="shot"),
    VariantSpec("dann_mean_teacher", "vaeflow.training.mean_teacher:MeanTeacher", "each DANN run, continued as a "
                "mean teacher: the same second stage as shot_mean_teacher, after an adaptation that keeps "
                "training on source labels (so it cannot lose the source as SHOT can)", unlabelled=True,
                continues="dann"),
    VariantSpec("adamatch", "vaeflow.training.adamatch:AdaMatch", "source labels + FixMatch-style pseudo-labels "
                "on unlabelled target images, with random logit interpolation, a relative confidence threshold "
                "and distribution alignment to the source's class frequencies (Berthelot et al.; assumes the domains "
                "share them)", unlabelled=True),
    VariantSpec("finetune", "vaeflow.training.algorithms:ERM", "the pretrained encoder on the few target labels", labelled="few",
                default=True),
    VariantSpec("scratch", "vaeflow.training.algorithms:ERM", "the same network and labels, random initialisation", labelled="few",
                init="random", default=True),
    VariantSpec("oracle", "vaeflow.training.algorithms:ERM", "all target training labels (an upper bound)", labelled="target",
                default=True),
    VariantSpec("joint_oracle", "vaeflow.training.algorithms:JointERM", "source labels + all target training "
                "labels, each domain's batch through BatchNorm on its own (the bound for a method that has the "
                "source's labels too)", labelled="joint", unlabelled=True, target_bn=True),
    VariantSpec("mean_teacher_few", "vaeflow.training.mean_teacher:MeanTeacher", "the mean teacher on the few "
                "target labels + the unlabelled target training set", labelled="few", unlabelled=True),
    VariantSpec("fixmatch", "vaeflow.training.fixmatch:FixMatch", "the few target labels + confident "
                "pseudo-labels of weakly augmented unlabelled images as targets for strongly augmented ones "
                "(Sohn et al.)", labelled="few", unlabelled=True),
    VariantSpec("flexmatch", "vaeflow.training.fixmatch:FlexMatch", "FixMatch with a threshold per class that "
                "rises as the class is learnt (curriculum pseudo-labelling, Zhang et al.)", labelled="few",
                unlabelled=True),
    VariantSpec("latent_spreading", "vaeflow.training.latent_spreading:LatentSpreading", "label spreading on "
                "the VAE's posterior means (the few target labels)", labelled="few", unlabelled=True),
)
BY_NAME: dict[str, VariantSpec] = {v.name: v for v in VARIANTS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
DEFAULT: tuple[str, ...] = tuple(v.name for v in VARIANTS if v.default)


def lineage(name: str) -> list[VariantSpec]:
    """The variant and every variant it continues, nearest first."""
    out = [BY_NAME[name]]
    while out[-1].continues:
        out.append(BY_NAME[out[-1].continues])
    return out


def reads_source_labels(name: str) -> bool:
    """Trained on source labels, itself or through a variant it continues. Under `data.pools: shared` the
    source's labels are the target's, so such a variant would read target labels."""
    return any(v.labelled in ("source", "joint") for v in lineage(name))


def reads_target_labels(name: str) -> bool:
    return any(v.labelled in ("few", "target", "joint") for v in lineage(name))


def markdown_table() -> str:
    """The registry as docs/variants.md shows it (`python -m vaeflow.variants` rewrites that page's table)."""
    rows = ["| variant | labels it reads | unlabelled target | starts from | scored with | default | what it is |",
            "|---|---|---|---|---|---|---|"]
    for v in VARIANTS:
        start = f"`{v.continues}`'s network" if v.continues else ("VAE encoder" if v.init == "pretrained" else "random")
        labels = {"source": "source", "few": "few target", "target": "all target", "joint": "source + all target",
                  None: "none of its own"}[v.labelled]
        rows.append(f"| `{v.name}` | {labels} | {'yes' if v.unlabelled else 'no'} | {start} | "
                    f"{'target BN statistics (AdaBN)' if v.target_bn else 'its own statistics'} | "
                    f"{'yes' if v.default else 'opt-in'} | {v.note} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "variants.md"
    if not page.is_file():  # an installed package has no docs/: this regenerates a checkout's page
        raise SystemExit(f"error: {page} not found: `python -m vaeflow.variants` rewrites docs/variants.md of a "
                         "vaeflow checkout (pip install -e .); the table it would write:\n\n" + markdown_table())
    text = page.read_text()
    begin, end = "<!-- registry:begin -->\n", "<!-- registry:end -->"
    page.write_text(re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: begin + markdown_table() + end,
                           text, flags=re.S))
