"""What a checkpoint holds and how it is written: every RNG restored (cached Gaussians and generators too), no
load in the package that could unpickle, writes throttled by the clock without changing results, and a time budget
that stops after an epoch and resumes to the same weights. The kill, corruption and NaN tests are
tests/test_reliability.py."""
from __future__ import annotations

import torch

from tests.helpers import REPO


def test_checkpoint_restores_every_rng_including_cached_gaussians_and_generators(tmp_path):
    import random

    import numpy as np

    from vaeflow.training.checkpoint import save_checkpoint, try_resume

    def draws(g):
        return (random.gauss(0, 1), random.random(), np.random.normal(), np.random.rand(),
                torch.rand(2).tolist(), torch.rand(2, generator=g).tolist())

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(5)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1), np.random.normal()  # leave a cached second normal in both
    save_checkpoint(tmp_path / "c.pt", "fp", model, opt, {"epoch": 1, "step": 1}, generators={"batches": g})
    want = draws(g)
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    g2 = torch.Generator().manual_seed(9)
    assert try_resume(tmp_path / "c.pt", "fp", model, opt, generators={"batches": g2}) is not None
    assert draws(g2) == want
    assert try_resume(tmp_path / "c.pt", "other params", model, opt) is None


def _unsafe_loads(source: str) -> list[str]:
    """Lines of `source` that could unpickle: torch.load without weights_only=True, np.load without
    allow_pickle=False, yaml.load with an unsafe loader, any pickle-family import."""
    import ast

    def const(kw: dict, name: str, value: object) -> bool:
        return isinstance(kw.get(name), ast.Constant) and kw[name].value is value

    bad = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if {"pickle", "cloudpickle", "dill", "joblib"} & {n.split(".")[0] for n in names}:
                bad.append(f"{line}: imports a pickle library")
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"):
            continue
        kw = {k.arg: k.value for k in node.keywords}
        owner = ast.unparse(node.func.value)
        if owner == "torch" and not const(kw, "weights_only", True):
            bad.append(f"{line}: torch.load without weights_only=True")
        if owner in ("np", "numpy") and not const(kw, "allow_pickle", False):
            bad.append(f"{line}: np.load without allow_pickle=False")
        loader = ast.unparse(kw["Loader"]).split(".")[-1] if "Loader" in kw else ""
        if owner == "yaml" and loader in ("", "Loader", "UnsafeLoader", "FullLoader"):
            bad.append(f"{line}: yaml.load without a safe Loader")
    return bad


def test_package_loads_are_safe():
    import ast

    # The scanner itself catches each kind of unsafe load ...
    assert len(_unsafe_loads("import pickle\ntorch.load(f)\ntorch.load(f, weights_only=False)\n"
                             "np.load(f)\nnp.load(f, allow_pickle=True)\nyaml.load(s, Loader=yaml.Loader)\n")) == 6
    assert _unsafe_loads("torch.load(f, weights_only=True)\nnp.load(f, allow_pickle=False)\n"
                         "yaml.load(s, Loader=_UniqueKeyLoader)\n") == []
    # ... and the package has none.
    files = [*REPO.glob("vaeflow/**/*.py"), *REPO.glob("tasks/*.py"), *REPO.glob("flows/*.py")]
    bad = [f"{f.relative_to(REPO)}:{b}" for f in files for b in _unsafe_loads(f.read_text())]
    assert bad == [], bad
    # Nothing the project starts listens beyond loopback unless a user says so.
    for f in files:
        consts = [n.value for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, ast.Constant)]
        assert "0.0.0.0" not in consts, f"{f} binds to all interfaces"


def test_checkpoint_clock_throttles_writes_without_changing_results(tmp_path, monkeypatch):
    from vaeflow.models.vae import VAE
    from vaeflow.training import vae_trainer

    saved = []
    real = vae_trainer.save_checkpoint
    monkeypatch.setattr(vae_trainer, "save_checkpoint",
                        lambda *a, **k: (saved.append(a[4]["epoch"]), real(*a, **k)))
    g = torch.Generator().manual_seed(0)
    x, x_val = torch.rand(40, 1, 4, 4, generator=g), (torch.rand(10, 1, 4, 4, generator=g) < 0.5).float()

    def train(every_s: float, name: str) -> dict:
        saved.clear()
        torch.manual_seed(0)
        model = VAE(input_shape=(1, 4, 4), latent_dim=2, hidden=[8], likelihood="bernoulli")
        settings = vae_trainer.TrainSettings(epochs=3, batch_size=16, lr=1e-2, patience=10, likelihood="bernoulli",
                                             levels=2, checkpoint_every_s=every_s)
        res = vae_trainer.train_vae(model, x, x_val, settings, ckpt_path=tmp_path / name, fingerprint="fp")
        return {"saved": list(saved), "best": res.best_state}

    every_epoch, hourly = train(0.0, "a.pt"), train(3600.0, "b.pt")
    assert every_epoch["saved"] == [1, 2, 3] and hourly["saved"] == [3]  # the last epoch is always saved
    assert all(torch.equal(every_epoch["best"][k], hourly["best"][k]) for k in every_epoch["best"])


def test_time_budget_stops_after_an_epoch_and_a_rerun_resumes_to_the_same_weights(tmp_path):
    """pretrain.max_minutes: the epoch that crosses the budget is the last one, and it is checkpointed,
    so a second process with more time continues exactly where the first stopped."""
    from vaeflow.models.vae import VAE
    from vaeflow.training import vae_trainer

    g = torch.Generator().manual_seed(0)
    x, x_val = torch.rand(40, 1, 4, 4, generator=g), (torch.rand(10, 1, 4, 4, generator=g) < 0.5).float()

    def train(name: str, max_seconds: float | None):
        torch.manual_seed(0)
        model = VAE(input_shape=(1, 4, 4), latent_dim=2, hidden=[8], likelihood="bernoulli")
        settings = vae_trainer.TrainSettings(epochs=3, batch_size=16, lr=1e-2, patience=10, likelihood="bernoulli",
                                             levels=2, max_seconds=max_seconds)
        return vae_trainer.train_vae(model, x, x_val, settings, ckpt_path=tmp_path / name, fingerprint="fp")

    whole = train("a.pt", None)
    cut = train("b.pt", 1e-9)
    assert cut.out_of_time and cut.stopped_early and len(cut.history) == 1 and not whole.out_of_time
    rest = train("b.pt", None)
    assert [r["epoch"] for r in rest.history] == [0, 1, 2] and len(whole.history) == 3
    assert all(torch.equal(whole.best_state[k], rest.best_state[k]) for k in whole.best_state)
    # The reported training time is every epoch's, across the two processes: more than the first's alone,
    # and a third call that finds the finished checkpoint (nothing left to train) reports it unchanged.
    assert rest.seconds > cut.seconds > 0
    assert train("b.pt", None).seconds == rest.seconds
