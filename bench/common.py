"""Shared by the benchmarks: machine description, medians, and recording a section of RESULTS.md.

Each benchmark owns one `## heading` section of bench/RESULTS.md and rewrites only that section, so
benchmarks can be re-run in any order without clobbering each other's results.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import re
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = ("# Benchmark results\n\nEvery figure below was produced by the command shown with it, on the machine "
          "and date shown. Comparisons are ratios taken within one run (interleaved repeats, medians), "
          "because this machine is noisy.\n")


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} logical CPUs, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}; load average at start {os.getloadavg()[0]:.1f}")


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def record(heading: str, body: str, command: str) -> None:
    """Replace (or append) the `## heading` section of RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"## {heading}\n\nCommand: `{command}`  \nMachine: {machine()}  \nDate: {stamp}\n\n"
               f"{body.strip()}\n\n")
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(RESULTS)
