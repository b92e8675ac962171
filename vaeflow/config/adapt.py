"""The `adapt` section and its methods' sub-sections. The variant names come from the registry
(vaeflow/variants.py)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from vaeflow import variants as registry
from vaeflow.config.base import Section
from vaeflow.config.models import CKPT_WHY


class DANNConfig(Section):
    gamma: float = Field(10.0, gt=0, description="λ_p = 2/(1+exp(-γ p)) - 1 (Ganin et al.)")
    lambda_max: float = Field(1.0, gt=0)
    domain_hidden: int = Field(64, ge=1)
    # 0.999 by a rule fixed before it was measured (bench/cpu_runs.sh, wave 31): DANN +10.1 on a colour target and
    # +21.0 on printed digits → MNIST, its mean-teacher chain −0.2 and +7.0, no run newly flagged. With the warm-up
    # (min(ema, 1 − 1/t)) a run under 1,000 steps scores the mean of all its students (the default flow: 540 steps).
    ema: float = Field(0.999, ge=0, lt=1, description="score an EMA of the weights, which a variant continuing DANN "
                       "also starts from (0: the weights themselves)")
    # A run under 1/(1 − ema) steps averages all its students, the first ones too: the default flow's DANN (540 steps)
    # scores 0.885 with no cap, 0.921 with 0.2. Off by a rule fixed before its runs (bench/cpu_runs.sh, wave 33): on
    # printed digits → MNIST DANN lost 0.53 (the rule allowed 0.5), its mean-teacher chain 0.08; colour target +0.23.
    ema_horizon: float = Field(0.0, ge=0, le=1, description="cap the average's span at this fraction of the run's "
                               "steps: decay at most 1 − 1/(ema_horizon·steps) (0: no cap)")


class SelfTrainingConfig(Section):
    rounds: int = Field(2, ge=1, le=20, description="pseudo-label, then train; repeated this many times")
    threshold: float = Field(0.95, gt=0, lt=1, description="softmax confidence a target image needs for its pseudo-label")
    epochs: int = Field(2, ge=1, le=100_000, description="epochs per round (an epoch: one pass over the larger set)")
    lr: float = Field(1e-4, gt=0, le=1, description="below adapt.lr: it refines a trained DANN")


class AugmentConfig(Section):
    """Batched random affine + noise on the training device (vaeflow/training/augment.py). All zero: off.
    Sizes are fractions of the image side, so one setting means the same on 8×8 and 32×32 images.
    Defaults: French et al.'s (2018) digit augmentation, fixed before any run was scored (±2 px of 28,
    affine jitter of std 0.1 ≈ ±8° and ±10 %, Gaussian noise of std 0.1), never tuned on target labels."""
    translate: float = Field(0.07, ge=0, le=0.5, description="max shift, a fraction of the image side")
    rotate_deg: float = Field(8.0, ge=0, le=180, description="max rotation, degrees")
    scale: float = Field(0.1, ge=0, lt=1, description="zoom drawn from [1-scale, 1+scale]")
    shear_deg: float = Field(8.0, ge=0, le=45, description="max shear, degrees")
    noise: float = Field(0.1, ge=0, le=1, description="std of additive Gaussian noise, in intensity units")
    padding: Literal["zeros", "border", "reflection"] = Field(
        "zeros", description="what fills pixels moved in from outside the image")
    # French et al.'s intens_flip (their colour digit pairs): a digit printed light on dark and dark on light is
    # the same digit, which a geometric warp never shows the network. "auto": 0.5 where the training images of the
    # two domains come in both polarities, 0 where they all share one (vaeflow/training/augment.py, auto_flip).
    intensity_flip: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] = Field(
        0.0, description="probability that an image is mirrored about its mean intensity (x → 2·mean − x: light "
        "on dark ↔ dark on light), or auto: 0.5 if the domains' training images come in both polarities, else 0")


class MeanTeacherConfig(Section):
    """Self-ensembling (French et al., 2018): an EMA teacher, confidence-thresholded consistency."""
    ema: float = Field(0.99, gt=0, lt=1, description="teacher = d·teacher + (1-d)·student after each step, d = min(ema, 1 - 1/step): the mean of the students until 1/(1-ema) steps, then the EMA")
    threshold: float = Field(0.968, ge=0, lt=1, description="teacher confidence an unlabelled image needs "
                             "to count in the consistency loss (French et al.'s 0.968)")
    consistency_weight: float = Field(3.0, ge=0, description="weight of the squared-difference consistency loss")
    # 0.1, not French et al.'s 0.005: at 0.005 one MNIST→USPS seed in three absorbed every 9 into 7, which
    # the label-free collapse check (tasks/adapt.py) flagged; at 0.1 (fixed before measuring, so that the
    # term pulls as hard as SHOT's diversity term at the check's threshold) it was not, and USPS→MNIST was
    # unchanged. On a colour target every run collapsed at both weights (bench/RESULTS.md). The choice
    # follows the label-free check (fewer runs flagged), not target accuracy.
    class_balance: float = Field(0.1, ge=0, description="weight of the class-balance term (BCE of the batch's "
                                 "mean prediction against uniform)")
    # On by a rule fixed before it was measured (bench/cpu_runs.sh, wave 26): on a colour target two of three DANN →
    # mean teacher runs had collapsed a class (a label-free flag) without it, none with it (88.8 → 94.3 %); printed
    # digits → MNIST moved by +0.12 and −0.01. Off: French et al.'s mean teacher as published.
    align: bool = Field(True, description="align the teacher's probabilities to the labelled class shares "
                        "(ReMixMatch's distribution alignment) before thresholding; assumes the domains share them")
    # What alignment pulls towards. The labelled shares are the unlabelled set's only when the domains share their
    # class frequencies; a network already adapted to the unlabelled images (the one a chain continues) gives an
    # estimate of that set's own shares without a label. Not the default, by a rule fixed before it was measured
    # (bench/cpu_runs.sh, wave 30): it is as good as that network, and one chain from a weak DANN collapsed a class.
    align_to: Literal["labelled", "continued"] = Field(
        "labelled", description="the class shares align pulls the teacher towards: 'labelled' (the labelled "
        "set's) or 'continued' (the mean prediction on the unlabelled images of the network the variant continues, "
        "kept fixed; a variant that continues none uses the labelled shares)")
    # Alignment to the labelled shares assumes the domains share them; where they do not (USPS's 0 is 16 %, MNIST's
    # 10 %) it cost the digit presets 0.3-0.5 points, while on a colour target it stopped a class collapsing. A slack
    # lets the shares differ by up to that factor and still raises a class that falls further (a collapse). 1 by a rule
    # fixed before its runs (bench/cpu_runs.sh, wave 36): at 2 a DANN → mean teacher run collapsed a class on the
    # colour target (94.02 → 87.64) and one drifted on printed digits → MNIST (97.67 → 92.69), each paired by seed.
    align_slack: float = Field(1.0, ge=1.0, le=100.0, description="align only a class whose recent share has left "
                               "[share/slack, share·slack] of the aligned-to shares, back to that band's edge (1: "
                               "align every class all the way)")
    # A collapse is a class falling; a floor opposes it as fully as two-way alignment does, and leaves alone a class
    # that the unlabelled set has more of than the labelled one (two-way alignment pushes that class into its
    # neighbours: USPS's shares held MNIST's 7 down and its most 2-like 7s went to 2). On by a rule fixed before it was
    # measured (bench/cpu_runs.sh, wave 43): DANN → mean teacher +0.10 on a colour target, −0.04 on printed digits →
    # MNIST, paired by seed, no run flagged. Off: two-way alignment, as measured before the option existed.
    # "auto" keeps the floor where the labels are another domain's (source labels: their shares may not be the
    # unlabelled set's) and aligns both ways where they were drawn from the unlabelled set itself (the few-label
    # variants: the labelled shares estimate its shares, the assumption two-way alignment needs). Few-label two-way by a
    # rule fixed before it was measured (bench/cpu_runs.sh, waves 49 and 55): error paired with the floor 0.00 ± 0.68 on
    # a colour target and −0.01 ± 0.22 on printed digits, no run flagged.
    align_floor: bool | Literal["auto"] = Field(
        "auto", description="alignment only raises a class whose recent share is below the aligned-to share (a "
        "floor against a collapse) and never lowers one (true), pulls both ways (false), or 'auto': the floor for a "
        "variant trained on another domain's labels (source), both ways for one whose labels are the unlabelled "
        "set's own (the few-label variants)")
    # Its own length, so that a mean teacher continuing a short source phase (shot_mean_teacher) can take the
    # longer share of a fixed budget: the source phase is done once its source-validation accuracy is flat.
    epochs: int = Field(0, ge=0, le=100_000, description="epochs of every mean-teacher variant (0: adapt.epochs)")


class ShotConfig(Section):
    """SHOT's target phase (Liang et al., 2020), continuing source_only: defaults are SHOT's (cls_par 0.3,
    ent_par 1.0) except the optimiser (Adam at a tenth of adapt.lr's default, as fine-tuning) and ema."""
    epochs: int = Field(10, ge=1, le=100_000, description="target-phase epochs (an epoch: one pass over the larger set)")
    lr: float = Field(1e-4, gt=0, le=1, description="Adam learning rate of the feature extractor")
    cls_weight: float = Field(0.3, ge=0, description="weight of the centroid pseudo-label cross-entropy")
    ent_weight: float = Field(1.0, ge=0, description="weight of information maximisation")
    ema: float = Field(0.99, ge=0, lt=1, description="score an EMA of the weights (0: the weights themselves)")


class FixMatchConfig(Section):
    """FixMatch (Sohn et al., 2020): threshold and weight are the paper's; mu is set by the CPU budget."""
    threshold: float = Field(0.95, gt=0, lt=1, description="weak-view confidence an unlabelled image needs")
    unlabelled_weight: float = Field(1.0, ge=0)
    mu: int = Field(3, ge=1, le=16, description="unlabelled images per labelled one in a step (paper: 7)")
    cutout: float = Field(0.5, ge=0, le=1, description="side of the strong view's cutout square, a fraction")
    ema: float = Field(0.999, ge=0, lt=1, description="score an EMA of the weights (0: the weights themselves)")
    strong: AugmentConfig = AugmentConfig(translate=0.15, rotate_deg=30.0, scale=0.25, shear_deg=30.0, noise=0.1)


class AdaMatchConfig(Section):
    """AdaMatch (Berthelot et al., 2022): the paper's τ, EMA and ramp; mu set by the CPU budget. Its strong
    view is FixMatch's (fixmatch.strong, fixmatch.cutout)."""
    threshold: float = Field(0.9, gt=0, le=1, description="relative confidence threshold: a pseudo-label counts "
                             "when its confidence is ≥ threshold × the mean top-1 confidence on weak source views")
    unlabelled_weight: float = Field(1.0, ge=0)
    mu: int = Field(1, ge=1, le=16, description="target images per source image in a step (paper: 3)")
    warmup: float = Field(0.5, ge=0, le=1, description="share of training over which the unlabelled weight "
                          "ramps up from 0 (a half cosine)")
    ema: float = Field(0.999, ge=0, lt=1, description="score an EMA of the weights (0: the weights themselves)")


class AdaptConfig(Section):
    # Every variant, its data and its note: vaeflow/variants.py (the registry). Opt-in ones: see `default` there.
    variants: list[Literal[registry.NAMES]] = list(registry.DEFAULT)
    epochs: int = Field(60, ge=1, le=100_000)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0, le=1)
    weight_decay: float = Field(1e-4, ge=0)
    labels_per_class: int = Field(5, ge=1)
    head_hidden: int = Field(128, ge=1)
    repeats: int = Field(3, ge=1, le=100, description="seeds per variant; accuracies are reported as mean ± std")
    backbone: Literal["vae_encoder", "lenet", "convnet"] = Field(
        "vae_encoder", description="classifier trunk: a copy of the VAE encoder, LeNet (warm-started "
        "from the VAE when vae.arch=lenet, with LeNet's dropout), or convnet (French et al.'s deeper digit "
        "trunk, vaeflow/models/convnet.py; random initialisation only: adapt.warm_start=false)")
    width: int = Field(1, ge=1, le=8, description="channel multiplier of the convnet trunk (1: French et al.'s "
                       "32-64-64; 2 costs ~3× a step); backbone=convnet only")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="on every supervised cross-entropy (SHOT uses 0.1)")
    standardize: bool = Field(True, description="per-image zero mean and unit std inside the classifier, at "
                              "training and test time: removes each domain's brightness and contrast")
    feature_bn: bool = Field(True, description="a BatchNorm on the trunk's features before the head; source and "
                             "target batches pass through it separately, so in training each domain is normalised by its own "
                             "batch statistics (at test time: the running averages; mean_teacher's teacher sees "
                             "only unlabelled target batches, so its averages are the target's)")
    warm_start: bool = Field(True, description="start the pretrained variants from the VAE encoder; false: "
                             "every variant from a random initialisation (the pretraining ablation)")
    layer_bn: bool = Field(True, description="a BatchNorm after every convolution / hidden linear layer of the "
                           "trunk; source and target batches pass through it separately")
    bn_init: Literal["identity", "fresh"] = Field(
        "identity", description="layer_bn in a warm-started trunk: each BatchNorm starts as the identity on the "
        "training images (the pretrained function is kept), or fresh (γ=1, β=0)")
    selection: Literal["last", "source_val"] = Field(
        "last", description="which epoch's weights are scored: the last, or the best on source validation "
        "(vaeflow/training/model_selection.py); never a target label")
    on_flag: Literal["warn", "fallback"] = Field(
        "fallback", description="a run the label-free source-retention check flags (it no longer reads the "
        "source, so its target labels may be permuted): warn only, or also score it as the nearest unflagged "
        "network up its chain, e.g. source_only's run for shot (vaeflow/training/health.py); reads source labels only")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="arithmetic of the training steps: fp32, or bf16 autocast (convolutions and linear "
        "layers in bfloat16; weights, optimiser, BatchNorm statistics, losses and scoring in float32): ~1.3-1.6x "
        "faster steps on CPUs with AVX512-BF16/AMX (bench/RESULTS_speed.md), at some accuracy per epoch "
        "(bench/RESULTS.md); refused where bf16 is not native")
    checkpoint_every_s: float = Field(10.0, ge=0, description="checkpoint each run at most this often (and "
                                      "after its last epoch); 0: every epoch. Does not change results: " + CKPT_WHY)
    trace: bool = Field(False, description="log the target test accuracy after every epoch, for the stability "
                        "report only (it never reaches the selection rule); costs one target pass per epoch")
    workers: int = Field(0, ge=0, le=256, description="processes that train the stage's independent runs "
                         "side by side (tasks/adapt_parallel.py); 0: one per usable core on CPU (cores // threads), "
                         "1 on a GPU. Results are the same for any value")
    # intensity_flip: 0.5 was adopted by a rule fixed before its runs (bench/cpu_runs.sh, wave 53: the few-label mean
    # teacher on printed digits of both polarities 24.6 → 54.8 %, the development chains held), then cost the default
    # flow, whose digits are all light on dark, 3-40 points; auto gives 0.5 on every target the rule read and 0 there
    # (bench/RESULTS.md). The class's own default stays 0 (off), as the fixmatch strong view's does.
    augment: AugmentConfig = AugmentConfig(intensity_flip="auto")
    RUN_ONLY = frozenset({"trace", "workers", "on_flag", "checkpoint_every_s"})  # on_flag: scoring, not training
    dann: DANNConfig = DANNConfig()
    self_training: SelfTrainingConfig = SelfTrainingConfig()
    mean_teacher: MeanTeacherConfig = MeanTeacherConfig()
    shot: ShotConfig = ShotConfig()
    fixmatch: FixMatchConfig = FixMatchConfig()
    adamatch: AdaMatchConfig = AdaMatchConfig()

    @field_validator("variants")
    @classmethod
    def _some_variants_once(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError("list at least one variant, each once")
        for name in v:
            parent = registry.BY_NAME[name].continues
            if parent and (parent not in v or v.index(parent) > v.index(name)):
                raise ValueError(f"{name} continues each {parent} run, so list '{parent}' before '{name}'")
        return v


# Hyperparameters tune.search_space may name, and the section each belongs to (pretrain.use_tuned applies them).
