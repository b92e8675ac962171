"""Digit classifiers built on a VAE encoder trunk, with DANN's gradient reversal (Ganin et al., 2016).

The trunk is the VAE's `encoder_trunk` (warm start, pretrained=True) or a fresh copy of the same
architecture (the 'scratch' variant), so the variants differ only in initialisation.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from vaeflow.models.convnet import ConvNetTrunk
from vaeflow.models.lenet import LeNetTrunk
from vaeflow.models.vae import VAE


class GradReverse(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by -lambd."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lambd: float) -> torch.Tensor:
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.lambd * grad, None


def grad_reverse(x: torch.Tensor, lambd: float) -> torch.Tensor:
    return GradReverse.apply(x, lambd)


def standardize(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each image to zero mean and unit standard deviation over its pixels and channels: a domain's overall
    brightness and contrast (USPS's thick strokes, a colour dataset's exposure) no longer reach the trunk."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    flat = x.flatten(1)
    return (x - flat.mean(1).view(shape)) / (flat.std(1, unbiased=False).view(shape) + eps)


class Classifier(nn.Module):
    """trunk → (BatchNorm) → MLP head; optionally a domain head behind gradient reversal (DANN).

    standardize: per-image standardisation as the first step, at training and test time alike.
    feature_bn: BatchNorm1d on the features. Callers pass source and target batches separately, so during
    training each domain is normalised by its own statistics (French et al.'s separate-batch BN)."""

    def __init__(self, trunk: nn.Module, feature_dim: int, n_classes: int, head_hidden: int,
                 domain_hidden: int | None = None, standardize: bool = False, feature_bn: bool = False):
        super().__init__()
        self.trunk = trunk
        self.feature_dim = feature_dim
        self.standardize = standardize
        self.bn = nn.BatchNorm1d(feature_dim) if feature_bn else None
        self.head = nn.Sequential(nn.Linear(feature_dim, head_hidden), nn.ReLU(), nn.Linear(head_hidden, n_classes))
        self.domain_head = (nn.Sequential(nn.Linear(feature_dim, domain_hidden), nn.ReLU(), nn.Linear(domain_hidden, 1))
                            if domain_hidden is not None else None)

    @property
    def n_classes(self) -> int:
        return self.head[-1].out_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.trunk(standardize(x) if self.standardize else x)
        return self.bn(f) if self.bn is not None else f

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits in float32 whatever the autocast precision (adapt.precision): the softmaxes,
        confidence thresholds and entropies the methods compute from them stay in full precision."""
        return self.head(features).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(x))

    def domain_logits(self, features: torch.Tensor, lambd: float) -> torch.Tensor:
        """Logit of "x is from the target domain". The reversal makes the trunk *maximise* the domain loss
        the domain head minimises, pushing source and target features together. The head runs in float32
        under any autocast (adapt.precision=bf16): it is the adversary, and the gradient it sends back
        through the reversal is all that aligns the domains, so it gets full precision as the class logits
        do. (A no-op in fp32.)"""
        if self.domain_head is None:
            raise RuntimeError("this Classifier has no domain head; build it with domain_hidden=... for DANN")
        with torch.autocast(features.device.type, enabled=False):
            return self.domain_head(grad_reverse(features.float(), lambd)).squeeze(-1)


def classifier_from_vae(vae: VAE | None, spec: dict, n_classes: int, head_hidden: int,
                        domain_hidden: int | None = None, pretrained: bool = True,
                        backbone: str = "vae_encoder", layer_bn: bool = False, width: int = 1,
                        **options: bool) -> Classifier:
    """Warm start (pretrained=True): a deep copy of `vae.encoder_trunk`, so training the classifier never
    touches the VAE. pretrained=False: a freshly initialised trunk of the architecture `spec` describes
    (drawn from torch's global RNG; seed it first for reproducibility).

    backbone='lenet': a LeNet trunk with LeNet's dropout; pretrained=True copies the VAE encoder's weights
    into it, which needs a VAE built with arch='lenet' (the same layers). backbone='convnet': French et
    al.'s deeper digit trunk (vaeflow/models/convnet.py), random initialisation only, `width` times its
    channels. `options`: Classifier's standardize and feature_bn. layer_bn: a BatchNorm after every
    convolution / hidden linear layer of the trunk, added after the warm start (vaeflow/models/batchnorm.py)."""
    if width != 1 and backbone != "convnet":
        raise ValueError(f"adapt.width={width} widens the convnet trunk only (got backbone {backbone!r})")
    clf = _classifier(vae, spec, n_classes, head_hidden, domain_hidden, pretrained, backbone, width, **options)
    if layer_bn:
        from vaeflow.models.batchnorm import add_layer_bn

        add_layer_bn(clf.trunk)
    return clf


def _classifier(vae, spec, n_classes, head_hidden, domain_hidden, pretrained, backbone, width,
                **options) -> Classifier:
    if backbone == "convnet":
        if pretrained:
            raise ValueError("adapt.backbone=convnet has no VAE of its architecture to warm-start from; "
                             "set adapt.warm_start=false")
        c, h, w = spec["input_shape"]
        trunk = ConvNetTrunk(c, h, w, width=width)
        return Classifier(trunk, trunk.feature_dim, n_classes, head_hidden, domain_hidden, **options)
    if backbone == "lenet":
        c, h, w = spec["input_shape"]
        trunk = LeNetTrunk(c, (h, w))
        if pretrained:
            if vae is None or spec.get("arch") != "lenet":
                raise ValueError("adapt.backbone=lenet warm-starts from the VAE encoder, which needs vae.arch=lenet "
                                 f"(got {spec.get('arch')!r})")
            trunk.load_state_dict(vae.encoder_trunk.state_dict())
        return Classifier(trunk, trunk.feature_dim, n_classes, head_hidden, domain_hidden, **options)
    if backbone != "vae_encoder":
        raise ValueError(f"backbone must be 'vae_encoder', 'lenet' or 'convnet', got {backbone!r}")
    if pretrained:
        if vae is None:
            raise ValueError("pretrained=True needs a trained VAE to copy the encoder trunk from")
        trunk, feature_dim = copy.deepcopy(vae.encoder_trunk), vae.feature_dim
    else:
        fresh = VAE(**spec)
        trunk, feature_dim = fresh.encoder_trunk, fresh.feature_dim
    return Classifier(trunk, feature_dim, n_classes, head_hidden, domain_hidden, **options)


def dann_lambda(progress: float, gamma: float = 10.0, lambda_max: float = 1.0) -> float:
    """Ganin et al.'s schedule lambda_max * (2 / (1 + exp(-gamma p)) - 1): 0 at p=0, -> lambda_max, so the
    noisy early domain gradients do not wreck the freshly initialised heads."""
    return lambda_max * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)
