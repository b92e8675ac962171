"""Fault injection for the reliability tests, switched on only by environment variables.

VAEFLOW_PAUSE_AT=<point>   the process stops at <point>, creates the file named by VAEFLOW_PAUSE_SIGNAL
                           and sleeps, so a test can `kill -9` it exactly there. Points:
                             step:<run>:<epoch>:<step>        before that optimiser step of a training run
                                                              (<run> is the checkpoint's stem: pretrain,
                                                              adapt_dann, ...)
                             write:<file>:<n>:mid             the n-th write of <file> in this process,
                                                              half of it in the temp file
                             write:<file>:<n>:renamed         the same write, renamed into place, its
                                                              checksum not yet final
                             lock:acquired                    the CLI has just taken the project lock
VAEFLOW_NAN_AT=<run>:<epoch>:<step>   the loss of that step becomes NaN.

Unset (always, outside tests), every hook is one dictionary lookup.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

PAUSE_LIMIT_S = 300  # a paused process whose test died exits on its own rather than linger
_writes: Counter[str] = Counter()


def pause_point(point: str) -> None:
    if os.environ.get("VAEFLOW_PAUSE_AT") != point:
        return
    signal = os.environ.get("VAEFLOW_PAUSE_SIGNAL")
    if signal:
        Path(signal).write_text(f"{os.getpid()} {point}\n")
    time.sleep(PAUSE_LIMIT_S)
    os._exit(75)


def count_write(name: str) -> int:
    """1-based index of this write of a file called `name` in this process (for `write:` points)."""
    if "VAEFLOW_PAUSE_AT" not in os.environ:
        return 0
    _writes[name] += 1
    return _writes[name]


def nan_at(run: str) -> tuple[int, int] | None:
    """(epoch, step) at which run `run` should see a NaN loss, if VAEFLOW_NAN_AT asks for one."""
    spec = os.environ.get("VAEFLOW_NAN_AT", "")
    name, _, rest = spec.partition(":")
    if name != run or not rest:
        return None
    epoch, step = rest.split(":")
    return int(epoch), int(step)
