"""CPU time of one `vaeflow run`, split by stage: run in a project directory exactly as `vaeflow run [ARGS]`.

    cd PROJECT && python /path/to/bench/flow_cpu.py --json OUT.json [vaeflow run's options]

Each stage runs in one thread of the flow's pool, and with `threads: 1` torch computes in that thread, so the
stage's CPU time is that thread's (time.thread_time, the stage module's import included); a stage the flow
runs in a process of its own (OWN_PROCESS, tasks/workers.py) shows only its waiting thread's, and its
process's CPU is among the children's. Also recorded: the CPU time of DVC's up-to-date check and record
around each stage (vaeflow/uptodate.py), of this process before the flow starts (imports, params, lock), of
writing the report (flows/artifacts publish), of the whole process (time.process_time at exit) and of its
waited-for children (the early Prefect server, worker processes; getrusage RUSAGE_CHILDREN). Wall times
beside them. Compare runs by CPU time on a loaded box: wall time
there measures the load."""
from __future__ import annotations

import atexit
import json
import resource
import sys
import time

T0_WALL, T0_CPU = time.perf_counter(), time.process_time()
RECORD: dict = {"stages": {}}
OUT = None
if "--json" in sys.argv:
    i = sys.argv.index("--json")
    OUT = sys.argv[i + 1]
    del sys.argv[i:i + 2]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _dump() -> None:  # registered first, so it runs last (after the server is stopped and waited for)
    RECORD["process_cpu_s"] = round(time.process_time() - T0_CPU, 2)
    RECORD["children_cpu_s"] = round(_children_cpu(), 2)
    RECORD["wall_s"] = round(time.perf_counter() - T0_WALL, 2)
    RECORD["total_cpu_s"] = round(RECORD["process_cpu_s"] + RECORD["children_cpu_s"], 2)
    text = json.dumps(RECORD, indent=1)
    print(text, file=sys.stderr)
    if OUT:
        with open(OUT, "w") as f:
            f.write(text + "\n")


atexit.register(_dump)


def _timed(label: str, fn):
    def wrapper(*a, **kw):
        w0, c0 = time.perf_counter(), time.thread_time()
        RECORD.setdefault("first_stage_start_cpu_s", round(time.process_time() - T0_CPU, 2))
        try:
            return fn(*a, **kw)
        finally:
            RECORD["stages"][label] = {"thread_cpu_s": round(time.thread_time() - c0, 2),
                                       "wall_s": round(time.perf_counter() - w0, 2),
                                       "start_s": round(w0 - T0_WALL, 2)}  # the timeline: what overlaps what
    return wrapper


def main() -> None:
    from vaeflow import uptodate

    for fn in ("is_up_to_date", "record"):  # DVC's bookkeeping around each stage, summed over the stages
        def counted(*a, _fn=getattr(uptodate, fn), _key=f"dvc_{fn}", **kw):
            w0, c0 = time.perf_counter(), time.thread_time()
            try:
                return _fn(*a, **kw)
            finally:
                d = RECORD.setdefault(_key, {"thread_cpu_s": 0.0, "wall_s": 0.0, "calls": 0})
                d["thread_cpu_s"] = round(d["thread_cpu_s"] + time.thread_time() - c0, 2)
                d["wall_s"] = round(d["wall_s"] + time.perf_counter() - w0, 2)
                d["calls"] += 1
        setattr(uptodate, fn, counted)
    import vaeflow.flows.cli as cli

    import builtins

    real_import = builtins.__import__

    def hooked(name, *a, **kw):  # patch publish once `run` has imported the flow module (lazily, after the server)
        mod = real_import(name, *a, **kw)
        tp = sys.modules.get("vaeflow.flows.training_pipeline")
        if tp is not None and hasattr(tp, "publish") and hasattr(tp, "_stage_fn"):
            builtins.__import__ = real_import
            tp.publish = _timed("publish", tp.publish)
            # each stage as the flow runs it (a stage in a process of its own too: its thread then only waits)
            stage_fn = tp._stage_fn
            tp._stage_fn = lambda name, *a: _timed(name, stage_fn(name, *a))
            RECORD["flow_imported_cpu_s"] = round(time.process_time() - T0_CPU, 2)
        return mod
    builtins.__import__ = hooked
    sys.argv = ["vaeflow", "run", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
