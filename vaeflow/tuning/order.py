"""The trials' sample, drawn before the first one starts, and the order Tune starts them in.

Why: with more trials than slots, Tune starts the next trial whenever a slot frees up, in the order the
search hands them out. When trials cost different amounts (a wide model at a small batch size trains an
epoch several times slower than a narrow one at a large batch size), starting the expensive ones last
leaves one slot idle while the other finishes: with 4 trials of the default space on 2 slots the
sampled order packed {12.8, 6.8} s against {4.8, 9.5} s of training, a makespan 2 s longer than
longest first's {12.8, 4.8} against {9.5, 6.8} (bench/RESULTS_tune.md). Longest first (LPT: start the
most expensive trial whenever a slot frees up) is the classic rule for that; it needs each trial's cost
before it starts, which `tasks/tune.py` measures with a short probe of one training epoch on a slice of
the data.

`draw` gives exactly the configurations Tune's BasicVariantGenerator draws for the same space and seed
(tests/test_tune_order.py compares them), so the order changes when a trial starts, never which trials run or
what any of them trains (each trial seeds itself from `seed`).
"""
from __future__ import annotations

import copy
import json
from collections.abc import Callable, Hashable
from typing import Any

from ray.tune.search import Searcher  # this module is imported where Ray is (make_tuner), never at import time

def draw(param_space: dict[str, Any], num_samples: int, seed: int) -> list[dict[str, Any]]:
    """The sample BasicVariantGenerator(random_state=seed) draws: `num_samples` times every grid point."""
    from ray.tune.search.basic_variant import _BackwardsCompatibleNumpyRng
    from ray.tune.search.variant_generator import generate_variants

    rng = _BackwardsCompatibleNumpyRng(seed)
    return [spec["config"] for _ in range(num_samples)
            for _, spec in generate_variants({"config": param_space}, random_state=rng)]


def longest_first(configs: list[dict], cost: Callable[[dict], float], key: Callable[[dict], Hashable]
                  ) -> tuple[list[dict], list[float]]:
    """`configs` most expensive first (ties keep the sampled order), and their costs in that order. `cost`
    is called once per distinct `key` (configurations that build the same model at the same batch size cost
    the same, whatever their learning rate)."""
    keys, seen = [key(c) for c in configs], {}
    for k, c in zip(keys, configs):
        if k not in seen:
            seen[k] = cost(c)
    costs = [seen[k] for k in keys]
    order = sorted(range(len(configs)), key=lambda i: -costs[i])
    return [configs[i] for i in order], [costs[i] for i in order]


class Ordered(Searcher):
    """Hands Tune a fixed list of configurations, in order, then says it has finished.

    A public-API Searcher (Tune wraps it in its ConcurrencyLimiter for `max_concurrent_trials`), so its state
    is saved with the experiment and `Tuner.restore` goes on with the next configuration not yet handed out."""

    def __init__(self, configs: list[dict[str, Any]], metric: str | None = None, mode: str | None = None):
        super().__init__(metric=metric, mode=mode)
        self.configs = [copy.deepcopy(c) for c in configs]
        self.next = 0

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        self._metric, self._mode = metric or self._metric, mode or self._mode
        return True  # the space was sampled already (`draw`); Tune's own config is not resampled

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.next >= len(self.configs):
            return Searcher.FINISHED
        self.next += 1
        return copy.deepcopy(self.configs[self.next - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # the order is fixed before the first trial: nothing to learn from results

    def get_state(self) -> dict[str, Any]:
        return {"configs": self.configs, "next": self.next}

    def set_state(self, state: dict[str, Any]) -> None:
        self.configs, self.next = state["configs"], state["next"]

    def save(self, checkpoint_path: str) -> None:
        # JSON, not pickle: the configurations are plain values (tasks/tune.py makes them so), and nothing
        # the package reads back can run code
        with open(checkpoint_path, "w") as f:
            json.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            self.set_state(json.load(f))
