"""The data layer: datasets -> two labelled domains (source, target) -> the observation model.

    build_domains(cfg) -> (source, target)   DomainData, raw intensities on a discrete grid
    observe(x, likelihood, levels, gen)      dequantize ('gaussian') or binarize ('bernoulli')
    save_domain / load_domain                checksummed .npz with the fixed val/test observations
"""
from vaeflow.data.datasets import REGISTRY, build_domains, build_pools, dataset_spec, resize, split_indices
from vaeflow.data.digits import DIGITS_LEVELS, Pool, load_digits_pool
from vaeflow.data.domain import SPLITS, DataError, DomainData, load_domain, save_domain
from vaeflow.data.observe import LIKELIHOODS, observe
from vaeflow.data.shift import digits_shifted, quantize

__all__ = [
    "DIGITS_LEVELS", "LIKELIHOODS", "REGISTRY", "SPLITS", "DataError", "DomainData", "Pool", "build_domains",
    "build_pools", "dataset_spec", "digits_shifted", "load_digits_pool", "load_domain", "observe", "quantize",
    "resize", "save_domain", "split_indices",
]
