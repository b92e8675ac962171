"""Gradient reversal, the DANN schedule, and warm-starting classifiers from a VAE encoder."""
from __future__ import annotations

import math

import pytest
import torch

from vaeflow.models.classifier import Classifier, classifier_from_vae, dann_lambda, grad_reverse
from vaeflow.models.vae import VAE


@pytest.mark.parametrize("lambd", [0.0, 0.37, 2.5])
def test_grad_reverse_flips_and_scales_gradient(lambd):
    torch.manual_seed(0)
    x0 = torch.randn(5, 3, dtype=torch.float64)
    a, b = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    f = lambda t: (torch.sin(t) * t.pow(2)).sum() + t[0].prod()  # noqa: E731  any nonlinear loss
    y = grad_reverse(a, lambd)
    torch.testing.assert_close(y, x0, rtol=0, atol=0)  # forward is the identity
    f(y).backward()
    f(b).backward()
    torch.testing.assert_close(a.grad, -lambd * b.grad, rtol=1e-12, atol=0)


def test_dann_lambda_schedule():
    assert dann_lambda(0.0) == 0.0
    ps = [i / 100 for i in range(101)]
    vals = [dann_lambda(p, gamma=10.0, lambda_max=0.7) for p in ps]
    assert all(b > a for a, b in zip(vals, vals[1:]))
    assert vals[-1] == pytest.approx(0.7 * (2 / (1 + math.exp(-10)) - 1), rel=1e-12)
    assert dann_lambda(50.0, lambda_max=0.7) == pytest.approx(0.7, rel=1e-12)
    assert dann_lambda(0.5, gamma=10.0) == pytest.approx(math.tanh(2.5), rel=1e-12)  # 2/(1+e^-x)-1 = tanh(x/2)


def _vae():
    torch.manual_seed(0)
    return VAE((1, 8, 8), 4, [32, 16], "bernoulli")


def test_pretrained_trunk_is_an_exact_independent_copy():
    vae = _vae()
    clf = classifier_from_vae(vae, vae.spec, n_classes=10, head_hidden=8, pretrained=True)
    src, dst = vae.encoder_trunk.state_dict(), clf.trunk.state_dict()
    assert src.keys() == dst.keys()
    for k in src:
        torch.testing.assert_close(dst[k], src[k], rtol=0, atol=0)
        assert dst[k].data_ptr() != src[k].data_ptr()
    x = torch.rand(6, 1, 8, 8)
    torch.testing.assert_close(clf.features(x), vae.encoder_trunk(x), rtol=0, atol=0)
    assert clf(x).shape == (6, 10) and clf.features(x).shape == (6, vae.feature_dim)
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    with torch.no_grad():
        for p in clf.trunk.parameters():
            p.add_(1.0)
    opt = torch.optim.SGD(clf.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(clf(x), torch.arange(6)).backward()
    opt.step()
    for k, v in vae.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_scratch_trunk_has_same_architecture_but_fresh_weights():
    vae = _vae()
    clf = classifier_from_vae(None, vae.spec, n_classes=10, head_hidden=8, pretrained=False)
    src, dst = vae.encoder_trunk.state_dict(), clf.trunk.state_dict()
    assert {k: v.shape for k, v in src.items()} == {k: v.shape for k, v in dst.items()}
    assert all(not torch.equal(src[k], dst[k]) for k in src)
    with pytest.raises(ValueError, match="pretrained"):
        classifier_from_vae(None, vae.spec, 10, 8, pretrained=True)


def test_domain_head_reverses_gradient_into_trunk():
    torch.manual_seed(0)
    vae = _vae()
    clf = classifier_from_vae(vae, vae.spec, n_classes=10, head_hidden=8, domain_hidden=6)
    x, d = torch.rand(8, 1, 8, 8), torch.tensor([0.0, 1.0] * 4)
    lam = 0.4

    def trunk_and_head_grads(reverse: bool):
        clf.zero_grad()
        f = clf.features(x)
        logits = clf.domain_logits(f, lam) if reverse else clf.domain_head(f).squeeze(-1)
        assert logits.shape == (8,)
        torch.nn.functional.binary_cross_entropy_with_logits(logits, d).backward()
        return ([p.grad.clone() for p in clf.trunk.parameters()],
                [p.grad.clone() for p in clf.domain_head.parameters()])

    trunk_rev, head_rev = trunk_and_head_grads(True)
    trunk_ref, head_ref = trunk_and_head_grads(False)  # the same loss without the reversal layer
    for g, r in zip(head_rev, head_ref):   # the domain head itself still descends the domain loss
        torch.testing.assert_close(g, r)
    for g, r in zip(trunk_rev, trunk_ref):  # the trunk gets -lambda times the plain gradient
        torch.testing.assert_close(g, -lam * r)
    with pytest.raises(RuntimeError, match="domain head"):
        Classifier(clf.trunk, clf.feature_dim, 10, 8).domain_logits(clf.features(x), lam)


@pytest.mark.parametrize("shape, features", [((1, 28, 28), 1024), ((3, 32, 32), 1600), ((3, 16, 20), 64 * 1 * 2)])
def test_convnet_trunk_sizes_for_any_channels_and_size(shape, features):
    """French et al.'s digit trunk: 1,024 features at 28×28 as in their mnist-bn-32-64-256; the size rule
    ((s−4)//2 − 4)//2 per side holds for colour and non-square images too."""
    torch.manual_seed(0)
    clf = classifier_from_vae(None, {"input_shape": shape}, 10, 256, pretrained=False, backbone="convnet",
                              layer_bn=True, standardize=True, feature_bn=True)
    assert clf.trunk.feature_dim == features
    out = clf(torch.rand(4, *shape))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in clf.trunk.modules())
    assert n_bn == 3  # layer_bn: one after each of the three convolutions


