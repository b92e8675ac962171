#!/bin/bash
# Every registered adaptation variant, with every trunk, on datasets of the shapes a user may bring
# (bench/make_odd_datasets.py: npz and folder, 1 or 3 channels, 2-30 classes, 16×16-64×64, non-square,
# imbalanced, a class missing from a test split, 30 images), at a smoke budget (1 epoch, 1 seed): does the
# whole flow run and exit cleanly, or refuse with a message naming the setting? Accuracies here mean nothing.
#
# usage: bench/generality.sh OUT [CASE...]   (default: every case; start it twice, e.g. under taskset -c 0
#        and -c 1, and the two share the list: each case is claimed once, under OUT/claimed)
# Each case runs `vaeflow run` in its own scratch project OUT/proj/<case> (a copy of params.yaml; not a DVC
# project, so cases do not queue on one project lock); OUT/summary.txt gets "case rc seconds tracebacks".
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd); shift
vaeflow=${VAEFLOW:-$root/.venv/bin/vaeflow}
D=$out/data
[ -f "$D/small_tgt/test.npz" ] || PYTHONPATH=$root "$root/.venv/bin/python" "$root/bench/make_odd_datasets.py" "$D"
ALL="[$(PYTHONPATH=$root "$root/.venv/bin/python" -c 'from vaeflow.variants import NAMES; print(",".join(NAMES))')]"
SMOKE="--set pretrain.epochs=2 --set ae.epochs=2 --set gmm.n_components=[2] --set gmm.max_iter=10
  --set samplers.classifier_epochs=2 --set samplers.latent_components=[1,2] --set eval.iwae_samples=10
  --set eval.iwae_chunk=10 --set adapt.epochs=1 --set adapt.repeats=1 --set adapt.shot.epochs=1
  --set adapt.self_training.rounds=1 --set adapt.self_training.epochs=1 --set adapt.variants=$ALL"
RGB="--set data.source=npz:$D/rgb_src --set data.target=npz:$D/rgb_tgt --set data.channels=3"
LENET="--set vae.arch=lenet --set adapt.backbone=lenet"
CONVNET="--set adapt.backbone=convnet --set adapt.warm_start=false"
declare -A CASES=(
  [rgb_mlp]="$RGB"
  [rgb_conv]="$RGB --set vae.arch=conv"
  [rgb_lenet]="$RGB $LENET"
  [rgb_convnet]="$RGB $CONVNET"
  [rgb_bernoulli]="$RGB --set data.likelihood=bernoulli --set vae.arch=conv"
  [folder_lenet]="--set data.source=folder:$D/fold_src --set data.target=folder:$D/fold_tgt --set data.channels=3 $LENET"
  [folder_grey_convnet]="--set data.source=folder:$D/fold_src --set data.target=folder:$D/fold_tgt --set data.channels=1 $CONVNET"
  [tiny_lenet]="--set data.source=npz:$D/tiny_src --set data.target=npz:$D/tiny_tgt $LENET"
  [tiny_convnet]="--set data.source=npz:$D/tiny_src --set data.target=npz:$D/tiny_tgt $CONVNET"
  [two_classes_conv]="--set data.source=npz:$D/two_src --set data.target=npz:$D/two_tgt --set vae.arch=conv --set adapt.labels_per_class=1"
  [nonsquare_conv]="--set data.source=npz:$D/nsq_src --set data.target=npz:$D/nsq_tgt --set vae.arch=conv"
  [nonsquare_lenet]="--set data.source=npz:$D/nsq_src --set data.target=npz:$D/nsq_tgt $LENET"
  [nonsquare_convnet]="--set data.source=npz:$D/nsq_src --set data.target=npz:$D/nsq_tgt $CONVNET"
  [classes30_lenet]="--set data.source=npz:$D/many_src --set data.target=npz:$D/many_tgt $LENET"
  [classes30_convnet]="--set data.source=npz:$D/many_src --set data.target=npz:$D/many_tgt $CONVNET"
  [resized_lenet]="$RGB --set data.target=npz:$D/small_tgt --set data.image_size=24 $LENET"
  [sizes_differ]="$RGB --set data.target=npz:$D/small_tgt"  # expected: exit 2, naming data.image_size
  [too_small_lenet]="--set data.source=npz:$D/tiny_src --set data.target=npz:$D/tiny_tgt $LENET --set data.image_size=12"  # exit 2
)
names=("$@"); [ ${#names[@]} -eq 0 ] && names=($(printf '%s\n' "${!CASES[@]}" | sort))
mkdir -p "$out/claimed"
for c in "${names[@]}"; do
  mkdir "$out/claimed/$c" 2>/dev/null || continue  # atomic: two queues given the same list share it
  proj=$out/proj/$c; mkdir -p "$proj"; cp "$root/params.yaml" "$proj/"
  t0=$(date +%s)
  (cd "$proj" && $vaeflow run ${CASES[$c]} $SMOKE > "$out/$c.log" 2>&1)
  echo "$c rc=$? $(( $(date +%s) - t0 ))s tracebacks=$(grep -c Traceback "$out/$c.log")" >> "$out/summary.txt"
done
