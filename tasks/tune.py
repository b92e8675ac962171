"""Stage `tune`: Ray Tune over the VAE's hyperparameters (tune.search_space), ASHA on val −ELBO every epoch.

Inputs: data/prepared; params tune, vae, pretrain, seed, data.likelihood.
Outputs: models/tuned/best_config.json, metrics/tune.json, metrics/tune_trials.csv,
metrics/plots/tune_curves.csv, reports/figures/tune_curves.png, each also copied to
<tune.storage_path>/<tune.experiment_name>/outputs/ (where a cluster run's results are fetched from),
beside Ray's own per-trial results and checkpoints.

Two entry points: `tune()` always tunes (`vaeflow tune`, `vaeflow submit`'s job, the flow's tune task);
`run(cfg, paths)`, the stage-function form (`vaeflow tune --if-used`), tunes only when pretrain.use_tuned
is set and otherwise writes a best_config.json that says so in a second, without starting Ray (what a
dvc.yaml `tune` stage would run; docs/ray.md says why dvc.yaml has none).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import torch

from vaeflow.tasks.pretrain import apply_tuned, build_vae
from vaeflow import hooks
from vaeflow.config import Config, validate
from vaeflow.io import ArtifactError, read_json, write_json
from vaeflow.paths import Paths
from vaeflow.prepared import Prepared, load_prepared, to_tensor
from vaeflow.runtime import seed_everything, select_device, set_threads
from vaeflow.training.checkpoint import fingerprint
from vaeflow.training.vae_trainer import NonFiniteLoss, TrainSettings, train_vae
from vaeflow.tuning import report
from vaeflow.tuning import resume as resume_check
from vaeflow.tuning.space import plain
from vaeflow.tuning.cluster import connect
from vaeflow.tuning.experiment import (TrialCheckpoint, buffered_trainable, experiment_path, make_tuner, preflight,
                                       trial_resources, trial_threads)

log = logging.getLogger("vaeflow")


def trial_settings(cfg: Config, pcfg, data: Prepared) -> TrainSettings:
    """pretrain's optimisation, but the ELBO with a constant lr and the tune section's epochs and checkpoint
    frequency, whatever pretrain.objective / lr_schedule / max_minutes say."""
    return TrainSettings(epochs=cfg.tune.max_epochs, batch_size=pcfg.batch_size, lr=pcfg.lr, beta=pcfg.beta,
                         warmup_epochs=pcfg.kl_warmup_epochs, patience=pcfg.patience,
                         likelihood=cfg.data.likelihood, levels=data.levels,
                         checkpoint_every_s=cfg.tune.checkpoint_every_s)


def trial_fingerprint(seed: int, vcfg, settings: TrainSettings, hashes) -> str:
    """What a trial's checkpoint must match to be resumed: the model and exactly what its training loop is
    given, less what does not change results (checkpoint frequency). pretrain settings a trial ignores
    (objective, lr_schedule, max_minutes, ...) do not restart it."""
    trained = {k: v for k, v in dataclasses.asdict(settings).items() if k not in ("checkpoint_every_s", "capture")}
    return fingerprint(seed, vcfg.fingerprint_dump(), trained, hashes, "trial-v2")


def trial(config: dict, *, base: dict, data: Prepared, cpus: float, test_hooks: hooks.Hooks) -> None:
    """One Tune trial: pretrain's model and training loop on the sampled hyperparameters.

    Reports val −ELBO (β=1, the bound itself, whatever β the trial trains with) after every epoch, with the
    training loop's full state as the checkpoint, so ASHA can stop it and a retry resumes it. `test_hooks`
    are the driver's (vaeflow/hooks.py), installed in the trial's process: no-op outside tests."""
    import ray.tune

    hooks.install(test_hooks)
    set_threads(trial_threads(cpus))  # as many torch threads as the trial holds CPUs: no oversubscription
    cfg = validate(base)
    vcfg, pcfg = apply_tuned(cfg, {k: plain(v) for k, v in config.items()})
    use_gpu = bool(ray.get_gpu_ids()) and cfg.device != "cpu"
    device = select_device("cuda") if use_gpu else torch.device("cpu")
    seed_everything(cfg.seed)
    lik = cfg.data.likelihood
    model = build_vae(vcfg, data.image_shape, lik).to(device)
    x_val, _ = data.likelihood_split("val")
    node_id = ray.get_runtime_context().get_node_id()  # the Ray node this run of the trial is on
    with TrialCheckpoint() as ck:
        def on_epoch(row: dict) -> None:
            ck.report({"val_nelbo": row["val_nelbo"], "train_loss": row["train_loss"], "epoch": row["epoch"],
                       "threads": torch.get_num_threads(), "device": device.type, "resumed": ck.restored,
                       "node_id": node_id},
                      checkpoint=row["checkpointed"])
            test_hooks.trial_epoch(row["epoch"], ray.tune.get_context().get_trial_id())

        try:
            settings = trial_settings(cfg, pcfg, data)
            fp = trial_fingerprint(cfg.seed, vcfg, settings, data.hashes)
            train_vae(model, to_tensor(data.unlabelled_train(), device), to_tensor(x_val, device), settings,
                      ckpt_path=ck.path, fingerprint=fp, on_epoch=on_epoch)
        except NonFiniteLoss as e:
            # A diverging configuration is a bad trial, not a crash: a retry from its checkpoint would
            # diverge the same way. It ends here, judged by the epochs it did report.
            log.warning("tune: trial %s diverged, ending it: %s", config, e)


# Training images of a probe epoch (trial_configs), the same for every trial: two steps or more at the batch
# sizes a search space usually offers (up to 256).
PROBE_IMAGES = 512


def trial_configs(cfg: Config, data: Prepared) -> list[dict]:
    """Every trial's configuration, in the order Tune is to start them (vaeflow/tuning/order.py): the sampled
    order, or with tune.order=longest_first the most expensive first, by a probe of each distinct model and
    batch size. The probe runs only where the order can matter: more trials than slots, and two slots or more.
    It runs on the driver's CPU, so for trials on GPUs the order is the CPU's (an estimate: it orders, it never
    changes a trial)."""
    from vaeflow.tuning.order import draw, longest_first
    from vaeflow.tuning.space import to_ray

    t = cfg.tune
    configs = [{k: plain(v) for k, v in c.items()} for c in draw(to_ray(t.search_space), t.num_samples, cfg.seed)]
    if t.order == "sampled" or not 1 < t.max_concurrent_trials < len(configs):
        return configs
    t0 = time.perf_counter()
    m = min(data.size("train"), PROBE_IMAGES)
    # the same share of the validation images, so training and validation weigh in an epoch's cost as they do
    m_val = max(1, round(data.size("val") * m / data.size("train")))
    cpu = torch.device("cpu")
    sample = to_tensor(data.unlabelled_train(m), cpu), to_tensor(data.likelihood_split("val", m_val)[0], cpu)
    ordered, costs = longest_first(configs, lambda c: probe_epoch(cfg, data, c, *sample),
                                   key=lambda c: cost_key(cfg, c))
    log.info("tune: trials start longest first (tune.order), by a probe epoch on %d images (%.1f s): %s", m,
             time.perf_counter() - t0, ", ".join(f"{1e3 * s:.0f} ms" for s in costs))
    return ordered


def cost_key(cfg: Config, config: dict) -> tuple[int, str]:
    """What an epoch's cost depends on: the model built and the batch size (not lr or beta)."""
    vcfg, pcfg = apply_tuned(cfg, config)
    return pcfg.batch_size, vcfg.model_dump_json()