def test_convnet_width_multiplies_every_convolution():
    """adapt.width=2: 64-128-128 channels, twice the features, and the same function of the input's shape."""
    torch.manual_seed(0)
    narrow, wide = (classifier_from_vae(None, {"input_shape": (1, 28, 28)}, 10, 256, pretrained=False,
                                        backbone="convnet", layer_bn=True, width=k) for k in (1, 2))
    convs = [m for m in wide.trunk.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 128] and wide.trunk.feature_dim == 2 * narrow.trunk.feature_dim
    assert wide(torch.rand(4, 1, 28, 28)).shape == (4, 10)
    with pytest.raises(ValueError, match="convnet trunk only"):
        classifier_from_vae(None, {"input_shape": (1, 28, 28)}, 10, 64, pretrained=False, backbone="lenet", width=2)


def test_convnet_refuses_small_images_and_a_warm_start():
    with pytest.raises(ValueError, match="at least 16×16"):
        classifier_from_vae(None, {"input_shape": (1, 12, 12)}, 10, 64, pretrained=False, backbone="convnet")
    with pytest.raises(ValueError, match="warm_start=false"):
        classifier_from_vae(_vae(), {"input_shape": (1, 28, 28)}, 10, 64, pretrained=True, backbone="convnet")


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 20, 31), (1, 33, 16)])
def test_lenet_classifier_warm_starts_from_a_lenet_vae_of_any_image_size(shape):
    """LeNet's size rule ((s − 4)//2 − 4)//2 applies per side, so non-square images work in the VAE (encoder
    and decoder) and in the classifier it warm-starts."""
    torch.manual_seed(0)
    vae = VAE(shape, 4, [], "gaussian", arch="lenet")
    clf = classifier_from_vae(vae, vae.spec, 10, 32, pretrained=True, backbone="lenet")
    h, w = (((s - 4) // 2 - 4) // 2 for s in shape[1:])
    assert clf.trunk.feature_dim == vae.feature_dim == 50 * h * w
    for k, v in vae.encoder_trunk.state_dict().items():
        assert torch.equal(clf.trunk.state_dict()[k], v)
    x = torch.rand(3, *shape)
    assert clf(x).shape == (3, 10) and vae.decode(torch.randn(3, 4)).shape == (3, 2 * math.prod(shape))
