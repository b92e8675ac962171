"""The one schema for params.yaml, shared by the CLI, `dvc repro`, the Prefect flow and Ray jobs.

Everything is validated before any stage starts: unknown keys (with the nearest valid key suggested),
types, ranges and contradictions between sections. Errors carry the dotted key path.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vaeflow import variants as registry

DATASETS = ("digits", "digits_shifted", "mnist", "usps", "fashion_mnist")


class ConfigError(ValueError):
    """A params file or override that does not validate. The message names the key path."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # .inf/.nan are never a setting


class ShiftConfig(Section):
    """How `digits_shifted` is made from held-out digits images (see vaeflow/data/shift.py)."""
    rotation_deg: float = Field(35.0, ge=0, le=180)
    thicken: int = Field(1, ge=0, le=3, description="grey dilation passes")
    contrast: float = Field(0.6, gt=0, le=1, description="ink scaled to this peak")
    background: float = Field(0.25, ge=0, lt=1, description="background raised to this level")
    clutter: float = Field(0.1, ge=0, le=1, description="fraction of pixels with random specks")


class DataConfig(Section):
    source: str = "digits"
    target: str = "digits_shifted"
    root: str = "../shared/data"
    likelihood: Literal["gaussian", "bernoulli"] = "gaussian"
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.25, gt=0, lt=0.5)
    source_fraction: float = Field(
        0.5, gt=0, lt=1, description="when source and target are one dataset: the source's share of its images")
    pools: Literal["disjoint", "shared"] = Field(
        "disjoint", description="when source and target are one dataset: split it disjointly (source_fraction), "
        "or give both domains all of it (semi-supervised protocol: the few-label variants then see the "
        "whole training set and the whole official test set; variants that read source labels are refused)")
    subset: int | None = Field(None, ge=20, description="cap on training images per domain (smoke runs)")
    eval_subset: int | None = Field(None, ge=20, description="cap on val and test images per domain (costly evals)")
    test_split: Literal["official", "random"] = Field(
        "official", description="official: keep a dataset's own test set (MNIST, USPS, folder:, npz:)")
    image_size: int | None = Field(None, ge=4, le=64, description="common side length; None keeps native size")
    channels: Literal[1, 3] = Field(1, description="1: RGB becomes luma; 3: grey is repeated")
    verify_md5: bool = Field(True, description="check dataset files against their published md5")
    download: bool = Field(True, description="fetch missing files with torchvision when it is importable")
    shift: ShiftConfig = ShiftConfig()

    @field_validator("source", "target")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        if v in DATASETS or v.startswith(("folder:", "npz:")):
            return v
        near = difflib.get_close_matches(v, DATASETS, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise ValueError(f"unknown dataset '{v}'{hint}; choose one of {', '.join(DATASETS)}, folder:PATH or npz:PATH")


class GMMConfig(Section):
    family: Literal["auto", "gaussian", "bernoulli"] = Field(
        "auto", description="auto follows data.likelihood; naming the other family is an error")
    n_components: int | list[int] = Field(10, description="K, or a list of K to choose from by BIC")
    covariance_type: Literal["full", "diag", "tied", "spherical"] = "full"
    reg_covar: float = Field(1e-3, gt=0)
    max_iter: int = Field(200, ge=1)
    tol: float = Field(1e-4, gt=0)
    n_init: int = Field(1, ge=1)
    chunk_size: int = Field(1024, ge=1, description="Gaussian EM: images per E-step chunk; memory is the data "
                            "plus O(chunk_size x D), whatever the number of images")

    @field_validator("n_components")
    @classmethod
    def _positive_k(cls, v: int | list[int]) -> int | list[int]:
        ks = v if isinstance(v, list) else [v]
        if not ks or any(k < 1 or k > 1000 for k in ks):
            raise ValueError("every K must be in 1..1000 and the list must not be empty")
        return v


class VAEConfig(Section):
    arch: Literal["mlp", "conv", "lenet"] = Field(
        "mlp", description="lenet: LeNet's conv trunk as encoder (hidden unused), a mirrored decoder")
    latent_dim: int = Field(16, ge=1, le=1024)
    hidden: list[int] = Field(default_factory=lambda: [256, 128])
    activation: Literal["relu", "tanh", "elu", "gelu"] = "relu"
    min_logvar: float = Field(-9.0, le=0, description="floor of the Gaussian decoder's log-variance")
    decoder_variance: Literal["conditional", "shared"] = Field(
        "conditional", description="Gaussian decoder: variance decoded from z per pixel, or one learned per pixel")
    prior: Literal["normal", "vampprior"] = Field(
        "normal", description="vampprior: p(z) = mean of q(z|u_k) over learned pseudo-inputs (Tomczak & Welling)")
    n_pseudo_inputs: int = Field(500, ge=1, le=10_000, description="K pseudo-inputs of the VampPrior")

    @field_validator("hidden")
    @classmethod
    def _hidden_sizes(cls, v: list[int]) -> list[int]:
        if not v or any(h < 1 or h > 8192 for h in v):
            raise ValueError("hidden must be a non-empty list of sizes in 1..8192")
        return v


class PretrainConfig(Section):
    epochs: int = Field(150, ge=1, le=100_000)
    batch_size: int = Field(128, ge=1, le=65_536)
    lr: float = Field(1e-3, gt=0, le=1)
    beta: float = Field(1.0, gt=0)
    kl_warmup_epochs: int = Field(10, ge=0)
    patience: int = Field(20, ge=1, description="epochs without improvement of the validation bound "
                          "(-ELBO, or -IWAE_k for objective iwae) before stopping")
    max_minutes: float | None = Field(None, gt=0, description="stop after the epoch that uses up this "
                                         "wall-clock budget (like Lightning's max_time); null: no limit")
    use_tuned: bool = False
    objective: Literal["elbo", "iwae"] = Field("elbo", description="iwae: Burda et al.'s k-sample bound")
    k: int = Field(1, ge=1, le=5000, description="importance samples per image for objective iwae")
    lr_schedule: Literal["constant", "burda"] = Field(
        "constant", description="burda: stage i = 0..7 runs 3^i epochs at lr·10^(-i/7), then holds lr/10")
    capture: bool = Field(False, description="CUDA: replay the training step as a CUDA graph (no effect on CPU)")
    checkpoint_every_s: float = Field(0.0, ge=0, description="checkpoint at most this often (and after the "
                                      "last epoch); 0: every epoch. Does not change results")

    @model_validator(mode="after")
    def _k_for_elbo(self) -> PretrainConfig:
        if self.objective == "elbo" and self.k != 1:
            raise ValueError("k > 1 needs objective: iwae (the ELBO is the one-sample bound)")
        return self


class EvalConfig(Section):
    iwae_samples: int = Field(1000, ge=1, le=100_000)
    iwae_chunk: int = Field(250, ge=1, description="importance samples processed at once")
    batch_size: int = Field(256, ge=1)
    latent_plot: Literal["pca", "tsne"] = "pca"


class AEConfig(Section):
    """Stage `autoencoders`: a plain (ae) and a denoising (dae) autoencoder on the VAE's architecture, latent
    size and data model (vae.*), trained on the reconstruction log-likelihood with early stopping."""
    epochs: int = Field(100, ge=1, le=100_000)
    batch_size: int = Field(128, ge=1, le=65_536)
    lr: float = Field(1e-3, gt=0, le=1)
    patience: int = Field(20, ge=1, description="epochs without val reconstruction improvement before stopping")
    noise: float = Field(0.2, gt=0, le=10, description="dae: std of the Gaussian noise added to its input "
                         "(intensities in [0, 1]); drawn from a generator seeded by `seed`")


class SamplersConfig(Section):
    """Stage `samplers`: latent samplers for the VAE, AE and DAE, and one sample-quality measure for all."""
    latent_components: list[int] = Field(
        default_factory=lambda: [1, 2, 5, 10, 20], description="K of the latent Gaussian mixture, chosen by BIC")
    classifier_hidden: list[int] = Field(default_factory=lambda: [256, 64], description="feature classifier: an "
                                         "MLP trained on source training labels; features = its last hidden layer")
    classifier_epochs: int = Field(30, ge=1, le=10_000)
    draws: int = Field(3, ge=1, le=100, description="independent sample sets per sampler: Fréchet mean ± std")
    interpolations: int = Field(32, ge=1, le=10_000, description="pairs of test codes interpolated linearly")
    interp_steps: int = Field(9, ge=3, le=64, description="images along each interpolation, both ends included")

    @field_validator("latent_components", "classifier_hidden")
    @classmethod
    def _sizes(cls, v: list[int]) -> list[int]:
        if not v or any(k < 1 or k > 8192 for k in v):
            raise ValueError("must be a non-empty list of sizes in 1..8192")
        return v


class DANNConfig(Section):
    gamma: float = Field(10.0, gt=0, description="λ_p = 2/(1+exp(-γ p)) - 1 (Ganin et al.)")
    lambda_max: float = Field(1.0, gt=0)
    domain_hidden: int = Field(64, ge=1)


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


class MeanTeacherConfig(Section):
    """Self-ensembling (French et al., 2018): an EMA teacher, confidence-thresholded consistency."""
    ema: float = Field(0.99, gt=0, lt=1, description="teacher = ema·teacher + (1-ema)·student after each step")
    threshold: float = Field(0.968, ge=0, lt=1, description="teacher confidence an unlabelled image needs "
                             "to count in the consistency loss (French et al.'s 0.968)")
    consistency_weight: float = Field(3.0, ge=0, description="weight of the squared-difference consistency loss")
    class_balance: float = Field(0.005, ge=0, description="weight of the class-balance term (BCE of the batch's "
                                 "mean prediction against uniform)")


class ShotConfig(Section):
    """SHOT's target phase (Liang et al., 2020), continuing source_only: defaults are SHOT's (cls_par 0.3,
    ent_par 1.0) except the optimiser (Adam at a tenth of adapt.lr's default, as fine-tuning) and ema."""
    epochs: int = Field(5, ge=1, le=100_000, description="target-phase epochs (an epoch: one pass over the larger set)")
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
    backbone: Literal["vae_encoder", "lenet"] = Field(
        "vae_encoder", description="classifier trunk: a copy of the VAE encoder, or LeNet (warm-started "
        "from the VAE when vae.arch=lenet, with LeNet's dropout)")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="on every supervised cross-entropy (SHOT uses 0.1)")
    standardize: bool = Field(True, description="per-image zero mean and unit std inside the classifier, at "
                              "training and test time: removes each domain's brightness and contrast")
    feature_bn: bool = Field(True, description="a BatchNorm on the trunk's features before the head; source and "
                             "target batches pass through it separately, so in training each domain is normalised by its own "
                             "batch statistics (at test time: the running averages; mean_teacher's teacher sees "
                             "only unlabelled target batches, so its averages are the target's)")
    warm_start: bool = Field(True, description="start the pretrained variants from the VAE encoder; false: "
                             "every variant from a random initialisation (the pretraining ablation)")
    layer_bn: bool = Field(False, description="a BatchNorm after every convolution / hidden linear layer of the "
                           "trunk; source and target batches pass through it separately")
    selection: Literal["last", "source_val"] = Field(
        "last", description="which epoch's weights are scored: the last, or the best on source validation "
        "(vaeflow/training/model_selection.py); never a target label")
    trace: bool = Field(False, description="log the target test accuracy after every epoch, for the stability "
                        "report only (it never reaches the selection rule); costs one target pass per epoch")
    augment: AugmentConfig = AugmentConfig()
    dann: DANNConfig = DANNConfig()
    self_training: SelfTrainingConfig = SelfTrainingConfig()
    mean_teacher: MeanTeacherConfig = MeanTeacherConfig()
    shot: ShotConfig = ShotConfig()
    fixmatch: FixMatchConfig = FixMatchConfig()

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
TUNABLE = {"latent_dim": "vae", "hidden": "vae", "lr": "pretrain", "beta": "pretrain", "batch_size": "pretrain"}