def probe_epoch(cfg: Config, data: Prepared, config: dict, x: torch.Tensor, x_val: torch.Tensor) -> float:
    """Seconds of one training epoch of `config`'s trial on `x` and `x_val` (vaeflow/training/cost.py), on the
    CPU with a trial's torch threads. The driver's RNGs and threads are left as they were."""
    from vaeflow.training.cost import epoch_seconds

    vcfg, pcfg = apply_tuned(cfg, config)
    threads = torch.get_num_threads()
    torch.set_num_threads(trial_threads(cfg.tune.cpus_per_trial))
    try:
        with torch.random.fork_rng():  # the model's init and its noise come from the global RNG
            torch.manual_seed(cfg.seed)
            model = build_vae(vcfg, data.image_shape, cfg.data.likelihood)
            return epoch_seconds(model, x, x_val, trial_settings(cfg, pcfg, data))
    finally:
        torch.set_num_threads(threads)


def tune(cfg: Config, paths: Paths, *, address: str | None = None, resume: bool = False,
         callbacks: list[Any] | None = None) -> dict:
    """Run (or with `resume`, continue) the experiment and write its outputs."""
    from ray import tune as rt

    preflight(cfg, paths.root, resume)
    exp = experiment_path(cfg, paths.root)
    # Before Ray starts and before anything is written: a resume with other params is refused (exit 2) and
    # leaves the experiment and the project's outputs as they were.
    started_with = resume_check.check_resume(cfg, exp) if resume else None
    if not paths.data_meta.exists():  # e.g. a fresh working dir shipped to a cluster: digits are embedded
        # Imported here, not at the top: every trial process imports this module, and prepare brings the
        # dataset readers (scipy.ndimage among them) that a trial never uses.
        from vaeflow.tasks import prepare

        log.info("tune: no prepared data at %s; running prepare first", paths.prepared)
        prepare.run(cfg, paths)
    data = load_prepared(paths)
    started = connect(address)
    try:
        res = trial_resources(cfg)
        trainable = rt.with_resources(buffered_trainable(
            rt.with_parameters(trial, base=cfg.model_dump(mode="json"), data=data, cpus=res["cpu"],
                               test_hooks=hooks.current())), res)
        configs = None if resume else trial_configs(cfg, data)
        tuner = make_tuner(trainable, cfg, paths.root, resume=resume, configs=configs, callbacks=callbacks)
        if resume:
            _say_if_nothing_left(exp, started_with or cfg.model_dump(mode="json"))
        else:
            resume_check.record_start(cfg, exp)
        t0 = time.perf_counter()
        try:
            with buffered_results():
                grid = tuner.fit()
        finally:  # an interrupted call's time counts too: the resume that completes it reports the sum
            this_call = time.perf_counter() - t0
            seconds, calls = resume_check.add_seconds(exp, this_call, resume)
    finally:
        if started:  # a Ray this call started ends with it (a flow or notebook process lives on)
            import ray

            ray.shutdown()
    summary = report.write_outputs(grid, cfg, paths, exp, seconds, this_call=this_call, calls=calls)
    log.info("tune: %d trials (%d stopped early), best val -ELBO %.2f nats: %s", summary["n_trials"],
             summary["n_stopped_early"], summary["best_val_nelbo"], summary["best_config"])
    return summary


