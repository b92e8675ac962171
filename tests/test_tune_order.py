"""The order Tune starts trials in: the sample drawn as Tune's own generator draws it, most expensive first
by a probe epoch, handed out by a searcher that goes on where it stopped after a save (no Ray cluster)."""
from __future__ import annotations

import pytest
import torch

from tests.helpers import REPO, TINY
from vaeflow.config import load_config
from vaeflow.paths import Paths

WIDTHS = [[8], [32], [16], [4]]  # one trial each; a fake probe's cost is the width


@pytest.fixture
def prepared(project, tiny_cfg):
    from vaeflow.prepared import load_prepared
    from vaeflow.tasks import prepare

    paths = Paths(project)
    prepare.run(tiny_cfg, paths)
    return load_prepared(paths)


def widths_cfg(*extra: str):
    return load_config(REPO / "params.yaml", TINY + ["tune.num_samples=1", "tune.max_concurrent_trials=2",
                                                     "tune.search_space={hidden: {grid: %s}}" % WIDTHS, *extra])


def test_the_drawn_sample_is_the_one_tunes_own_generator_draws():
    """So the order changes when a trial starts, never which trials run."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from vaeflow.tuning.order import draw
    from vaeflow.tuning.space import to_ray

    cfg = load_config(REPO / "params.yaml", ["tune.search_space.batch_size={grid: [32, 64]}", "tune.num_samples=3"])
    space = to_ray(cfg.tune.search_space)
    tune.register_trainable("vaeflow_order_test", lambda config: None)
    gen = BasicVariantGenerator(random_state=cfg.seed)
    gen.add_configurations({"e": {"run": "vaeflow_order_test", "config": space, "num_samples": 3}})
    tunes = []
    while (trial := gen.next_trial()) is not None:
        tunes.append(trial.config)
    ours = draw(space, 3, cfg.seed)
    assert len(ours) == 6 and ours == tunes
    assert ours != draw(space, 3, cfg.seed + 1)


def test_longest_first_sorts_by_cost_keeps_ties_in_sampled_order_and_probes_each_key_once():
    from vaeflow.tuning.order import longest_first

    configs = [{"i": 0, "k": "a"}, {"i": 1, "k": "b"}, {"i": 2, "k": "a"}, {"i": 3, "k": "c"}]
    price, probed = {"a": 1.0, "b": 3.0, "c": 1.0}, []
    ordered, costs = longest_first(configs, lambda c: probed.append(c["k"]) or price[c["k"]], key=lambda c: c["k"])
    assert [c["i"] for c in ordered] == [1, 0, 2, 3] and costs == [3.0, 1.0, 1.0, 1.0]
    assert sorted(probed) == ["a", "b", "c"]


def test_the_searcher_hands_out_each_config_once_in_order_and_goes_on_after_a_restore(tmp_path):
    from ray.tune.search import Searcher

    from vaeflow.tuning.order import Ordered

    first = Ordered([{"a": 1}, {"a": 2}, {"a": 3}])
    got = first.suggest("t1")
    got["a"] = 99  # what Tune does with a suggestion does not reach the searcher's list
    first.save(str(tmp_path / "state.pkl"))
    again = Ordered([])
    again.restore(str(tmp_path / "state.pkl"))
    assert [again.suggest(f"t{i}") for i in (2, 3, 4)] == [{"a": 2}, {"a": 3}, Searcher.FINISHED]
    assert first.configs[0] == {"a": 1}


def test_trial_configs_put_the_costliest_first_and_probe_only_where_the_order_can_matter(prepared, monkeypatch):
    from vaeflow.tasks import tune as stage

    probed = []
    monkeypatch.setattr(stage, "probe_epoch", lambda cfg, data, c, x, xv: probed.append(c) or c["hidden"][0])
    assert [c["hidden"] for c in stage.trial_configs(widths_cfg(), prepared)] == sorted(WIDTHS, reverse=True)
    assert len(probed) == 4
    # one slot, a slot for every trial, or the sampled order asked for: the sample as drawn, nothing probed
    for extra in ("tune.max_concurrent_trials=1", "tune.max_concurrent_trials=4", "tune.order=sampled"):
        probed.clear()
        assert [c["hidden"] for c in stage.trial_configs(widths_cfg(extra), prepared)] == WIDTHS, extra
        assert probed == [], extra


def test_the_first_images_of_the_prepared_data_are_the_head_of_the_whole(prepared):
    """The probe's slice (`limit`) without copying the rest: the same images, across the domains' boundary."""
    import numpy as np

    n_src, n_val = len(prepared.source.x_train), len(prepared.obs["source"]["obs_val"])
    for k in (5, n_src + 3):
        assert np.array_equal(prepared.unlabelled_train(k), prepared.unlabelled_train()[:k])
    for k in (5, n_val + 3):
        for got, whole in zip(prepared.likelihood_split("val", k), prepared.likelihood_split("val")):
            assert np.array_equal(got, whole[:k])
    assert prepared.size("train") == len(prepared.unlabelled_train())
    assert prepared.size("val") == len(prepared.likelihood_split("val")[0])


def test_the_probe_moves_no_weight_and_leaves_rngs_and_threads_as_they_were(prepared):
    from vaeflow.prepared import to_tensor
    from vaeflow.tasks import tune as stage
    from vaeflow.tasks.pretrain import build_vae
    from vaeflow.training.cost import epoch_seconds
    from vaeflow.training.vae_trainer import TrainSettings

    cfg = widths_cfg()
    x = to_tensor(prepared.unlabelled_train()[:100], torch.device("cpu"))
    x_val = to_tensor(prepared.likelihood_split("val")[0][:30], torch.device("cpu"))
    torch.manual_seed(5)
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    assert stage.probe_epoch(cfg, prepared, {"hidden": [16]}, x, x_val) > 0
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads
    model = build_vae(cfg.vae, prepared.image_shape, cfg.data.likelihood)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = TrainSettings(epochs=1, batch_size=32, lr=1e-3, likelihood=cfg.data.likelihood,
                             levels=prepared.levels)
    assert epoch_seconds(model, x, x_val, settings) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