class TuneConfig(Section):
    num_samples: int = Field(4, ge=1, description="samples of the search space (each grid point this many times)")
    max_concurrent_trials: int = Field(2, ge=1)
    cpus_per_trial: float = Field(1, gt=0, description="also each trial's torch threads (at least 1)")
    gpus_per_trial: float = Field(0, ge=0, description="fractional shares a GPU: 0.25 = four trials per GPU")
    max_epochs: int = Field(30, ge=1, description="ASHA's max_t: epochs of a trial that is never stopped")
    grace_period: int = Field(3, ge=1, description="epochs before ASHA may stop a trial")
    reduction_factor: float = Field(2, gt=1)
    max_failures: int = Field(2, ge=0, description="retries of a crashed trial, from its last checkpoint")
    keep_checkpoints: int = Field(10, ge=2, description="per trial. Tune saves the experiment state whenever a "
                                  "trial has written this many since the last save: more means less driver work")
    checkpoint_every_s: float = Field(5.0, ge=0, description="a trial hands Tune a checkpoint at most this often "
                                      "(and after its last epoch); metrics go every epoch. 0: every epoch")
    tensorboard: bool = Field(False, description="also write TensorBoard event files for every report (Tune's "
                              "TBXLoggerCallback: driver work on every result)")
    storage_path: str = Field("runs/tune", description="local dir (relative to the project) or a URI, e.g. s3://b/p")
    experiment_name: str = Field("vae_tune", pattern=r"^[A-Za-z0-9_.-]+$")
    search_space: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("search_space")
    @classmethod
    def _space(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from vaeflow.tuning.space import normalize_search_space

        for name in v:
            if name not in TUNABLE:
                raise ValueError(f"'{name}' cannot be tuned; tunable: {', '.join(TUNABLE)}")
        return normalize_search_space(v, _tunable_value)

    @model_validator(mode="after")
    def _consistent(self) -> TuneConfig:
        if self.grace_period > self.max_epochs:
            raise ValueError("grace_period must not exceed max_epochs")
        if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise ValueError("gpus_per_trial above 1 must be a whole number of GPUs")
        return self


def _tunable_value(name: str, value: Any) -> Any:
    """`value` as params.yaml's schema types `name` (so 1e-5, which YAML reads as a string, is a float)."""
    section = {"vae": VAEConfig, "pretrain": PretrainConfig}[TUNABLE[name]]
    try:
        return getattr(section.model_validate({name: value}), name)
    except ValidationError as e:
        raise ValueError(f"{name}: {value!r} is not a valid {TUNABLE[name]}.{name} "
                         f"({e.errors()[0]['msg'].removeprefix('Value error, ')})") from None


class Config(Section):
    seed: int = Field(0, ge=0, le=2**31 - 1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(1, ge=0, le=512, description="torch intra-op threads; 0 = all cores")
    data: DataConfig = DataConfig()
    gmm: GMMConfig = GMMConfig()
    vae: VAEConfig = VAEConfig()
    pretrain: PretrainConfig = PretrainConfig()
    eval: EvalConfig = EvalConfig()
    ae: AEConfig = AEConfig()
    samplers: SamplersConfig = SamplersConfig()
    adapt: AdaptConfig = AdaptConfig()
    tune: TuneConfig = TuneConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        fam = self.gmm.family
        if fam != "auto" and fam != self.data.likelihood:
            raise ValueError(f"gmm.family={fam} contradicts data.likelihood={self.data.likelihood}: "
                             "both models must be scored under the same data model")
        if self.eval.iwae_chunk > self.eval.iwae_samples:
            raise ValueError("eval.iwae_chunk must not exceed eval.iwae_samples")
        warm = [v for v in self.adapt.variants if registry.lineage(v)[-1].init == "pretrained"
                and v != "latent_spreading"]
        if self.adapt.backbone == "lenet" and self.vae.arch != "lenet" and self.adapt.warm_start and warm:
            raise ValueError("adapt.backbone=lenet warm-starts from the VAE encoder, which needs vae.arch=lenet")
        if self.data.pools == "shared" and self.data.source == self.data.target:
            reads_source = [v for v in self.adapt.variants if registry.reads_source_labels(v)]
            if reads_source:
                raise ValueError(f"data.pools=shared makes the source's labels the target's: "
                                 f"adapt.variants {reads_source} would read target labels; use the few-label "
                                 f"variants ({', '.join(n for n in registry.NAMES if not registry.reads_source_labels(n))}) "
                                 "or pools=disjoint")
        if self.data.val_fraction + self.data.test_fraction >= 0.8:
            raise ValueError("data.val_fraction + data.test_fraction must leave at least 20% for training")
        return self

    def section(self, name: str) -> dict[str, Any]:
        """A section as plain data, e.g. for fingerprints and reports."""
        return self.model_dump(mode="json")[name] if name in type(self).model_fields else {}


# ---------------------------------------------------------------------------------------------- loading

def _all_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _all_keys(ann, prefix + name + ".")
    return keys


def _format(err: ValidationError) -> str:
    lines = []
    valid = _all_keys(Config)
    for e in err.errors():
        loc = [str(p) for p in e["loc"] if not str(p).startswith(("function-", "literal[", "int", "list["))]
        path = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            near = difflib.get_close_matches(path, valid, n=1, cutoff=0.6)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            lines.append(f"{path}: unknown key{hint}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if not loc:  # a cross-section check: its message names the keys itself
                lines.append(msg)
            elif e["type"] == "value_error":
                lines.append(f"{path}: {msg}")
            else:
                lines.append(f"{path}: {msg} (got {e.get('input')!r})")
    return "invalid params:\n  " + "\n  ".join(dict.fromkeys(lines))


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b=3` -> (['a', 'b'], 3). Values are parsed as YAML so lists and numbers work."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like KEY=VALUE, e.g. vae.latent_dim=8")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override '{item}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"{key}: value '{raw}' is not valid YAML ({e.__class__.__name__})") from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for i, part in enumerate(path[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"{'.'.join(path[:i + 1])}: is a value, cannot set '{'.'.join(path)}'")
            node = nxt
        node[path[-1]] = value
    return raw


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice in one mapping is an error: plain YAML silently
    keeps the last one, so a pasted duplicate would override a setting without a word."""


def _no_duplicate_keys(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool)):
            continue  # unhashable keys: construct_mapping reports those itself
        if key in seen:
            raise yaml.constructor.ConstructorError("while reading a mapping", node.start_mark,
                                                    f"found key '{key}' twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)


def read_params_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if raw is None:
        raise ConfigError(f"{path}: file is empty; expected a mapping of params")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of params, got {type(raw).__name__}")
    return raw


def validate(raw: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format(e)) from None


def load_config(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Config:
    return validate(apply_overrides(read_params_file(path), list(overrides or [])))


# Where a schema default differs from params.yaml, and why (tests/test_docs.py fails on a difference not
# listed here). A schema default is what a params file that omits the key gets (presets, --params files);
# params.yaml's values were changed for the committed digits experiment after the schema was written.
DEFAULTS_DIFFER_FROM_PARAMS_YAML = {
    "data.shift": "params.yaml's milder shift (20°, contrast 0.8, ...) makes adaptation work on 540 target "
                  "images (commit dac7409); the schema keeps the original, stronger shift",
    "gmm.n_components": "params.yaml chooses K by BIC from a list (costs 4 fits); the schema's single K is cheap",
    "pretrain.epochs": "the digits default trains longer (500, early-stopped); 150 is the generic budget",
    "pretrain.patience": "params.yaml's 50 was measured better on digits (test NLL -66.1 -> -69.7 nats, 9f0bd3e)",
    "adapt.labels_per_class": "the digits default's few-label setting is 2 per class (20 target labels); a "
                              "setting of the problem, not of a method",
    "tune.search_space": "empty in the schema: a search space is named on purpose; params.yaml's is the README's",
}