def _say_if_nothing_left(exp: str, started_with: dict) -> None:
    """Log when the restored experiment has no trial left to run: Tune then trains nothing, and this call
    only writes the outputs again from the finished trials."""
    try:
        done, total = resume_check.left_to_run(exp, started_with)
    except Exception as e:  # noqa: BLE001 (a log line only: Tune's restore reads the same state and reports)
        log.debug("tune: could not count the restored trials: %s", e)
        return
    if done >= total:
        log.info("tune: nothing left to run: all %d trials of %s had finished; Tune reloads them without "
                 "training, and the outputs are written again from them", total, exp)
    else:
        log.info("tune: %d of %d trials had finished; resuming the other %d", done, total, total - done)


# Tune's result buffering (documented env vars, read when Tuner.fit builds its controller, in the driver: the
# controller hands the length and time to the trial's actor with each `train_buffered` call). Unbuffered, a
# trial's every `tune.report` waits for the driver to fetch it: with epochs of ~30 ms, two trials and the
# driver on two cores, each epoch waited for the driver's turn on a core (the pairing loss in
# bench/RESULTS_tune.md). Buffered, the trial's actor collects reports for up to 0.5 s and sends them in
# one call; Tune still logs and schedules every epoch. A report with a checkpoint ends a buffer and goes in
# the next call, alone (BufferedResults says why), so nothing before a checkpoint waits; ASHA (which
# supports buffering) ignores results after its stop decision, so a stopped trial's history is unchanged
# and it runs at most 0.5 s longer (a checkpoint it writes in that time stays in its folder, unregistered).
# The variables alone do nothing in Ray 2.60: its controller passes the two values to the actor in the wrong
# order, so each call returned one result; the trainable's class from `buffered_trainable`
# (vaeflow/tuning/experiment.py: BufferedResults) reads them as meant.
RESULT_BUFFER = {"TUNE_RESULT_BUFFER_LENGTH": "1000", "TUNE_RESULT_BUFFER_MIN_TIME_S": "0.5"}


@contextlib.contextmanager
def buffered_results() -> Iterator[None]:
    """RESULT_BUFFER in the environment while Tune starts (a value the user set is kept), put back after."""
    saved = {k: os.environ.get(k) for k in RESULT_BUFFER}
    for k, v in RESULT_BUFFER.items():
        os.environ.setdefault(k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def has_tuned(paths: Paths) -> bool:
    """Whether models/tuned/best_config.json holds a tuning result (not the stage's 'tuning off' record)."""
    try:
        return bool(read_json(paths.tuned).get("tuned"))
    except ArtifactError:
        return False


def run(cfg: Config, paths: Paths, address: str | None = None) -> dict:
    """The pipeline's stage: tune when pretrain.use_tuned asks for it (on the Ray cluster at `address`, if
    given), else record that tuning is off."""
    if cfg.pretrain.use_tuned:
        return tune(cfg, paths, address=address)
    reason = "pretrain.use_tuned is false: tuning skipped"
    write_json(paths.tuned, {"tuned": False, "reason": reason})
    log.info("tune: %s (run `vaeflow tune` to tune anyway)", reason)
    return {"tuned": False}
