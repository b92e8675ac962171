"""Ray Tune over the VAE's hyperparameters: search space (space.py), the experiment (experiment.py),
and its outputs (report.py). The trial itself lives in tasks/tune.py: it is pretrain's own code path.

Nothing here imports Ray at module import time, so params validation stays cheap.
"""
