#!/bin/bash
# The default flow cold, two commits paired in one run: each rep clones both commits afresh (so no prepared
# data, models or checkpoints) and runs `vaeflow run` in each, alternating, under bench/flow_cpu.py (CPU time
# per stage) and /usr/bin/time (wall, user, sys). Uses this checkout's venv with the clone on PYTHONPATH.
# usage: bench/flow_ab.sh OUTDIR BASE_COMMIT NEW_COMMIT [REPS]; results in OUTDIR/summary.txt and *.json
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd); base=$2; new=$3; reps=${4:-2}
py=${PYTHON:-$root/.venv/bin/python}
work=$(mktemp -d)
for rep in $(seq 1 "$reps"); do
  for tag in base new; do
    rev=$([ $tag = base ] && echo "$base" || echo "$new")
    d=$work/$tag; rm -rf "$d"; git clone -q "$root" "$d"; git -C "$d" checkout -q "$rev"
    start=$(date -u +%T)
    (cd "$d" && PYTHONPATH=$d /usr/bin/time -f "%e %U %S" -o "$out/time_${tag}_$rep.txt" "$py" bench/flow_cpu.py \
      --json "$out/cpu_${tag}_$rep.json" > "$out/log_${tag}_$rep.txt" 2>&1)
    echo "$tag $rev rep $rep start $start: wall user sys $(cat "$out/time_${tag}_$rep.txt")" | tee -a "$out/summary.txt"
  done
done
rm -rf "$work"
