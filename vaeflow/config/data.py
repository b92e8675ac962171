"""The `data` section: which datasets, how they are split and shaped."""
from __future__ import annotations

import difflib
from typing import Literal

from pydantic import Field, field_validator, model_validator

from vaeflow.config.base import Section

DATASETS = ("digits", "digits_shifted", "mnist", "usps", "fashion_mnist")


class ShiftConfig(Section):
    """How `digits_shifted` is made from held-out digits images (see vaeflow/data/shift.py)."""
    rotation_deg: float = Field(35.0, ge=0, le=180)
    thicken: int = Field(1, ge=0, le=3, description="grey dilation passes")
    contrast: float = Field(0.6, gt=0, le=1, description="ink scaled to this peak")
    background: float = Field(0.25, ge=0, lt=1, description="background raised to this level")
    clutter: float = Field(0.1, ge=0, le=1, description="fraction of pixels with random specks")


class DataConfig(Section):
    source: str = "digits"
    target: str = "digits_shifted"
    root: str = "../shared/data"
    likelihood: Literal["gaussian", "bernoulli"] = "gaussian"
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.25, gt=0, lt=0.5)
    source_fraction: float = Field(
        0.5, gt=0, lt=1, description="when source and target are one dataset: the source's share of its images")
    pools: Literal["disjoint", "shared"] = Field(
        "disjoint", description="when source and target are one dataset: split it disjointly (source_fraction), "
        "or give both domains all of it (semi-supervised protocol: the few-label variants then see the "
        "whole training set and the whole official test set; variants that read source labels are refused)")
    subset: int | None = Field(None, ge=20, description="cap on training images per domain (smoke runs)")
    eval_subset: int | None = Field(None, ge=20, description="cap on val and test images per domain (costly evals)")
    test_split: Literal["official", "random"] = Field(
        "official", description="official: keep a dataset's own test set (MNIST, USPS, folder:, npz:)")
    image_size: int | None = Field(None, ge=4, le=64, description="common side length; None keeps native size")
    channels: Literal[1, 3] = Field(1, description="1: RGB becomes luma; 3: grey is repeated")
    verify_md5: bool = Field(True, description="check dataset files against their published md5")
    download: bool = Field(True, description="fetch missing files with torchvision when it is importable")
    shift: ShiftConfig = ShiftConfig()

    @field_validator("source", "target")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        if v in DATASETS or v.startswith(("folder:", "npz:")):
            return v
        near = difflib.get_close_matches(v, DATASETS, n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise ValueError(f"unknown dataset '{v}'{hint}; choose one of {', '.join(DATASETS)}, folder:PATH or npz:PATH")
