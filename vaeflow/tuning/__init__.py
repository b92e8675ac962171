"""Ray Tune over the VAE's hyperparameters: search space (space.py), reaching Ray (cluster.py), the
experiment (experiment.py), and its outputs (report.py). The trial itself lives in tasks/tune.py: it is
pretrain's own code path.

Importing this package, space.py or report.py imports no Ray, so params validation
stays cheap. asha.py imports Ray at its top (it subclasses Tune's ASHAScheduler), experiment.py and cluster.py
inside their functions; only tasks/tune.py imports those, when tuning runs.
"""
