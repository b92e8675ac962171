"""What the Prefect flow costs on top of calling the stage functions directly, and what a no-op rerun costs.

    .venv/bin/python bench/bench_flow_overhead.py [--repeats 2] [--set KEY=VALUE ...]

Cold: each repeat runs the whole pipeline three times in fresh scratch projects, interleaved:
  direct  `python -c "for stage in STAGES: STAGES[stage](cfg, Paths())"`  (imports + stages, one at a time)
  serial  `vaeflow run` with VAEFLOW_FLOW_WORKERS=1: the same stages one at a time, + Prefect's ephemeral
          server, task runs, artifacts. serial - direct is the flow's overhead, the goal's measure.
  flow    `vaeflow run` as users run it: gmm and pretrain concurrently on 2 worker threads.
All are whole processes, so all pay interpreter start-up and imports.
Warm: `vaeflow run` again in a git+DVC copy of the repo where every stage is up to date (all skipped).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, record  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
       "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
DIRECT = ("import sys; from vaeflow.config import load_config; from vaeflow.paths import Paths; "
          "from vaeflow.runtime import set_threads; from vaeflow.tasks import STAGES; "
          "cfg = load_config('params.yaml', sys.argv[1:]); set_threads(cfg.threads); "
          "[STAGES[s](cfg, Paths()) for s in STAGES]")


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return dt


def scratch(root: Path, name: str) -> Path:
    d = root / name
    d.mkdir()
    shutil.copy(REPO / "params.yaml", d / "params.yaml")
    return d


def git_copy(root: Path) -> Path:
    """A git + DVC copy of the committed and working-tree files (what a user's checkout looks like)."""
    d = root / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (d / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, d / f)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "-c", "user.email=b@b", "-c", "user.name=b",
                                                              "commit", "-qm", "bench"]):
        subprocess.run(cmd, cwd=d, check=True)
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    sets = [a for kv in args.overrides for a in ("--set", kv)]
    with tempfile.TemporaryDirectory(prefix="vaeflow-bench-") as tmp:
        root = Path(tmp)
        env = ENV | {"PREFECT_HOME": str(root / "prefect_home")}
        # Prefect migrates a fresh SQLite DB on first use; do that once, outside the timings.
        timed([PY, "-c", "from prefect import flow\nflow(lambda: 1)()"], root, env)
        direct, serial, flow = [], [], []
        for r in range(args.repeats):
            direct.append(timed([PY, "-c", DIRECT, *args.overrides], scratch(root, f"direct{r}"), env))
            serial.append(timed([PY, "-m", "vaeflow", "run", *sets], scratch(root, f"serial{r}"),
                                env | {"VAEFLOW_FLOW_WORKERS": "1"}))
            flow.append(timed([PY, "-m", "vaeflow", "run", *sets], scratch(root, f"flow{r}"), env))
            print(f"repeat {r}: direct {direct[-1]:.1f}s  serial flow {serial[-1]:.1f}s  flow {flow[-1]:.1f}s",
                  flush=True)
        warm = []
        if not args.overrides:
            repo = git_copy(root)
            timed([PY, "-m", "vaeflow", "run"], repo, env)  # cold, records dvc.lock
            for _ in range(args.repeats):
                warm.append(timed([PY, "-m", "vaeflow", "run"], repo, env))
            status = subprocess.run([str(Path(PY).parent / "dvc"), "status"], cwd=repo, capture_output=True,
                                    text=True, env=env).stdout.strip()
    d, s1, f = median(direct), median(serial), median(flow)
    rows = [("direct stage calls, one at a time, cold (s)", f"{d:.1f}"),
            ("`vaeflow run`, tasks one at a time (VAEFLOW_FLOW_WORKERS=1), cold (s)", f"{s1:.1f}"),
            ("**flow overhead**: serial flow − direct (s)", f"{s1 - d:+.1f}"), ("serial flow / direct", f"{s1 / d:.3f}"),
            ("`vaeflow run` as shipped (gmm ∥ pretrain), cold (s)", f"{f:.1f}"),
            ("shipped flow − direct (s)", f"{f - d:+.1f}"), ("shipped flow / direct", f"{f / d:.3f}")]
    if warm:
        rows += [("`vaeflow run`, warm: all stages up to date (s)", f"{median(warm):.1f}"),
                 ("`dvc status` after the runs", status.replace("\n", " "))]
    table = "| what | median |\n|---|---|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows)
    print(table)
    goal = "met" if s1 - d <= 10 else "NOT met"
    verdict = (f"Goal: at most 10 s added by the flow: {goal} ({s1 - d:+.1f} s with the same serial order of stages, "
               f"median of {args.repeats} interleaved repeats; as shipped, gmm ∥ pretrain makes it {f - d:+.1f} s).")
    print(verdict)
    line = (f"direct_s={d:.2f} serial_flow_s={s1:.2f} overhead_s={s1 - d:.2f} ratio={s1 / d:.3f} "
            f"flow_s={f:.2f} shipped_minus_direct_s={f - d:.2f}") + (
        f" warm_s={median(warm):.2f}" if warm else "")
    print(line)
    if not args.no_record:
        cmd = "python bench/bench_flow_overhead.py " + " ".join(f"--repeats {args.repeats}".split() + sets)
        record("Prefect flow overhead and warm reruns", table + "\n" + verdict + "\n\n`" + line + "`", cmd)


if __name__ == "__main__":
    main()
