"""Model selection as a mechanism: the configured rule picks the epoch that is scored, from a history that
holds no target label; the target accuracy per epoch (the stability trace) never reaches it."""
from __future__ import annotations

import torch
from torch import nn

from vaeflow.models.classifier import Classifier
from vaeflow.training.adapt_trainer import fit
from vaeflow.training.algorithms import ERM
from vaeflow.training.model_selection import RULES, LastStep, SelectionRule, SourceValidation

MARK = 0.123456789  # the trace's value: a rule that saw it would find it in a row


class Spy(SelectionRule):
    name = "spy"

    def __init__(self, inner: SelectionRule) -> None:
        self.inner, self.seen = inner, []

    def select(self, history):
        self.seen.append([dict(r) for r in history])
        return self.inner.select(history)


def _run(tmp_path, rule):
    torch.manual_seed(0)
    x = torch.rand(64, 1, 4, 4)
    y = (x.flatten(1).mean(1) > 0.5).long()
    clf = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU()), 8, 2, 8)
    algo = ERM(clf, lr=1e-2, weight_decay=0.0)
    res = fit(algo, x, y, None, epochs=4, steps_per_epoch=3, batch_size=8, monitor=(x[:16], y[:16]), rule=rule,
              trace=lambda a: {"target_test_acc": MARK}, ckpt_path=tmp_path / "s.pt", fingerprint="s")
    return algo, res


def test_the_rule_never_sees_a_target_label_or_the_target_trace(tmp_path):
    spy = Spy(SourceValidation())
    _, res = _run(tmp_path, spy)
    assert spy.seen and len(spy.seen[-1]) == 4
    for history in spy.seen:
        for row in history:
            assert not any("target" in k for k in row), row
            assert MARK not in row.values()
    assert [t["target_test_acc"] for t in res.trace] == [MARK] * 4  # the trace exists, kept apart


def test_source_validation_keeps_the_weights_of_its_epoch_and_last_keeps_the_last(tmp_path):
    rule = SourceValidation()
    hist = [{"source_val_acc": v} for v in (0.5, 0.9, 0.9, 0.7)]
    assert rule.select(hist) == 1 and LastStep().select(hist) == 3
    assert rule.select([{"cls_loss": 1.0}]) == 0  # no source labels: falls back to the last epoch
    algo, res = _run(tmp_path / "a", rule)
    accs = [r["source_val_acc"] for r in res.history]
    assert res.selected_epoch == max(range(4), key=lambda i: (accs[i], -i))
    _, last = _run(tmp_path / "b", LastStep())
    assert last.selected_epoch == 3
    if res.selected_epoch != 3:
        assert any(not torch.equal(res.state[k], last.state[k]) for k in res.state)
    assert set(RULES) == {"last", "source_val"}
