"""Per-layer BatchNorm with per-domain batches, and AdaBN's re-estimated target statistics, against direct
computations."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vaeflow.models.batchnorm import add_layer_bn, has_bn, reestimate_bn
from vaeflow.models.lenet import LeNetTrunk


def _net() -> nn.Module:
    torch.manual_seed(0)
    return add_layer_bn(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)))


def test_add_layer_bn_puts_a_batchnorm_after_every_conv_and_linear_and_keeps_their_weights():
    torch.manual_seed(0)
    trunk = LeNetTrunk(3, 28)
    w = trunk.conv1.weight.detach().clone()
    add_layer_bn(trunk)
    assert isinstance(trunk.conv1[1], nn.BatchNorm2d) and isinstance(trunk.conv2[1], nn.BatchNorm2d)
    assert torch.equal(trunk.conv1[0].weight, w)
    assert trunk(torch.rand(2, 3, 28, 28)).shape == (2, trunk.feature_dim)
    assert has_bn(trunk) and not has_bn(nn.Linear(2, 2))


def test_in_training_each_domain_batch_is_normalised_by_its_own_statistics():
    net = _net().train()
    bn = net[0][1]
    src = torch.randn(64, 1, 8, 8)
    tgt = 3 + 2 * torch.randn(64, 1, 8, 8)  # another domain: shifted and scaled
    for x in (src, tgt):
        out = bn(net[0][0](x))  # conv then its BatchNorm, one domain per call
        mean = out.mean(dim=(0, 2, 3))
        var = out.var(dim=(0, 2, 3), unbiased=False)
        assert torch.allclose(mean, torch.zeros(4), atol=1e-5)
        assert torch.allclose(var, torch.ones(4), atol=1e-3)


def test_adabn_sets_the_statistics_of_the_target_inputs_exactly():
    net = _net()
    x = 2 + 3 * torch.randn(301, 1, 8, 8)  # an odd size: chunks must not leave a batch of one behind
    reestimate_bn(net, x, batch_size=64)
    conv, bn1 = net[0][0], net[0][1]
    with torch.no_grad():
        h = conv(x).double()
    n = h.shape[0] * h.shape[2] * h.shape[3]
    mean = h.mean(dim=(0, 2, 3))
    var = ((h - mean[None, :, None, None]) ** 2).sum(dim=(0, 2, 3)) / (n - 1)
    assert torch.allclose(bn1.running_mean.double(), mean, atol=1e-5)
    assert torch.allclose(bn1.running_var.double(), var, rtol=1e-4)
    # the second BatchNorm: its inputs as the first layer, in training mode, passes them on
    bn2 = net[3][1]
    with torch.no_grad():
        net.train()
        feats = torch.cat([net[3][0](net[2](net[1](bn1(conv(c))))) for c in torch.tensor_split(x, 5)]).double()
    assert torch.allclose(bn2.running_mean.double(), feats.mean(0), atol=1e-4)
    assert torch.allclose(bn2.running_var.double(), feats.var(0, unbiased=True), rtol=1e-3)


def test_at_test_time_the_statistics_are_the_targets_and_batches_do_not_interact():
    net = _net()
    src, tgt = torch.randn(200, 1, 8, 8), 1 + torch.randn(200, 1, 8, 8)
    net.train()
    for _ in range(50):
        net(src)  # training on the source: running statistics drift to the source's
    reestimate_bn(net, tgt)
    net.eval()
    with torch.no_grad():
        whole = net(tgt)
        one_by_one = torch.cat([net(tgt[i:i + 1]) for i in range(len(tgt))])
    assert torch.allclose(whole, one_by_one, atol=1e-5)  # eval mode: running statistics, per image
    h = net[0][0](tgt).detach()
    assert np.allclose(net[0][1].running_mean.numpy(), h.mean(dim=(0, 2, 3)).numpy(), atol=1e-5)


def test_preserve_function_makes_inserted_batchnorms_the_identity_on_the_data():
    from vaeflow.models.batchnorm import preserve_function

    torch.manual_seed(1)
    plain = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU())
    x = 1.5 + torch.randn(4000, 6)
    with torch.no_grad():
        before = plain(x)
    import copy
    net = add_layer_bn(copy.deepcopy(plain))
    with torch.no_grad():
        fresh = net.train()(x[:1024])  # training normalises by batch statistics: pre-activations re-centred
    preserve_function(net, x)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), before, atol=1e-4)  # running statistics: exactly the identity
        assert torch.allclose(net.train()(x[:1024]), before[:1024], atol=0.05)  # batch statistics: close
    assert not torch.allclose(fresh, before[:1024], atol=0.1)  # fresh BatchNorms change the function
