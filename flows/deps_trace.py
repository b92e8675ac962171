"""What a stage really executes: the check behind flows/deps.py's static analysis (tests/test_deps.py).

Each stage runs in a freshly forked process that has forgotten every project module, with a trace function
that records each project file whose code runs. Reading import statements cannot see an import whose name is
computed; this can, for the configs it is run on.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from vaeflow.flows.deps import CODE_ROOTS, project_root, stages


def _trace_child(stage: str, params: str, overrides: list[str], root: Path, out: int) -> None:
    """In a forked child: forget every project module, trace calls into project files, run the stage."""
    for name in [m for m in sys.modules if m.split(".")[0] in CODE_ROOTS]:
        del sys.modules[name]
    hit: set[str] = set()
    prefix = str(root) + os.sep

    def tracer(frame, event, arg):  # a global trace function sees 'call' events only; None: no line tracing
        f = frame.f_code.co_filename
        if f.startswith(prefix):
            hit.add(f)
        return None

    import threading

    threading.settrace(tracer)
    sys.settrace(tracer)
    from vaeflow.config import load_config
    from vaeflow.paths import Paths
    from vaeflow.tasks import STAGES

    STAGES[stage](load_config(params, overrides), Paths())
    sys.settrace(None)
    files = sorted(Path(f).relative_to(root).as_posix() for f in hit
                   if Path(f).relative_to(root).parts[0] in CODE_ROOTS)
    os.write(out, json.dumps(files).encode())


def traced_deps(params: str, overrides: list[str], workdir: Path, root: Path | None = None) -> dict[str, set[str]]:
    """Run every stage in UPSTREAM order in `workdir` (each in a fresh fork of this process, which must not
    have imported a project module's stage code), returning the files under the checkout `root` (default:
    the working directory) that each one executed."""
    import tempfile

    root = (root or project_root()).resolve()

    order = stages()  # imports tasks/__init__ and config here; each child forgets them and imports afresh
    result: dict[str, set[str]] = {}
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        for stage in order:
            with tempfile.TemporaryFile() as buf:
                pid = os.fork()
                if pid == 0:  # the child: never returns into the caller's code (pytest, the CLI)
                    code = 1
                    try:
                        _trace_child(stage, params, overrides, root, buf.fileno())
                        code = 0
                    except BaseException:
                        import traceback

                        traceback.print_exc()
                    finally:
                        os._exit(code)
                _, status = os.waitpid(pid, 0)
                if os.waitstatus_to_exitcode(status) != 0:
                    raise RuntimeError(f"stage {stage} failed while being traced (exit {os.waitstatus_to_exitcode(status)})")
                buf.seek(0)
                result[stage] = set(json.loads(buf.read() or b"[]"))
    finally:
        os.chdir(cwd)
    return result
