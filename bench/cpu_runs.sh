#!/bin/bash
# The real-data presets on this 2-core CPU at a stated budget: the CPU twin of bench/gpu_runs.sh.
#
# Two queues of jobs run in the background, one per core (taskset), one torch thread each. A job is the
# real CLI (`python -m vaeflow stage prepare|pretrain|adapt`, what dvc.yaml calls) in its own directory
# OUT/runs/<job>, with the preset's params and the budget's overrides. Every stage checkpoints (pretrain
# every epoch, adapt every epoch of every variant and repeat), so running this script again, in this
# session or a later one, resumes each job where it stopped; a finished job (OUT/runs/<job>/done) is skipped.
#
# Budget (the same for every variant of a preset, so comparisons are at equal budget):
#   VAE 3 epochs; adapt 5 epochs of 844 steps of batch 64 (MNIST's size: one pass over the larger set),
#   SHOT's target phase 3 of them after source_only's 5; MNIST-100: 3 epochs; 3 repeats (seeds 0, 100, 200
#   of the adapt stage, the same seeds for every variant). Ablations on MNIST→USPS reuse its data and VAE:
#   random initialisation instead of the VAE encoder, and no per-layer BatchNorm.
# The *_15min jobs then spend the issue's whole budget of ≤ 15 min per seed and variant on one core (SHOT
# counted with the source_only run it continues): adapt 12 epochs (SHOT 6 more) on MNIST→USPS, the mean
# teacher 12 epochs on USPS→MNIST, MNIST-100 7 epochs. They reuse their main job's data and VAE, so they
# differ from it in the schedule alone (same seeds, same bn_init=fresh).
# Wave 2 (started while wave 1 still ran: each queue waits for its core), at the main jobs' budget and seeds:
#   - one remedy for the mean teacher's collapsed seed (MNIST→USPS seed 100: every 9 taken for a 7), fixed
#     before it was measured and measured once: class_balance 0.1 instead of French et al.'s 0.005, so that
#     at the collapse check's threshold (a class at 1/4 of its prior) the BCE balance term pulls as hard as
#     SHOT's diversity term (weight 1) does; on all three targets;
#   - the default bn_init=identity on MNIST→USPS (the pretraining question with the VAE's function kept),
#     source_only, adabn and shot (the ones the warm start ablation measured);
#   - a 3-channel target of our own making (bench/make_colour_shift.py: other writers' digits in
#     MNIST-M-style colour textures), every UDA variant.
# Wave 3 (2026-12-05, second session), each job within the issue's ≤ 15 min per seed and variant, counting
# a continuation with the runs it continues (timed per epoch on the earlier jobs: LeNet source epoch ~20 s,
# SHOT ~25 s, mean-teacher ~55 s; convnet ~1.5× LeNet per step, bench note in RESULTS.md):
#   - the deeper backbone (adapt.backbone=convnet, French et al.'s digit net, random init, 7 epochs, SHOT 4:
#     ~12.5 min a seed for shot_mean_teacher with what it continues) on MNIST→USPS, USPS→MNIST and the
#     colour target (there at the 5-epoch budget of the other colour runs, with DANN on the same backbone);
#   - shot_mean_teacher (SHOT, then the mean teacher from SHOT's network) on LeNet: the colour target at
#     the 5-epoch budget.
# Wave 4 (queue 1 only): MNIST with 100 labels on the deeper backbone (see WAVE4_Q1).
# The mean teacher's class_balance is the new default 0.1 in this wave (set after COMMON, so it wins).
#
# usage: bench/cpu_runs.sh start [OUT] [WAVES]  start both queues of each wave in WAVES (default "1 2") in
#                                                the background (resumes; skips finished jobs)
#        bench/cpu_runs.sh status [OUT]  which jobs are done, running, waiting
#        bench/cpu_runs.sh summary [OUT] the table (bench/cpu_summary.py)
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-status}
case $cmd in start|queue|status|summary) ;; *)  # nothing made for a command it does not know (--help, a typo)
  echo "usage: $0 start [OUT] [WAVES] | status [OUT] | summary [OUT]   (OUT default: runs/cpu)" >&2; exit 2;; esac
out=$(mkdir -p "${2:-$root/runs/cpu}" && cd "${2:-$root/runs/cpu}" && pwd)
data=${DATA_ROOT:-$(cd "$root/../shared/data" 2>/dev/null && pwd)}
py=${PYTHON:-$root/.venv/bin/python}
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

# eval.iwae_samples=1: the VAE here is only the warm start (its IWAE bound on 12k test images at k=100
# costs ~40 min on one busy core); the likelihood presets measure it. bn_init=fresh: what these runs were
# measured with (the runs of 2026-12-05 predate bn_init, whose default is now identity).
# mean_teacher.class_balance=0.005: what the runs were measured with (the default became 0.1 after them; the
# *_balance jobs set 0.1 themselves, later on the line, which wins). mean_teacher.align=false likewise (the default
# became true after wave 26; its jobs set it themselves), and dann.ema=0 (0.999 became the default after wave 31, whose
# jobs set it themselves). augment.intensity_flip=0: every wave before 53 ran without the flip, which "auto" (the
# default since wave 53) turns on for the colour and printed targets; waves 53-54 set it themselves.
COMMON="--set device=cpu --set threads=1 --set data.root=$data --set pretrain.epochs=3 --set adapt.repeats=3 --set eval.iwae_samples=1 --set eval.iwae_chunk=1 --set adapt.bn_init=fresh --set adapt.mean_teacher.class_balance=0.005 --set adapt.mean_teacher.align=false --set adapt.dann.ema=0 --set adapt.augment.intensity_flip=0"
UDA="--set adapt.epochs=5 --set adapt.shot.epochs=3"
UDA_VARIANTS="[source_only, adabn, shot, dann, mean_teacher]"
# queue NAME: job lines "NAME PRESET SHARE_FROM overrides..." (SHARE_FROM: a job whose prepared data and VAE
# this one reuses, so an ablation differs from its main run only in what it ablates; - for none)
WAVE1_Q0=(
  "mnist_usps configs/mnist_usps.yaml - $UDA --set adapt.variants=[source_only,adabn,shot,dann,mean_teacher]"
  "mnist_100labels configs/mnist_100labels.yaml - --set adapt.epochs=3 --set adapt.variants=[finetune,fixmatch]"
  "mnist_100labels_15min configs/mnist_100labels.yaml mnist_100labels --set adapt.epochs=7 --set adapt.variants=[finetune,fixmatch]"
  "usps_mnist_15min configs/usps_mnist.yaml usps_mnist --set adapt.epochs=12 --set adapt.variants=[mean_teacher]"
)
WAVE1_Q1=(
  "usps_mnist configs/usps_mnist.yaml - $UDA --set adapt.variants=[source_only,adabn,shot,dann,mean_teacher]"
  "mnist_usps_random_init configs/mnist_usps.yaml mnist_usps $UDA --set adapt.warm_start=false --set adapt.variants=[source_only,adabn,shot]"
  "mnist_usps_no_layer_bn configs/mnist_usps.yaml mnist_usps $UDA --set adapt.layer_bn=false --set adapt.variants=[source_only,adabn]"
  "mnist_usps_15min configs/mnist_usps.yaml mnist_usps --set adapt.epochs=12 --set adapt.shot.epochs=6 --set adapt.variants=[source_only,adabn,shot,mean_teacher]"
)

colour=$out/usps_colour  # wave 2's 3-channel target, made once by bench/make_colour_shift.py
BAL="--set adapt.mean_teacher.class_balance=0.1 --set adapt.variants=[mean_teacher]"
WAVE2_Q0=(
  "mnist_usps_balance configs/mnist_usps.yaml mnist_usps $UDA $BAL"
  "mnist_usps_identity configs/mnist_usps.yaml mnist_usps $UDA --set adapt.bn_init=identity --set adapt.variants=[source_only,adabn,shot]"
)
WAVE2_Q1=(
  "mnist_colour configs/mnist_usps.yaml - $UDA --set data.target=npz:$colour --set data.channels=3 --set adapt.variants=[source_only,adabn,shot,dann,mean_teacher]"
  "usps_mnist_balance configs/usps_mnist.yaml usps_mnist $UDA $BAL"
  "mnist_colour_balance configs/mnist_usps.yaml mnist_colour $UDA --set data.target=npz:$colour --set data.channels=3 $BAL"
)

MT01="--set adapt.mean_teacher.class_balance=0.1"
CONVNET="--set adapt.backbone=convnet --set adapt.warm_start=false --set adapt.head_hidden=256"
WAVE3_Q0=(
  "mnist_usps_convnet configs/mnist_usps.yaml mnist_usps $MT01 $CONVNET --set adapt.epochs=7 --set adapt.shot.epochs=4 --set adapt.variants=[source_only,adabn,shot,shot_mean_teacher,mean_teacher]"
  "mnist_colour_convnet configs/mnist_usps.yaml mnist_colour $MT01 $CONVNET $UDA --set data.target=npz:$colour --set data.channels=3 --set adapt.variants=[source_only,adabn,shot,shot_mean_teacher,dann]"
)
WAVE3_Q1=(
  "mnist_colour_shotmt configs/mnist_usps.yaml mnist_colour $MT01 $UDA --set data.target=npz:$colour --set data.channels=3 --set adapt.variants=[source_only,adabn,shot,shot_mean_teacher]"
  "usps_mnist_convnet configs/usps_mnist.yaml usps_mnist $MT01 $CONVNET --set adapt.epochs=7 --set adapt.shot.epochs=4 --set adapt.variants=[source_only,adabn,shot,shot_mean_teacher]"
)
# Wave 4: few labels on the deeper backbone within the 15-min budget (random init: no VAE of this
# architecture). 3 epochs: the LeNet FixMatch job took 977-1041 s for 7 (over the budget), ~145 s an epoch;
# a first start at 4 epochs took 266-271 s an epoch (convnet, 3 views of batch 64·(1+2·mu)), so 3 fit.
WAVE4_Q1=(
  "mnist_100labels_convnet configs/mnist_100labels.yaml mnist_100labels $CONVNET --set adapt.epochs=3 --set adapt.variants=[finetune,fixmatch]"
)
# Wave 5 (third session): the same 15 min per seed of shot_mean_teacher with the chain's time moved to the
# mean teacher (adapt.mean_teacher.epochs, new). Why, without a target label: the source model's
# source-validation accuracy is flat from epoch 3 on (wave 3: within 0.15 points over epochs 3-7 on both
# presets), so 4 of wave 3's 7 source epochs bought nothing on the source side. Source 3 epochs (~90 s), SHOT
# 3 (~120 s), mean teacher 9 (~70 s each): ~840 s a seed. Same seeds and data as wave 3. Only the first job
# was run (772 s a seed; 98.91 ± 0.06, wave 3's 98.93 ± 0.07): the second's queue gave its core to wave 7.
SHIFTED="--set adapt.epochs=3 --set adapt.shot.epochs=3 --set adapt.mean_teacher.epochs=9 --set adapt.variants=[source_only,shot,shot_mean_teacher]"
WAVE5_Q0=(
  "usps_mnist_convnet_mt9 configs/usps_mnist.yaml usps_mnist $MT01 $CONVNET $SHIFTED"
  "mnist_usps_convnet_mt9 configs/mnist_usps.yaml mnist_usps $MT01 $CONVNET $SHIFTED"
)
# Wave 6 (queue 1, after wave 4): the mean teacher continuing DANN (dann_mean_teacher, new) on the colour target
# where convnet's SHOT lost the source on one seed: DANN keeps training on source labels, so its continuation
# cannot. 5 epochs each (the colour runs' budget): DANN ~320 s + the mean teacher ~360 s a seed. DANN is
# trained again in this job (fused Adam, since wave 3, moves its last digits), so the comparison with it is
# within the job, paired by seed.
WAVE6_Q1=(
  "mnist_colour_convnet_dannmt configs/mnist_usps.yaml mnist_colour $MT01 $CONVNET $UDA --set data.target=npz:$colour --set data.channels=3 --set adapt.variants=[dann,dann_mean_teacher]"
)
# Wave 7 (before wave 6 on queue 1): MNIST with 100 labels, FlexMatch (curriculum thresholds per class, new)
# against FixMatch at the same budget on the preset's LeNet + VAE: 6 epochs (the 7-epoch FixMatch job took
# 977-1041 s a seed under load, over the 15 min). Same data, VAE and seeds as the other MNIST-100 jobs.
WAVE7_Q0=(
  "mnist_100labels_flex6 configs/mnist_100labels.yaml mnist_100labels --set adapt.epochs=6 --set adapt.variants=[flexmatch]"
)
WAVE7_Q1=(
  "mnist_100labels_fix6 configs/mnist_100labels.yaml mnist_100labels --set adapt.epochs=6 --set adapt.variants=[fixmatch]"
)

# Wave 8 (fourth session), MNIST with 100 labels, two questions, each at ≤ 15 min per seed:
#   - queue 0: FlexMatch on the deeper backbone from a random start, 4 epochs (~205 s an epoch: wave 4's
#     FixMatch). Why, before measuring: wave 4's convnet FixMatch lost its first epoch to too few images
#     passing τ (22-53 % after epoch 1), which is what FlexMatch's threshold warm-up addresses;
#   - queue 1: the lecture's question with a better-trained VAE. The bench's VAE has 3 epochs; this job
#     trains its own for 10 (same data and seeds otherwise) and runs FlexMatch for 6 epochs from it, so it
#     pairs with mnist_100labels_flex6 by seed and differs in the warm start alone.
WAVE8_Q0=(
  "mnist_100labels_convnet_flex4 configs/mnist_100labels.yaml mnist_100labels $CONVNET --set adapt.epochs=4 --set adapt.variants=[flexmatch]"
)
WAVE8_Q1=(
  "mnist_100labels_vae10_flex6 configs/mnist_100labels.yaml - --set pretrain.epochs=10 --set adapt.epochs=6 --set adapt.variants=[flexmatch]"
)

# Wave 9 (fourth session, after wave 8 on each core): the mean teacher continuing DANN on MNIST <-> USPS, where
# only SHOT's chain was measured. On the colour target it was the chain that did not fail (wave 6); here it
# is measured at wave 5's shifted schedule (3 epochs before the mean teacher, 9 of the mean teacher: ~750 s
# a seed), so it pairs by seed with usps_mnist_convnet_mt9's shot_mean_teacher.
DANNMT9="--set adapt.epochs=3 --set adapt.mean_teacher.epochs=9 --set adapt.variants=[dann,dann_mean_teacher]"
WAVE9_Q0=(
  "usps_mnist_convnet_dannmt9 configs/usps_mnist.yaml usps_mnist $MT01 $CONVNET $DANNMT9"
)
WAVE9_Q1=(
  "mnist_usps_convnet_dannmt9 configs/mnist_usps.yaml mnist_usps $MT01 $CONVNET $DANNMT9"
)

# Wave 10 (fourth session, queue 1, in place of wave 9's second job, stopped after 8 minutes): wave 8 showed
# that the warm start's training length matters (VAE 10 epochs instead of 3: FlexMatch −0.21 ± 0.08 points of
# error, paired). The preset trains its VAE for up to 50 epochs with early stopping on the validation ELBO
# (no label); this job goes to 20 (~21 min on one core, once for every variant and seed), FlexMatch 6 epochs
# as in wave 8, same data and seeds.
WAVE10_Q1=(
  "mnist_100labels_vae20_flex6 configs/mnist_100labels.yaml - --set pretrain.epochs=20 --set adapt.epochs=6 --set adapt.variants=[flexmatch]"
)

# Wave 11 (queue 0, after wave 9): plain fine-tuning on the 100 labels from the 10- and 20-epoch VAEs, 7 epochs,
# so that it pairs by seed with mnist_100labels_15min's fine-tuning from the 3-epoch VAE: does the longer
# warm start help without the unlabelled images too?
WAVE11_Q0=(
  "mnist_100labels_vae10_finetune7 configs/mnist_100labels.yaml mnist_100labels_vae10_flex6 --set adapt.epochs=7 --set adapt.variants=[finetune]"
  "mnist_100labels_vae20_finetune7 configs/mnist_100labels.yaml mnist_100labels_vae20_flex6 --set adapt.epochs=7 --set adapt.variants=[finetune]"
)

# Wave 12 (fifth session), each at ≤ 15 min a seed, paired by seed with the job it extends:
#   - queue 0: USPS→MNIST, the mean teacher after DANN for 12 epochs instead of 9 (DANN 3 + 12 × ~61 s ≈ 890 s
#     a seed). Why, before measuring: wave 9's three runs still gained 0.05-0.1 over their last 3 epochs
#     (the source-validation accuracy is flat, so the schedule, not the source side, is what is short);
#   - queue 1: MNIST with 100 labels, FlexMatch 7 epochs from the 20-epoch VAE (the warm start its own
#     validation bound picks), ~126 s an epoch: ~880 s a seed, the 15 min filled. Wave 10 used 6.
DANNMT12="--set adapt.epochs=3 --set adapt.mean_teacher.epochs=12 --set adapt.variants=[dann,dann_mean_teacher]"
WAVE12_Q0=(
  "usps_mnist_convnet_dannmt12 configs/usps_mnist.yaml usps_mnist $MT01 $CONVNET $DANNMT12"
)
WAVE12_Q1=(
  "mnist_100labels_vae20_flex7 configs/mnist_100labels.yaml mnist_100labels_vae20_flex6 --set adapt.epochs=7 --set adapt.variants=[flexmatch]"
)
# Wave 13 (after wave 12): MNIST→USPS at wave 5's shifted schedule, both chains, never measured there (wave 5's
# second job gave its core away, wave 9's was stopped): 3 epochs before the mean teacher, 9 of it, same
# data and seeds as wave 3's mnist_usps_convnet, so the two chains pair by seed.
WAVE13_Q0=(
  "mnist_usps_convnet_dannmt9 configs/mnist_usps.yaml mnist_usps $MT01 $CONVNET $DANNMT9"
)
WAVE13_Q1=(
  "mnist_usps_convnet_mt9 configs/mnist_usps.yaml mnist_usps $MT01 $CONVNET $SHIFTED"
)

# Wave 14 (sixth session): the same 15 minutes a seed with adapt.precision=bf16 (bfloat16 autocast; this CPU has
# AVX512-BF16), which makes a step 1.4x (convnet mean teacher, DANN) to 1.65x (LeNet FlexMatch) faster
# (bench/bench_precision.py). The schedules were fixed before any of these runs from the measured step times
# (~47 s a bf16 mean-teacher epoch, ~39 s a DANN epoch, ~80 s a FlexMatch epoch): the budget filled to ~800 s at
# idle speed, with no target label involved. One schedule for both digit directions: DANN 3, mean teacher 14
# (dann_mean_teacher: the chain that did not fail on the colour target, wave 6).
#   - queue 0: USPS→MNIST, then MNIST→USPS, DANN 3 → mean teacher 14, bf16;
#   - queue 1: MNIST with 100 labels, FlexMatch 10 epochs from the 20-epoch VAE, bf16; then the control:
#     USPS→MNIST at wave 12's schedule (DANN 3 → mean teacher 12) in bf16, paired by seed with wave 12's fp32
#     runs, so what bf16 itself does to accuracy is measured apart from the longer schedule.
BF16="--set adapt.precision=bf16"
DANNMT14="--set adapt.epochs=3 --set adapt.mean_teacher.epochs=14 --set adapt.variants=[dann,dann_mean_teacher]"
WAVE14_Q0=(
  "usps_mnist_convnet_dannmt14_bf16 configs/usps_mnist.yaml usps_mnist $MT01 $CONVNET $DANNMT14 $BF16"
  "mnist_usps_convnet_dannmt14_bf16 configs/mnist_usps.yaml mnist_usps $MT01 $CONVNET $DANNMT14 $BF16"
)
WAVE14_Q1=(
  "mnist_100labels_vae20_flex10_bf16 configs/mnist_100labels.yaml mnist_100labels_vae20_flex6 --set adapt.epochs=10 --set adapt.variants=[flexmatch] $BF16"
  "usps_mnist_convnet_dannmt12_bf16 configs/usps_mnist.yaml usps_mnist $MT01 $CONVNET $DANNMT12 $BF16"
)

# Wave 15 (sixth session, queue 1, after wave 14): does bf16 hold on 3-channel data? Wave 6's colour-target job
# (DANN 5 → mean teacher 5, convnet) again in bf16, same data and seeds, so it pairs by seed with wave 6's fp32
# runs. A check of the arithmetic on another kind of data, not a schedule: nothing else changes.
WAVE15_Q1=(
  "mnist_colour_convnet_dannmt_bf16 configs/mnist_usps.yaml mnist_colour $MT01 $CONVNET $UDA --set data.target=npz:$colour --set data.channels=3 --set adapt.variants=[dann,dann_mean_teacher] $BF16"
)

# Wave 16 (seventh session): upper bounds, not schedules. MNIST→USPS stalls at 97.8-98.2 whatever chain fills
# the 15 minutes (waves 3, 5, 9, 13, 14), and the published anchors (98.26, 98.0) sit there too. How high can
# this network go on USPS's test set when nothing has to be adapted? Supervised training with every label,
# at the chain's step count (12 epochs of 844 steps: DANN 3 + mean teacher 9), same augmentation and seeds:
#   - queue 0: `oracle` on USPS's own training labels (7,291 images less val); then `oracle` on a target
#     made of both domains' training images with their labels, scored on the same USPS test set
#     (bench/make_joint_target.py): the bound for a method that also has the source's labels;
#   - queue 1: `oracle` on MNIST's training labels for USPS→MNIST.
# A bound reads target labels by definition; nothing here selects a setting of any other variant.
# pretrain.epochs=1: the VAE is not used (warm_start=false), but the stage chain needs its file.
ORACLE12="--set pretrain.epochs=1 --set adapt.epochs=12 --set adapt.variants=[oracle]"
joint=$out/mnist_usps_joint  # made once by bench/make_joint_target.py (queue 0, before its jobs)
WAVE16_Q0=(
  "mnist_usps_convnet_oracle12 configs/mnist_usps.yaml - $CONVNET $ORACLE12"
  "mnist_usps_convnet_joint_oracle12 configs/mnist_usps.yaml - $CONVNET $ORACLE12 --set data.target=npz:$joint"
)
WAVE16_Q1=(
  "usps_mnist_convnet_oracle12 configs/usps_mnist.yaml - $CONVNET $ORACLE12"
)

# Wave 17 (seventh session): AdaMatch (Berthelot et al. 2022; `adamatch`, new), FixMatch carried over to domain
# adaptation, the method behind this bench's best few-label result (FlexMatch/FixMatch), from a random
# start on the deeper trunk, fp32, the paper's settings except mu=1 (CPU budget). Schedules fixed before any
# run from a measured step (convnet, one thread: AdaMatch 138 ms, the mean teacher 52 ms, DANN 46 ms; 3
# channels ~1.4× more): 6 epochs on the digit pairs (~730 s a seed at idle speed), 4 on the colour target
# (~660 s). Same data and seeds as the earlier waves, so each pairs by seed with the chains already measured
# (MNIST→USPS: waves 13-14; USPS→MNIST: wave 12; colour: wave 6).
#   - queue 0, after wave 16: MNIST→USPS;
#   - queue 1, after wave 16: USPS→MNIST, then the colour target (data.channels=3).
ADAMATCH="--set adapt.variants=[adamatch]"
WAVE17_Q0=(
  "mnist_usps_convnet_adamatch6 configs/mnist_usps.yaml mnist_usps_convnet_oracle12 $CONVNET $ADAMATCH --set adapt.epochs=6"
)
WAVE17_Q1=(
  "usps_mnist_convnet_adamatch6 configs/usps_mnist.yaml usps_mnist_convnet_oracle12 $CONVNET $ADAMATCH --set adapt.epochs=6"
  "mnist_colour_convnet_adamatch4 configs/mnist_usps.yaml - $CONVNET $ADAMATCH --set pretrain.epochs=1 --set adapt.epochs=4 --set data.target=npz:$colour --set data.channels=3"
)

# Wave 18 (queue 0, after wave 17): the joint bound at 3× the step count. Wave 16's joint oracle (every label of
# both domains, 12 epochs) scored 98.34 ± 0.08 on USPS's test set, under the 98.5 goal for adaptation without
# any target label. Is that bound the schedule's or the network's? The same job for 36 epochs (~13 min a seed).
WAVE18_Q0=(
  "mnist_usps_convnet_joint_oracle36 configs/mnist_usps.yaml mnist_usps_convnet_joint_oracle12 $CONVNET --set adapt.epochs=36 --set adapt.variants=[oracle] --set data.target=npz:$joint"
)

# Wave 19 (seventh session): bf16's first suspect. Wave 15 found bf16 costing DANN 1.99 ± 0.33 points on the
# colour target at an equal schedule. Since then the domain head (DANN's adversary) runs in float32 under
# bf16 autocast (Classifier.domain_logits), kept whatever this measures: the same principle as the float32
# class logits. Wave 15's DANN (convnet, 5 epochs, bf16, same data and seeds) again with that change, paired
# by seed with the same job run from a worktree of efffd75 (the code before the change; this script copied
# into it), which also checks that wave 15's DANN mean (68.34) reproduces:
#   - queue 1: with the float32 domain head (this commit's code);
#   - queue 0, from the efffd75 worktree: without it.
DANN_BF16="$MT01 $CONVNET $UDA --set data.target=npz:$colour --set data.channels=3 --set adapt.variants=[dann] $BF16"
WAVE19_Q0=(
  "mnist_colour_convnet_dann_bf16_before configs/mnist_usps.yaml mnist_colour_convnet_adamatch4 $DANN_BF16"
)
WAVE19_Q1=(
  "mnist_colour_convnet_dann_bf16_fp32head configs/mnist_usps.yaml mnist_colour_convnet_adamatch4 $DANN_BF16"
)

# Wave 20 (eighth session): the joint bound with each domain normalised on its own. Wave 16's joint oracle trained on
# one target made of both domains, so BatchNorm mixed MNIST and USPS images in every batch, which no adaptation
# method here does. `joint_oracle` (new) reads the same labels (source labels + every target training label) but
# passes a source batch and a target batch separately, and is scored with the target's statistics (AdaBN), as
# DANN is. 12 epochs of 844 steps, the chain's step count; same data, VAE file and seeds as wave 16's oracles.
#   - queue 0: MNIST→USPS; queue 1: USPS→MNIST.
JOINT12="--set pretrain.epochs=1 --set adapt.epochs=12 --set adapt.variants=[joint_oracle]"
WAVE20_Q0=(
  "mnist_usps_convnet_joint_oracle_dbn12 configs/mnist_usps.yaml mnist_usps_convnet_oracle12 $CONVNET $JOINT12"
)
WAVE20_Q1=(
  "usps_mnist_convnet_joint_oracle_dbn12 configs/usps_mnist.yaml usps_mnist_convnet_oracle12 $CONVNET $JOINT12"
)

# Wave 21 (ninth session): the recommendation in docs/variants.md ("On data of your own": list dann_mean_teacher)
# checked out of sample, on a domain pair no earlier run has seen: printed colour digits (bench/make_printed_digits.py,
# SynNumbers/SVHN-like: fonts of this machine, neighbours at the sides, random colours, rotation, blur; 20,000
# training images) as the source, MNIST (read as 3 channels) as the target. Fixed before any run: the colour
# runs' budget and trunk (convnet from a random start, 5 epochs of 844 steps each, SHOT 3; DANN 5 → mean
# teacher 5 ~660 s a seed, source 5 → SHOT 3 → mean teacher 5 ~810 s), the mean teacher's class_balance 0.1,
# 3 seeds. The prediction it tests: dann_mean_teacher above dann on every seed, no failed seed; whatever the
# other variants do is reported beside it.
#   - queue 0: dann and dann_mean_teacher, then the mean teacher alone;
#   - queue 1: source_only, adabn, shot, shot_mean_teacher (the same data, VAE file and seeds).
printed=$out/printed_digits
PRINTED="$MT01 $CONVNET $UDA --set pretrain.epochs=1 --set data.source=npz:$printed --set data.channels=3 --set data.image_size=28"
WAVE21_Q0=(
  "printed_mnist_convnet_dannmt configs/usps_mnist.yaml - $PRINTED --set adapt.variants=[dann,dann_mean_teacher]"
  "printed_mnist_convnet_mt configs/usps_mnist.yaml printed_mnist_convnet_dannmt $PRINTED --set adapt.variants=[mean_teacher]"
)
WAVE21_Q1=(
  "printed_mnist_convnet_shotmt configs/usps_mnist.yaml printed_mnist_convnet_dannmt $PRINTED --set adapt.variants=[source_only,adabn,shot,shot_mean_teacher]"
)

# Wave 22 (ninth session, after wave 21): the revised advice (list both chains, read the label-free flags) checked
# on a fifth pair, the reverse one: MNIST (read as 3 channels) → the printed colour digits, like MNIST → SVHN,
# where published methods mostly fail. Same trunk, budget and seeds as wave 21, fixed before any run. The
# prediction it tests: every run of the two chains that ends below source-only's run of the same seed is
# flagged by a label-free check (collapse or source retention).
#   - queue 0: dann and dann_mean_teacher, then the mean teacher alone;
#   - queue 1: source_only, adabn, shot, shot_mean_teacher.
TO_PRINTED="$MT01 $CONVNET $UDA --set pretrain.epochs=1 --set data.target=npz:$printed --set data.channels=3 --set data.image_size=28"
WAVE22_Q0=(
  "mnist_printed_convnet_dannmt configs/mnist_usps.yaml - $TO_PRINTED --set adapt.variants=[dann,dann_mean_teacher]"
  "mnist_printed_convnet_mt configs/mnist_usps.yaml mnist_printed_convnet_dannmt $TO_PRINTED --set adapt.variants=[mean_teacher]"
)
WAVE22_Q1=(
  "mnist_printed_convnet_shotmt configs/mnist_usps.yaml mnist_printed_convnet_dannmt $TO_PRINTED --set adapt.variants=[source_only,adabn,shot,shot_mean_teacher]"
)

# Wave 23 (eleventh session): the two digit presets' best chains again, on the current code (every figure of waves
# 12-13 predates the EMA warm-up and the later fixes), keeping their checkpoints so that a scoring rule can be
# measured on the same weights without training (bench/bench_tta.py). Same settings, data and seeds as waves 12
# and 13, so each run pairs by seed with the one it repeats. Fixed before any run; reported whatever it gives.
#   - queue 0: USPS→MNIST, DANN 3 → mean teacher 12 (wave 12);
#   - queue 1: MNIST→USPS, SHOT → mean teacher 9 then DANN 3 → mean teacher 9 (wave 13).
WAVE23_Q0=(
  "usps_mnist_convnet_dannmt12 configs/usps_mnist.yaml - $MT01 $CONVNET $DANNMT12"
)
WAVE23_Q1=(
  "mnist_usps_convnet_mt9 configs/mnist_usps.yaml - $MT01 $CONVNET $SHIFTED"
  "mnist_usps_convnet_dannmt9 configs/mnist_usps.yaml mnist_usps_convnet_mt9 $MT01 $CONVNET $DANNMT9"
)

# Wave 24 (twelfth session): a wider zoom in the training warp, adapt.augment.scale 0.1 → 0.3 (zoom drawn from
# [0.7, 1.3]), nothing else changed. Why, before any run: the domains' digits differ in size, measured on unlabelled
# training images only (median height of the pixels that differ from the border colour by > 30 % of the image's
# range): USPS 28 px against MNIST's 20 (ratio 0.71), the printed digits 15 against MNIST's 20. A zoom of ±10 %
# spans neither; ±30 % spans both. Not chosen from any accuracy. Rule, fixed before any run: adopt it for the
# digit chains only if, on the development pair printed digits → MNIST (wave 21's jobs, same seeds), both
# mean-teacher variants gain on average over the seeds (paired Δ > 0) with no run newly flagged, and on the colour
# target the DANN → mean teacher runs are neither flagged nor behind DANN. The presets' chains (waves 23's) run
# after, for the record, whatever the rule decides. Jobs share data and models with jobs of waves 17, 21 and 23,
# so run them in the same OUT (or link those jobs' folders into OUT/runs).
#   - queue 0: printed → MNIST, the mean teacher, then source → SHOT → mean teacher;
#     then USPS→MNIST, DANN 3 → mean teacher 12;
#   - queue 1: the colour target, DANN 5 → mean teacher 5; then MNIST→USPS, SHOT → mean teacher 9.
SCALE30="--set adapt.augment.scale=0.3"
WAVE24_Q0=(
  "printed_mnist_convnet_mt_scale30 configs/usps_mnist.yaml printed_mnist_convnet_dannmt $PRINTED --set adapt.variants=[mean_teacher] $SCALE30"
  "printed_mnist_convnet_shotmt_scale30 configs/usps_mnist.yaml printed_mnist_convnet_dannmt $PRINTED --set adapt.variants=[source_only,adabn,shot,shot_mean_teacher] $SCALE30"
  "usps_mnist_convnet_dannmt12_scale30 configs/usps_mnist.yaml usps_mnist_convnet_dannmt12 $MT01 $CONVNET $DANNMT12 $SCALE30"
)
WAVE24_Q1=(
  "mnist_colour_convnet_dannmt_scale30 configs/mnist_usps.yaml mnist_colour_convnet_adamatch4 $MT01 $CONVNET $UDA --set data.target=npz:$colour --set data.channels=3 --set adapt.variants=[dann,dann_mean_teacher] $SCALE30"
  "mnist_usps_convnet_mt9_scale30 configs/mnist_usps.yaml mnist_usps_convnet_mt9 $MT01 $CONVNET $SHIFTED $SCALE30"
)

# Wave 25 (twelfth session, after wave 24): the control for wave 24's colour target. Wave 24 compared its DANN → mean
# teacher runs with wave 6's, from older code (before the EMA warm-up). The same job at the preset's zoom (±10 %)
# on the current code, same data and seeds, so that the collapse can be laid to the zoom or not. Fixed before it ran;
# it decides nothing about wave 24, whose rule has already rejected the zoom. Queue 1: wave 21's printed-digit jobs
# again on the current code (its baseline for wave 24, from the ninth session's code).
WAVE25_Q0=(
  "mnist_colour_convnet_dannmt_scale10 configs/mnist_usps.yaml mnist_colour_convnet_adamatch4 $MT01 $CONVNET $UDA --set data.target=npz:$colour --set data.channels=3 --set adapt.variants=[dann,dann_mean_teacher]"
)
WAVE25_Q1=(
  "printed_mnist_convnet_shotmt_scale10 configs/usps_mnist.yaml printed_mnist_convnet_dannmt $PRINTED --set adapt.variants=[source_only,adabn,shot,shot_mean_teacher]"
  "printed_mnist_convnet_mt_scale10 configs/usps_mnist.yaml printed_mnist_convnet_dannmt $PRINTED --set adapt.variants=[mean_teacher]"
)

# Wave 26 (thirteenth session): distribution alignment in the mean teacher, adapt.mean_teacher.align=true, nothing else.
# Why, before any run: on the colour target two of three DANN → mean teacher runs (wave 25, current code) collapsed a
# class (nearly every 9 taken for a 4) from their first mean-teacher epoch on. The class-balance term (0.1) acts on the
# student's batch mean; what drives a collapse is the teacher's confident targets. ReMixMatch's alignment (as AdaMatch
# uses it, one implementation here) acts on those: teacher probabilities × labelled class shares / the teacher's mean
# prediction over its last 128 unlabelled batches, renormalised, before the threshold. It assumes the domains share
# their class frequencies, as the class-balance term and the collapse check already do. Not chosen from any accuracy.
# Rule, fixed before any run: make align=true the default of every mean-teacher variant only if, against wave 25's
# jobs (same data, seeds and code but for the option): (a) on the colour target, DANN → mean teacher has fewer runs
# flagged than wave 25's 2 of 3 and gains on average (paired Δ > 0); (b) on printed digits → MNIST, the mean teacher
# alone and SHOT → mean teacher each lose no more than 0.10 on average; (c) no run there is newly flagged. The
# presets' chains (wave 23's jobs) run after, for the record, whatever the rule decides. The first stages (DANN,
# source-only, SHOT) retrain, since the option is part of every run's fingerprint: they must reproduce wave 25's.
#   - queue 0: the colour target, DANN 5 → mean teacher 5; then USPS→MNIST, DANN 3 → mean teacher 12;
#   - queue 1: printed → MNIST, source → SHOT → mean teacher, then the mean teacher alone; then MNIST→USPS, SHOT → mean
#     teacher 9.
ALIGN="--set adapt.mean_teacher.align=true"
WAVE26_Q0=(
  "mnist_colour_convnet_dannmt_align configs/mnist_usps.yaml mnist_colour_convnet_adamatch4 $MT01 $CONVNET $UDA --set data.target=npz:$colour --set data.channels=3 --set adapt.variants=[dann,dann_mean_teacher] $ALIGN"
  "usps_mnist_convnet_dannmt12_align configs/usps_mnist.yaml usps_mnist_convnet_dannmt12 $MT01 $CONVNET $DANNMT12 $ALIGN"
)
WAVE26_Q1=(
  "printed_mnist_convnet_shotmt_align configs/usps_mnist.yaml printed_mnist_convnet_dannmt $PRINTED --set adapt.variants=[source_only,adabn,shot,shot_mean_teacher] $ALIGN"
  "printed_mnist_convnet_mt_align configs/usps_mnist.yaml printed_mnist_convnet_dannmt $PRINTED --set adapt.variants=[mean_teacher] $ALIGN"
  "mnist_usps_convnet_mt9_align configs/mnist_usps.yaml mnist_usps_convnet_mt9 $MT01 $CONVNET $SHIFTED $ALIGN"
)

# Wave 27 (thirteenth session, while wave 26 ran, after its colour and printed SHOT jobs had ended; record only, it
# decides nothing): what wave 26's rule would change beyond the jobs it reads.
#   - queue 0: MNIST with 100 labels, mean_teacher_few (its preset lists it; the option would apply to it too) without
#     and with alignment, 3 epochs, same data, VAE and seeds (the first job makes them);
#   - queue 1: printed digits → MNIST, DANN → mean teacher with alignment (wave 21's job: two of three runs collapsed
#     there, from a DANN that fell below the source network).
WAVE27_Q0=(
  "mnist_100labels_mtfew configs/mnist_100labels.yaml - $MT01 --set adapt.epochs=3 --set adapt.variants=[mean_teacher_few]"
  "mnist_100labels_mtfew_align configs/mnist_100labels.yaml mnist_100labels_mtfew $MT01 --set adapt.epochs=3 --set adapt.variants=[mean_teacher_few] $ALIGN"
)
WAVE27_Q1=(
  "printed_mnist_convnet_dannmt_align configs/usps_mnist.yaml printed_mnist_convnet_dannmt $PRINTED --set adapt.variants=[dann,dann_mean_teacher] $ALIGN"
)

# Wave 28 (thirteenth session, after wave 26's rule had adopted alignment; record only): does alignment blind the
# collapse check? Alignment pulls the teacher's predicted class shares towards the labelled ones, which is what that
# check reads. On MNIST → the printed digits nothing adapted and every mean-teacher run was flagged (wave 22): the same
# jobs with alignment, same data and seeds. If they score as low and are no longer flagged, the check has lost its use.
#   - queue 0: the mean teacher alone; queue 1: DANN → mean teacher.
WAVE28_Q0=(
  "mnist_printed_convnet_mt_align configs/mnist_usps.yaml mnist_printed_convnet_dannmt $TO_PRINTED --set adapt.variants=[mean_teacher] $ALIGN"
)
WAVE28_Q1=(
  "mnist_printed_convnet_dannmt_align configs/mnist_usps.yaml mnist_printed_convnet_dannmt $TO_PRINTED --set adapt.variants=[dann,dann_mean_teacher] $ALIGN"
)

# Wave 29 (thirteenth session; record only): wave 27 found mean_teacher_few at 2.29 ± 0.05 % error on MNIST with 100
# labels after 3 epochs (86 s a seed; alignment on or off alike), where earlier sessions had it behind fine-tuning. The
# same job given the rest of the ≤ 15 min a seed: 25 epochs (~29 s an epoch on a busy core), current defaults
# (alignment on), same data, VAE (3 epochs) and seeds. Queue 0, before wave 28's.
WAVE29_Q0=(
  "mnist_100labels_mtfew25 configs/mnist_100labels.yaml mnist_100labels_mtfew $MT01 --set adapt.epochs=25 --set adapt.variants=[mean_teacher_few] $ALIGN"
)

# Wave 30 (fourteenth session): what alignment pulls towards, adapt.mean_teacher.align_to=continued, nothing else.
# Why, before any run: wave 26 aligned the teacher to the labelled (source) class shares, which assumes the domains
# share them; the digit presets lost 0.3-0.5 where they do not (USPS's 0 is 16 %, MNIST's ~10 %). A chain's mean
# teacher continues a network already adapted to the target (DANN, SHOT): its mean prediction on the unlabelled
# images, fixed at the start, is a label-free estimate of the target's own shares, and aligning to it still stops
# the teacher drifting towards a collapse. Its risk: a continued network whose shares are wrong (a DANN at 31-50 %
# on printed digits) pins them. Variants that continue nothing are unchanged (they align to the labelled shares).
# Rule, fixed before any run: make align_to=continued the default only if, against waves 26-27's aligned jobs (same
# data, seeds and code but for the option), paired by seed: (a) on the colour target (MNIST → USPS in colour, whose
# shares are USPS's), DANN → mean teacher has no run flagged and gains on average (Δ > 0); (b) on printed digits →
# MNIST, SHOT → mean teacher loses no more than 0.10 on average; (c) there, DANN → mean teacher loses no more than
# 1.0 on average (its seeds spread over 80-98 %); (d) no run of these three jobs is newly flagged. The presets'
# chains (wave 26's) run after, for the record, whatever the rule decides. DANN, source-only and SHOT retrain (the
# option is in every run's fingerprint) and must reproduce waves 26-27 to the last digit.
#   - queue 0: the colour target, DANN 5 → mean teacher 5; then USPS→MNIST, DANN 3 → mean teacher 12;
#   - queue 1: printed → MNIST, source → SHOT → mean teacher, then DANN → mean teacher; then MNIST→USPS, SHOT → mean
#     teacher 9.
CONT="$ALIGN --set adapt.mean_teacher.align_to=continued"
WAVE30_Q0=(
  "mnist_colour_convnet_dannmt_cont configs/mnist_usps.yaml mnist_colour_convnet_adamatch4 $MT01 $CONVNET $UDA --set data.target=npz:$colour --set data.channels=3 --set adapt.variants=[dann,dann_mean_teacher] $CONT"
  "usps_mnist_convnet_dannmt12_cont configs/usps_mnist.yaml usps_mnist_convnet_dannmt12 $MT01 $CONVNET $DANNMT12 $CONT"
)
WAVE30_Q1=(
  "printed_mnist_convnet_shotmt_cont configs/usps_mnist.yaml printed_mnist_convnet_dannmt $PRINTED --set adapt.variants=[source_only,adabn,shot,shot_mean_teacher] $CONT"
  "printed_mnist_convnet_dannmt_cont configs/usps_mnist.yaml printed_mnist_convnet_dannmt $PRINTED --set adapt.variants=[dann,dann_mean_teacher] $CONT"
  "mnist_usps_convnet_mt9_cont configs/mnist_usps.yaml mnist_usps_convnet_mt9 $MT01 $CONVNET $SHIFTED $CONT"
)

# Wave 31 (fourteenth session, after wave 30 on each core): DANN scored as a weight average, adapt.dann.ema=0.999,
# nothing else (alignment to the labelled shares, the default). Why, before any run: DANN's target accuracy moves by
# 10-20 points between epochs (wave 19; the colour target's DANN ends at 64-74 %), so its last step, which is scored
# and which dann_mean_teacher continues, lands anywhere on that path. An EMA of the weights over ~1/(1 − ema) steps
# (SWA's idea; SHOT and FixMatch here score one already) is a steadier point; 0.999 is FixMatch's, about one epoch of
# these pairs at batch 64. The average is what is scored and what a continuation starts from.
# Rule, fixed before any run: make dann.ema=0.999 the default only if, against waves 26-27's aligned jobs (same data,
# seeds and code but for the option), paired by seed: (a) DANN gains on average on both the colour target and printed
# digits → MNIST; (b) DANN → mean teacher loses no more than 0.3 on average on the colour target and 1.0 on the printed
# digits (its seeds spread over 80-98 %); (c) no run of these jobs is newly flagged. USPS→MNIST's chain (DANN 3 → mean
# teacher 12) runs after, for the record, whatever the rule decides.
#   - queue 0: the colour target, DANN 5 → mean teacher 5; then USPS→MNIST, DANN 3 → mean teacher 12;
#   - queue 1: printed → MNIST, DANN 5 → mean teacher 5.
DEMA="$ALIGN --set adapt.dann.ema=0.999"
WAVE31_Q0=(
  "mnist_colour_convnet_dannmt_ema configs/mnist_usps.yaml mnist_colour_convnet_adamatch4 $MT01 $CONVNET $UDA --set data.target=npz:$colour --set data.channels=3 --set adapt.variants=[dann,dann_mean_teacher] $DEMA"
  "usps_mnist_convnet_dannmt12_ema configs/usps_mnist.yaml usps_mnist_convnet_dannmt12 $MT01 $CONVNET $DANNMT12 $DEMA"
)
WAVE31_Q1=(
  "printed_mnist_convnet_dannmt_ema configs/usps_mnist.yaml printed_mnist_convnet_dannmt $PRINTED --set adapt.variants=[dann,dann_mean_teacher] $DEMA"
)

# Wave 32 (fifteenth session; record only, it decides no default): the digit presets' chains given the rest of the
# issue's ≤ 15 min a seed at today's speed. Waves 30-31 timed them on these cores with both queues busy: USPS→MNIST's
# DANN 3 epochs ~107 s and its mean teacher ~37.5 s an epoch (425-464 s for 12); MNIST→USPS's source 3 epochs ~52 s,
# SHOT 3 ~54 s, its mean teacher ~39.5 s an epoch (347-367 s for 9). The schedule, fixed from those times alone before
# any run (about 10 % kept for load): the mean teacher 18 epochs on both, ~780 and ~820 s a seed. Current defaults
# (alignment to the labelled shares, DANN's weight average), same data, VAE and seeds as waves 30-31's jobs.
#   - queue 0: USPS→MNIST, DANN 3 → mean teacher 18; queue 1: MNIST→USPS, source 3, SHOT 3 → mean teacher 18.
# Measured (18:54-19:43 UTC): USPS→MNIST 99.00 ± 0.08 (785-826 s a seed), MNIST→USPS 97.46 ± 0.56 (bench/RESULTS.md).
DANNMT18="--set adapt.epochs=3 --set adapt.mean_teacher.epochs=18 --set adapt.variants=[dann,dann_mean_teacher]"
SHOTMT18="--set adapt.epochs=3 --set adapt.shot.epochs=3 --set adapt.mean_teacher.epochs=18 --set adapt.variants=[source_only,shot,shot_mean_teacher]"
WAVE32_Q0=(
  "usps_mnist_convnet_dannmt18 configs/usps_mnist.yaml usps_mnist_convnet_dannmt12 $MT01 $CONVNET $DANNMT18 $DEMA"
)
WAVE32_Q1=(
  "mnist_usps_convnet_shotmt18 configs/mnist_usps.yaml mnist_usps_convnet_mt9 $MT01 $CONVNET $SHOTMT18 $DEMA"
)

# Wave 33 (fifteenth session, after wave 32 on each core): DANN's average capped at a fifth of its run,
# adapt.dann.ema_horizon=0.2, nothing else. Why, before any run: with ema 0.999 and the warm-up min(ema, 1 − 1/t) a run
# under 1,000 steps scores the mean of all its students, its first steps' too: the default flow's DANN (540 steps) went
# from 0.918 to 0.885 when wave 31's average became the default (read after that rule had decided). A cap of
# 1 − 1/(0.2·steps) keeps the last fifth of the run in the average: 108 steps there, ~830 (decay ~0.9988, about what
# 0.999 gives) on these 5-epoch pairs, so on them it should change little. 0.2 is the fraction written down at the
# end of the fourteenth session, before this wave; it is not tuned.
# Rule, fixed before any run: make ema_horizon=0.2 the default only if, paired by seed with wave 31's jobs (same data,
# seeds and code but for the option): (a) the default flow's DANN (`vaeflow run`, digits, 3 seeds) gains, the case it
# is for; (b) DANN → mean teacher loses no more than 0.3 on average on the colour target and on printed digits →
# MNIST, and DANN alone no more than 0.5 on each; (c) no run of these jobs is newly flagged. If adopted, USPS→MNIST's
# record chain is rerun with it.
#   - queue 0: the colour target, DANN 5 → mean teacher 5; queue 1: printed → MNIST, DANN 5 → mean teacher 5.
# Measured (19:37-20:12 UTC): rejected by (b), printed DANN −0.53 ± 0.27 (bench/RESULTS.md); USPS→MNIST's rerun with the
# cap, queued for the case of adoption, was stopped after about five minutes, unscored.
HORIZON="$DEMA --set adapt.dann.ema_horizon=0.2"
WAVE33_Q0=(
  "mnist_colour_convnet_dannmt_horizon configs/mnist_usps.yaml mnist_colour_convnet_adamatch4 $MT01 $CONVNET $UDA --set data.target=npz:$colour --set data.channels=3 --set adapt.variants=[dann,dann_mean_teacher] $HORIZON"
)
WAVE33_Q1=(
  "printed_mnist_convnet_dannmt_horizon configs/usps_mnist.yaml printed_mnist_convnet_dannmt $PRINTED --set adapt.variants=[dann,dann_mean_teacher] $HORIZON"
)

# Wave 35 (fifteenth session; record only): wave 32's USPS→MNIST chain met the 99.0 goal at its threshold (29,700 of
# 30,000), so four more seeds of the same job, to say how far that holds; every figure reported whatever it shows. The
# adapt seed is seed + 100·r: seed 1 and seed 2, two repeats each (adapt seeds 1, 101 on queue 0; 2, 102 on queue 1),
# same data and VAE (prepare and pretrain are shared, so `seed` changes the adapt stage alone).
# Measured (20:24-20:59 UTC): 97.67, 99.16, 99.04, 98.99; all seven seeds 98.84 ± 0.52 (bench/RESULTS.md).
WAVE35_Q0=(
  "usps_mnist_convnet_dannmt18_s1 configs/usps_mnist.yaml usps_mnist_convnet_dannmt12 $MT01 $CONVNET $DANNMT18 $DEMA --set seed=1 --set adapt.repeats=2"
)
WAVE35_Q1=(
  "usps_mnist_convnet_dannmt18_s2 configs/usps_mnist.yaml usps_mnist_convnet_dannmt12 $MT01 $CONVNET $DANNMT18 $DEMA --set seed=2 --set adapt.repeats=2"
)

# Wave 36 (sixteenth session; both queues): the mean teacher's alignment with a slack of 2,
# adapt.mean_teacher.align_slack=2, nothing else. Why, before any run: alignment to the labelled (source) shares
# assumes the domains share them; the digit sets do not (USPS's 0 is 16 %, MNIST's 10 %), and there alignment cost
# 0.3-0.5 points and one seed in three or seven drifted 1.2-1.3 points down on USPS→MNIST (waves 26, 30, 35; none did
# without it), while on the colour target it stopped two of three runs collapsing a class (wave 26). With a slack s a
# class whose recent share is within [prior/s, prior·s] is left alone and one beyond is pulled back to the band's edge:
# class shares may differ by up to s between domains unopposed, a collapse is still opposed. s = 2, fixed before any run:
# the digit sets' shares differ by at most 1.7× (so alignment should be idle there), the collapse check flags a class at
# 1/4 of its share (so a collapse is opposed well before it is flagged).
# This session's box is not the earlier waves' (an Intel Xeon with AMX, not the AMD EPYC): the default flow's figures
# differ from the AMD's in the second digit, so nothing here pairs with an earlier wave. The baselines are wave 31's
# jobs (align_slack 1, the default) rerun on this box (the *_base jobs), queued after the slack jobs on each core.
# Rule, fixed before any run: make align_slack=2 the default only if, paired by seed with the *_base jobs (DANN, which
# does not read the option, must be bit-identical between the two, else the pairing is void and the rule not
# applied): (a) on the colour target DANN → mean teacher loses no more than 0.3 on average and no run is flagged;
# (b) on printed digits → MNIST DANN → mean teacher loses no more than 0.3 on average; (c) no run of these jobs is
# newly flagged. The baselines double the development jobs, which then fill the session: the presets' chains are
# wave 37, written down, not run here. (Written before the runs: "on this box the chains take ~1.5× their AMD time, a
# convnet step 80 ms". That step shared its core with a job; with a core of its own it costs what it did on the AMD,
# 67.8 ms against 68.9, bench/bench_precision.py.)
#   - queue 0: the colour target, DANN 5 → mean teacher 5, slack then base;
#   - queue 1: printed → MNIST, DANN 5 → mean teacher 5, slack then base.
# These jobs prepare their own data (the scratch of the earlier waves is gone); the convnet starts at random, so the
# VAE (1 epoch here) is not read.
# Measured (21:44-23:08 UTC): DANN bit-identical in both jobs of each pair; rejected by (a), (b) and (c): colour
# DANN → mean teacher 87.64 ± 8.01 against 94.02 ± 0.60 (one run newly flagged), printed 92.69 ± 8.53 against
# 97.67 ± 0.05 (bench/RESULTS.md).
SLACK="$DEMA --set adapt.mean_teacher.align_slack=2"
WAVE36_Q0=(
  "mnist_colour_convnet_dannmt_slack configs/mnist_usps.yaml - $MT01 $CONVNET $UDA --set pretrain.epochs=1 --set data.target=npz:$colour --set data.channels=3 --set adapt.variants=[dann,dann_mean_teacher] $SLACK"
  "mnist_colour_convnet_dannmt_base configs/mnist_usps.yaml mnist_colour_convnet_dannmt_slack $MT01 $CONVNET $UDA --set pretrain.epochs=1 --set data.target=npz:$colour --set data.channels=3 --set adapt.variants=[dann,dann_mean_teacher] $DEMA"
)
WAVE36_Q1=(
  "printed_mnist_convnet_dannmt_slack configs/usps_mnist.yaml - $PRINTED --set adapt.variants=[dann,dann_mean_teacher] $SLACK"
  "printed_mnist_convnet_dannmt_base configs/usps_mnist.yaml printed_mnist_convnet_dannmt_slack $PRINTED --set adapt.variants=[dann,dann_mean_teacher] $DEMA"
)
# Wave 37 (written down in the sixteenth session, not run there): the presets' chains with align_slack 2 and without,
# on one box, paired by seed; the schedule to be fixed from that box's timings before any run.
WAVE37_Q0=(
  "usps_mnist_convnet_dannmt18_slack configs/usps_mnist.yaml - $MT01 $CONVNET $DANNMT18 $SLACK --set pretrain.epochs=1"
  "usps_mnist_convnet_dannmt18_base configs/usps_mnist.yaml usps_mnist_convnet_dannmt18_slack $MT01 $CONVNET $DANNMT18 $DEMA --set pretrain.epochs=1"
)
WAVE37_Q1=(
  "mnist_usps_convnet_shotmt18_slack configs/mnist_usps.yaml - $MT01 $CONVNET $SHOTMT18 $SLACK --set pretrain.epochs=1"
  "mnist_usps_convnet_shotmt18_base configs/mnist_usps.yaml mnist_usps_convnet_shotmt18_slack $MT01 $CONVNET $SHOTMT18 $DEMA --set pretrain.epochs=1"
)

# Wave 38 (sixteenth session; record only, it decides nothing): the presets' chains at today's defaults on the Intel
# box, one seed each (adapt seed 0), to time a seed there against the 15 minutes and to see whether the AMD's figures
# hold on another box at all. Same jobs as wave 32's, repeats 1.
#   - queue 0: USPS→MNIST, DANN 3 → mean teacher 18; queue 1: MNIST→USPS, source 3, SHOT 3 → mean teacher 18.
WAVE38_Q0=(
  "usps_mnist_convnet_dannmt18_intel configs/usps_mnist.yaml - $MT01 $CONVNET $DANNMT18 $DEMA --set pretrain.epochs=1 --set adapt.repeats=1"
)
WAVE38_Q1=(
  "mnist_usps_convnet_shotmt18_intel configs/mnist_usps.yaml - $MT01 $CONVNET $SHOTMT18 $DEMA --set pretrain.epochs=1 --set adapt.repeats=1"
)

# Wave 39 (seventeenth session; record only, it decides nothing): wave 38's chains for adapt seeds 100 and 200, so that
# each preset has the same three seeds on the Intel box as wave 32 had on the AMD (seed + 100·r for r = 0, 1, 2; with
# repeats 1, `--set seed=100` gives adapt seed 100). Same data and VAE as wave 38's job (shared), same defaults.
#   - queue 0: USPS→MNIST, DANN 3 → mean teacher 18; queue 1: MNIST→USPS, source 3, SHOT 3 → mean teacher 18.
# Measured (00:37-01:25 UTC): with wave 38's seed 0, USPS→MNIST 97.76 ± 0.09 (every seed's rarest class at 0.55 of its
# share), MNIST→USPS 97.79 ± 0.30; ~20 min a seed on quiet cores (bench/RESULTS.md).
WAVE39_Q0=(
  "usps_mnist_convnet_dannmt18_intel_s100 configs/usps_mnist.yaml usps_mnist_convnet_dannmt18_intel $MT01 $CONVNET $DANNMT18 $DEMA --set pretrain.epochs=1 --set adapt.repeats=1 --set seed=100"
  "usps_mnist_convnet_dannmt18_intel_s200 configs/usps_mnist.yaml usps_mnist_convnet_dannmt18_intel $MT01 $CONVNET $DANNMT18 $DEMA --set pretrain.epochs=1 --set adapt.repeats=1 --set seed=200"
)
WAVE39_Q1=(
  "mnist_usps_convnet_shotmt18_intel_s100 configs/mnist_usps.yaml mnist_usps_convnet_shotmt18_intel $MT01 $CONVNET $SHOTMT18 $DEMA --set pretrain.epochs=1 --set adapt.repeats=1 --set seed=100"
  "mnist_usps_convnet_shotmt18_intel_s200 configs/mnist_usps.yaml mnist_usps_convnet_shotmt18_intel $MT01 $CONVNET $SHOTMT18 $DEMA --set pretrain.epochs=1 --set adapt.repeats=1 --set seed=200"
)

# Wave 40 (seventeenth session; record only, it decides nothing): on this box every USPS→MNIST seed of wave 38-39
# drifted (rarest class at 0.55 of its labelled share), against one seed in seven on the AMD. The cause named there
# is alignment to the source's class shares, which USPS and MNIST do not share. The same three seeds and jobs with the
# two existing ways around it, to say how much of the 1.24-point miss each gets back on this box:
#   - queue 0: adapt.mean_teacher.align_to=continued (align to DANN's own mean prediction on the unlabelled target);
#   - queue 1: adapt.mean_teacher.align=false.
# Neither can become the preset's setting from these runs (they are read on the preset's own target); the
# development pairs decided the default (waves 26-28, 36), and these figures go to the docs as a record for users.
# Measured (01:40-02:49 UTC): continued 98.65 ± 0.74 (99.04, 97.79, 99.11), not aligned 99.03 ± 0.08 (98.94, 99.09,
# 99.06), against 97.76 ± 0.09 aligned to USPS's shares: ~130 MNIST 7s called 2 (bench/RESULTS.md).
WAVE40_Q0=(
  "usps_mnist_convnet_dannmt18_cont_s0 configs/usps_mnist.yaml usps_mnist_convnet_dannmt18_intel $MT01 $CONVNET $DANNMT18 $DEMA --set pretrain.epochs=1 --set adapt.repeats=1 --set adapt.mean_teacher.align_to=continued --set seed=0"
  "usps_mnist_convnet_dannmt18_cont_s100 configs/usps_mnist.yaml usps_mnist_convnet_dannmt18_intel $MT01 $CONVNET $DANNMT18 $DEMA --set pretrain.epochs=1 --set adapt.repeats=1 --set adapt.mean_teacher.align_to=continued --set seed=100"
  "usps_mnist_convnet_dannmt18_cont_s200 configs/usps_mnist.yaml usps_mnist_convnet_dannmt18_intel $MT01 $CONVNET $DANNMT18 $DEMA --set pretrain.epochs=1 --set adapt.repeats=1 --set adapt.mean_teacher.align_to=continued --set seed=200"
)
WAVE40_Q1=(
  "usps_mnist_convnet_dannmt18_noalign_s0 configs/usps_mnist.yaml usps_mnist_convnet_dannmt18_intel $MT01 $CONVNET $DANNMT18 $DEMA --set pretrain.epochs=1 --set adapt.repeats=1 --set adapt.mean_teacher.align=false --set seed=0"
  "usps_mnist_convnet_dannmt18_noalign_s100 configs/usps_mnist.yaml usps_mnist_convnet_dannmt18_intel $MT01 $CONVNET $DANNMT18 $DEMA --set pretrain.epochs=1 --set adapt.repeats=1 --set adapt.mean_teacher.align=false --set seed=100"
  "usps_mnist_convnet_dannmt18_noalign_s200 configs/usps_mnist.yaml usps_mnist_convnet_dannmt18_intel $MT01 $CONVNET $DANNMT18 $DEMA --set pretrain.epochs=1 --set adapt.repeats=1 --set adapt.mean_teacher.align=false --set seed=200"
)

# Wave 41 (eighteenth session; record only, it decides nothing): waves 38-39's chains, the same seeds, data and VAE,
# with adapt.precision=bf16. On this box a fp32 seed took ~20 min, a third over the 15 minutes; bench_precision.py
# measured bf16 steps here at 1.71x (mean teacher) and 1.57x (DANN) the fp32 speed on one thread, so a seed should fit.
# What is read, fixed before the runs: seconds a seed against the 15 minutes, and accuracy paired by seed with waves
# 38-39. The presets keep fp32 whatever the result (a CPU without native bfloat16 refuses bf16); the figures go to
# the docs as the way to the budget on CPUs that have it.
#   - queue 0: USPS→MNIST, DANN 3 → mean teacher 18; queue 1: MNIST→USPS, source 3, SHOT 3 → mean teacher 18.
# Measured (04:08-04:54 UTC): 728-789 s a seed; USPS→MNIST 98.54 ± 0.91 (97.49, 99.15, 98.97; seeds 100 and 200 left
# the 7→2 basin that every fp32 seed here fell into), MNIST→USPS 97.54 ± 0.44 (bench/RESULTS.md).
WAVE41_Q0=(
  "usps_mnist_convnet_dannmt18_bf16_s0 configs/usps_mnist.yaml usps_mnist_convnet_dannmt18_intel $MT01 $CONVNET $DANNMT18 $DEMA $BF16 --set pretrain.epochs=1 --set adapt.repeats=1 --set seed=0"
  "usps_mnist_convnet_dannmt18_bf16_s100 configs/usps_mnist.yaml usps_mnist_convnet_dannmt18_intel $MT01 $CONVNET $DANNMT18 $DEMA $BF16 --set pretrain.epochs=1 --set adapt.repeats=1 --set seed=100"
  "usps_mnist_convnet_dannmt18_bf16_s200 configs/usps_mnist.yaml usps_mnist_convnet_dannmt18_intel $MT01 $CONVNET $DANNMT18 $DEMA $BF16 --set pretrain.epochs=1 --set adapt.repeats=1 --set seed=200"
)
WAVE41_Q1=(
  "mnist_usps_convnet_shotmt18_bf16_s0 configs/mnist_usps.yaml mnist_usps_convnet_shotmt18_intel $MT01 $CONVNET $SHOTMT18 $DEMA $BF16 --set pretrain.epochs=1 --set adapt.repeats=1 --set seed=0"
  "mnist_usps_convnet_shotmt18_bf16_s100 configs/mnist_usps.yaml mnist_usps_convnet_shotmt18_intel $MT01 $CONVNET $SHOTMT18 $DEMA $BF16 --set pretrain.epochs=1 --set adapt.repeats=1 --set seed=100"
  "mnist_usps_convnet_shotmt18_bf16_s200 configs/mnist_usps.yaml mnist_usps_convnet_shotmt18_intel $MT01 $CONVNET $SHOTMT18 $DEMA $BF16 --set pretrain.epochs=1 --set adapt.repeats=1 --set seed=200"
)

# Wave 42 (eighteenth session; record only, it decides nothing): wave 41's USPS→MNIST chain in bf16 for two more
# seeds (adapt seeds 300 and 400, one a core), to say how often a seed falls into the 7→2 basin there (wave 41: one
# of three; fp32 on this box: three of three; the AMD: one of seven). Same data and VAE, same defaults.
# Measured (05:15-05:31 UTC): 99.17 and 98.96, neither in the basin; five bf16 seeds 98.75 ± 0.71 (bench/RESULTS.md).
WAVE42_Q0=(
  "usps_mnist_convnet_dannmt18_bf16_s300 configs/usps_mnist.yaml usps_mnist_convnet_dannmt18_intel $MT01 $CONVNET $DANNMT18 $DEMA $BF16 --set pretrain.epochs=1 --set adapt.repeats=1 --set seed=300"
)
WAVE42_Q1=(
  "usps_mnist_convnet_dannmt18_bf16_s400 configs/usps_mnist.yaml usps_mnist_convnet_dannmt18_intel $MT01 $CONVNET $DANNMT18 $DEMA $BF16 --set pretrain.epochs=1 --set adapt.repeats=1 --set seed=400"
)

# Wave 43 (nineteenth session; both queues): the mean teacher's alignment as a floor, adapt.mean_teacher.align_floor=
# true, nothing else. Why, before any run: alignment is there to stop a collapse, and a collapse is a class falling;
# two-way alignment also pushes down a class the unlabelled set has more of than the labelled one. USPS's 7 is 8.8 %,
# MNIST's 10.3 %: aligned to USPS's shares the teacher holds MNIST's 7 at 0.85 of its own share while 2 is held at
# 0.97, and the 7s nearest 2 go to 2 (waves 38-41: ~130 MNIST 7s called 2 in every fp32 seed on this box; 99.03 without
# alignment). A floor raises a falling class as fully as two-way alignment does and never lowers one, so the ratio of
# 7 to 2 is the teacher's own. Unlike the slack of wave 36 (a band of [prior/2, prior·2], rejected: it let a class
# fall to half its share unopposed) the floor's bottom edge is the share itself.
# Rule, fixed before any run, wave 36's: make align_floor=true the default only if, paired by seed with wave 36's
# *_base jobs (DANN, which does not read the option, must be bit-identical between the two, else the pairing is void
# and the rule not applied): (a) on the colour target DANN → mean teacher loses no more than 0.3 on average and no run
# is flagged; (b) on printed digits → MNIST DANN → mean teacher loses no more than 0.3 on average; (c) no run of
# these jobs is newly flagged. Same data and VAE as wave 36 (shared), same seeds (0, 100, 200), fp32.
#   - queue 0: the colour target, DANN 5 → mean teacher 5; queue 1: printed → MNIST, DANN 5 → mean teacher 5.
FLOOR="--set adapt.mean_teacher.align_floor=true"
WAVE43_Q0=(
  "mnist_colour_convnet_dannmt_floor configs/mnist_usps.yaml mnist_colour_convnet_dannmt_slack $MT01 $CONVNET $UDA --set pretrain.epochs=1 --set data.target=npz:$colour --set data.channels=3 --set adapt.variants=[dann,dann_mean_teacher] $DEMA $FLOOR"
)
WAVE43_Q1=(
  "printed_mnist_convnet_dannmt_floor configs/usps_mnist.yaml printed_mnist_convnet_dannmt_slack $PRINTED --set adapt.variants=[dann,dann_mean_teacher] $DEMA $FLOOR"
)
# Wave 44 (nineteenth session; record only, it decides nothing, whatever wave 43 decides): the presets' chains with
# the floor, paired by seed with waves 38-39 (fp32, USPS → MNIST: every seed in the 7 → 2 basin) and wave 41 (bf16,
# MNIST → USPS: bf16 so that the three seeds fit the session). Same data and VAE as wave 38's jobs.
#   - queue 0: USPS → MNIST fp32 seeds 0 and 200, then MNIST → USPS bf16 seed 200;
#   - queue 1: USPS → MNIST fp32 seed 100, then MNIST → USPS bf16 seeds 0 and 100.
UM="configs/usps_mnist.yaml usps_mnist_convnet_dannmt18_intel $MT01 $CONVNET $DANNMT18 $DEMA $FLOOR --set pretrain.epochs=1 --set adapt.repeats=1"
MU="configs/mnist_usps.yaml mnist_usps_convnet_shotmt18_intel $MT01 $CONVNET $SHOTMT18 $DEMA $FLOOR $BF16 --set pretrain.epochs=1 --set adapt.repeats=1"
WAVE44_Q0=(
  "usps_mnist_convnet_dannmt18_floor_s0 $UM --set seed=0"
  "usps_mnist_convnet_dannmt18_floor_s200 $UM --set seed=200"
  "mnist_usps_convnet_shotmt18_floor_bf16_s200 $MU --set seed=200"
)
WAVE44_Q1=(
  "usps_mnist_convnet_dannmt18_floor_s100 $UM --set seed=100"
  "mnist_usps_convnet_shotmt18_floor_bf16_s0 $MU --set seed=0"
  "mnist_usps_convnet_shotmt18_floor_bf16_s100 $MU --set seed=100"
)

# Wave 45 (nineteenth session; record only, it decides nothing): wave 44's USPS → MNIST chain with the floor in bf16,
# the seeds of wave 41 (0, 100, 200; seed 0 fell into the 7 → 2 basin there), so that the preset's figure with the
# floor is also measured within the 15 minutes a seed on this box (fp32 takes ~20 here). Same data and VAE.
#   - queue 0: seed 100; queue 1: seeds 0 and 200 (each queue starts when its wave-44 jobs are done).
WAVE45_Q0=(
  "usps_mnist_convnet_dannmt18_floor_bf16_s100 $UM $BF16 --set seed=100"
)
WAVE45_Q1=(
  "usps_mnist_convnet_dannmt18_floor_bf16_s0 $UM $BF16 --set seed=0"
  "usps_mnist_convnet_dannmt18_floor_bf16_s200 $UM $BF16 --set seed=200"
)

# Wave 46 (twentieth session; record only, it decides nothing): MNIST with 100 labels, wave 29's job (mean_teacher_few,
# 25 epochs, VAE of 3 epochs, seeds 0, 100, 200), with the floor that is the default since wave 43 and with two-way
# alignment, paired by seed on this box (wave 29's 1.42 ± 0.75 was two-way, on the AMD box). Fresh data and VAE (the
# first job makes them; the second shares them). What is read: the paired difference and seconds a seed.
#   - queue 0 (after wave 47's job): the floor (the default); queue 1 (after wave 47's job): two-way.
# Measured (09:31-10:26 UTC): floor 1.31 ± 0.66 % error (0.95, 0.91, 2.07: seed 200 calls 127 of MNIST's 7s 2s),
# two-way 0.93 ± 0.04 (0.90, 0.97, 0.93); 936-989 s a seed (bench/RESULTS.md).
TWO_WAY="--set adapt.mean_teacher.align_floor=false"
MTFEW25="--set adapt.epochs=25 --set adapt.variants=[mean_teacher_few] $ALIGN"  # wave 29's job (waves 46-50)
WAVE46_Q0=(
  "mnist_100labels_mtfew25_floor configs/mnist_100labels.yaml - $MT01 $MTFEW25"
)
WAVE46_Q1=(
  "mnist_100labels_mtfew25_twoway configs/mnist_100labels.yaml mnist_100labels_mtfew25_floor $MT01 $MTFEW25 $TWO_WAY"
)

# Wave 47 (twentieth session; record only, it decides nothing and does not replace the three-seed figure the goal is
# read on): wave 45's USPS → MNIST chain with the floor in bf16 for adapt seeds 300 and 400, which pair with wave 42's
# two-way jobs (99.17, 98.96). Why: the three seeds gave 98.99, 0.01 under the goal; five say whether that is a miss
# of the method or of three draws. Both are reported, whatever they show. Same data and VAE.
#   - queue 0: seed 300; queue 1: seed 400 (run before wave 46).
# Measured (09:18-09:31 UTC): 98.96 and 99.03; the five seeds with the floor 98.99 ± 0.06 (bench/RESULTS.md).
WAVE47_Q0=(
  "usps_mnist_convnet_dannmt18_floor_bf16_s300 $UM $BF16 --set seed=300"
)
WAVE47_Q1=(
  "usps_mnist_convnet_dannmt18_floor_bf16_s400 $UM $BF16 --set seed=400"
)

# Wave 48 (twentieth session; record only, it decides nothing): wave 46 measured, paired by seed, the floor at
# 1.31 ± 0.66 % error (0.95, 0.91, 2.07: seed 200 calls 127 of MNIST's test 7s 2s) and two-way alignment at
# 0.93 ± 0.04 (0.90, 0.97, 0.93). Two more adapt seeds each (300, 400; --set seed, one repeat, same data and VAE) say
# how often a seed falls into that basin with each. Both figures are reported, whatever they show; wave 46's stay.
#   - queue 0: the floor, seeds 300 and 400; queue 1: two-way, seeds 300 and 400.
# Measured (10:28-11:01 UTC): floor 2.09 (133 7s called 2) and 0.76, two-way 1.07 and 0.88; five seeds: floor
# 1.36 ± 0.66, two-way 0.95 ± 0.08 (bench/RESULTS.md).
FEW="configs/mnist_100labels.yaml mnist_100labels_mtfew25_floor $MT01 $MTFEW25 --set adapt.repeats=1"
WAVE48_Q0=(
  "mnist_100labels_mtfew25_floor_s300 $FEW --set seed=300"
  "mnist_100labels_mtfew25_floor_s400 $FEW --set seed=400"
)
WAVE48_Q1=(
  "mnist_100labels_mtfew25_twoway_s300 $FEW $TWO_WAY --set seed=300"
  "mnist_100labels_mtfew25_twoway_s400 $FEW $TWO_WAY --set seed=400"
)

# Wave 49 (twentieth session; record only this session): waves 46 and 48 found the floor in MNIST's 7 → 2 basin on
# MNIST with 100 labels where two-way alignment was not (seeds 200 and 300). That is read on a preset's test labels,
# so nothing changes from it. The same question on a development target, fixed before its runs: the colour target
# (USPS's class shares, 0 at 16 %, 8 at 7 %, far from the 100 labels' 10 a class, so two-way alignment is there
# pushed where the floor is not) with 100 of its labels, `mean_teacher_few` 25 epochs, LeNet + a VAE of 3 epochs
# trained on its images, seeds 0, 100, 200; floor (queue 0) and two-way (queue 1) paired by seed.
# What it would take, written down now for a later session: the few-label mean teacher aligns two-way by default only
# if, here and on the printed digits (not run yet), two-way's mean error is at most the floor's + 0.1 with no run
# newly flagged. Whatever this shows, it is reported.
# Measured (11:02-11:11 UTC): floor 11.33 ± 0.70 % error (11.26, 12.06, 10.66), two-way 11.33 ± 0.52 (11.86, 11.31,
# 10.81), paired 0.00 ± 0.68, none flagged; ~140 s a seed. This target's half of the rule holds (bench/RESULTS.md).
FEWC="$MT01 --set data.source=npz:$colour --set data.target=npz:$colour --set data.channels=3 $MTFEW25"
WAVE49_Q0=(
  "colour_100labels_mtfew25_floor configs/mnist_100labels.yaml - $FEWC"
)
WAVE49_Q1=(
  "colour_100labels_mtfew25_twoway configs/mnist_100labels.yaml colour_100labels_mtfew25_floor $FEWC $TWO_WAY"
)

# Wave 50 (twentieth session; record only this session): wave 49's second development target, the printed digits
# (bench/make_printed_digits.py, 3 × 32 × 32, classes near 10 % each) with 100 of their labels, the same job, adapt
# seeds 0, 100, 200 as jobs of their own (one repeat each) so that each seed stands alone if the session ends first.
# The rule is wave 49's, unchanged. Queue 0: the floor; queue 1: two-way.
# Measured (11:14-11:38 UTC): seed 0, 78.85 % error with the floor and 78.40 two-way (21-25 % accuracy at every
# epoch: the network does not learn from 10 labels a class here); seeds 100 and 200 stopped for the session's checks.
FEWP="$MT01 --set data.source=npz:$printed --set data.target=npz:$printed --set data.channels=3 $MTFEW25 --set adapt.repeats=1"
P0="configs/mnist_100labels.yaml printed_100labels_mtfew25_floor_s0"  # the preset; the job whose data and VAE they share
WAVE50_Q0=(
  "printed_100labels_mtfew25_floor_s0 configs/mnist_100labels.yaml - $FEWP --set seed=0"
  "printed_100labels_mtfew25_floor_s100 $P0 $FEWP --set seed=100"
  "printed_100labels_mtfew25_floor_s200 $P0 $FEWP --set seed=200"
)
WAVE50_Q1=(
  "printed_100labels_mtfew25_twoway_s0 $P0 $FEWP $TWO_WAY --set seed=0"
  "printed_100labels_mtfew25_twoway_s100 $P0 $FEWP $TWO_WAY --set seed=100"
  "printed_100labels_mtfew25_twoway_s200 $P0 $FEWP $TWO_WAY --set seed=200"
)

# Wave 51 (twentieth session; a diagnosis, it decides nothing): wave 50's few-label mean teacher stayed at 21-25 %
# on the printed digits. The same 100 labels, data and VAE with supervised training alone (finetune: the VAE encoder
# fine-tuned; scratch: random init), 5 epochs, seed 0, say whether the labels themselves carry this network further.
# Measured (11:37-11:40 UTC): finetune 28.82 %, scratch 34.00 % accuracy (the mean teacher: 21 %).
WAVE51_Q0=(
  "printed_100labels_supervised $P0 $FEWP --set adapt.epochs=5 --set adapt.variants=[finetune,scratch] --set seed=0"
)

# Wave 52 (twenty-first session; a diagnosis, it decides nothing): why the few-label mean teacher falls below plain
# supervised training on the printed digits (wave 50: 21-26 % at every epoch; wave 51: finetune 28.8, scratch 34.0
# after 5 epochs). Seed 0, wave 50's data and VAE, 5 epochs each (~3 min a mean teacher), one factor at a time:
# the default; random init (is it the VAE's start? scratch beat finetune); no consistency and no balance term
# (the same machinery, teacher scored, labels alone: is it the unlabelled loss?); no balance term; FixMatch and
# FlexMatch (do the pseudo-label methods fail the same way?); and supervised training for 25 epochs (the budget's
# baseline). Any change it suggests needs a rule of its own, written down before runs on the development targets.
D5="$P0 $FEWP --set adapt.epochs=5 --set seed=0"
WAVE52_Q0=(
  "printed_100labels_d5_mt $D5"
  "printed_100labels_d5_mt_random $D5 --set adapt.warm_start=false"
  "printed_100labels_d5_fixmatch $D5 --set adapt.variants=[fixmatch]"
  "printed_100labels_supervised25 $P0 $FEWP --set adapt.variants=[finetune,scratch] --set seed=0"
)
WAVE52_Q1=(
  "printed_100labels_d5_mt_labelsonly $D5 --set adapt.mean_teacher.consistency_weight=0 --set adapt.mean_teacher.class_balance=0"
  "printed_100labels_d5_mt_nobalance $D5 --set adapt.mean_teacher.class_balance=0"
  "printed_100labels_d5_flexmatch $D5 --set adapt.variants=[flexmatch]"
)

# Wave 53 (twenty-first session): `adapt.augment.intensity_flip` (new, off), French et al.'s intens_flip: each image,
# with probability 0.5, mirrored about its mean intensity (light on dark <-> dark on light; after per-image
# standardisation it is -x, as they negate standardised images). Why, before any run: wave 52 found the few-label
# methods on the printed digits (digits of both polarities in random colours) below supervised training, and their
# warps and noise never show the network a digit of the other polarity, which consistency can then hold apart.
# Rule, fixed before any run: make intensity_flip 0.5 the default (params.yaml and the schema; the presets pin 0.0,
# with which their figures were measured) only if, paired by seed with wave 43's *_floor jobs (today's defaults;
# DANN reads the warp too, so here it is not bit-identical and both stages are reported):
#   (a) on the colour target DANN -> mean teacher loses no more than 0.3 on average and no run is newly flagged;
#   (b) on printed digits -> MNIST DANN -> mean teacher loses no more than 0.3 on average, no run newly flagged;
#   (c) on the printed digits with 100 labels the few-label mean teacher (wave 52's 5-epoch job, adapt seeds 0, 100,
#       200, one job a seed, paired with the same job without the flip) does not lose on average;
#   (d) and at least one of (a)-(c) gains more than 1 point on average: a default that moves every figure has to
#       buy something.
# Whatever it decides is reported. Same data, VAEs and seeds as the jobs it pairs with, fp32.
FLIP="--set adapt.augment.intensity_flip=0.5"
WAVE53_Q0=(
  "printed_100labels_d5_mt_flip $D5 $FLIP"
  "printed_100labels_d5_mt_flip_s100 $P0 $FEWP --set adapt.epochs=5 --set seed=100 $FLIP"
  "printed_100labels_d5_mt_flip_s200 $P0 $FEWP --set adapt.epochs=5 --set seed=200 $FLIP"
  "mnist_colour_convnet_dannmt_flip configs/mnist_usps.yaml mnist_colour_convnet_dannmt_slack $MT01 $CONVNET $UDA --set pretrain.epochs=1 --set data.target=npz:$colour --set data.channels=3 --set adapt.variants=[dann,dann_mean_teacher] $DEMA $FLOOR $FLIP"
)
WAVE53_Q1=(
  "printed_100labels_d5_mt_s100 $P0 $FEWP --set adapt.epochs=5 --set seed=100"
  "printed_100labels_d5_mt_s200 $P0 $FEWP --set adapt.epochs=5 --set seed=200"
  "printed_mnist_convnet_dannmt_flip configs/usps_mnist.yaml printed_mnist_convnet_dannmt_slack $PRINTED --set adapt.variants=[dann,dann_mean_teacher] $DEMA $FLOOR $FLIP"
)

# Wave 54 (twenty-first session; record only, it decides nothing): the printed digits with 100 labels and the
# intensity flip at the few-label budget, whatever wave 53 decides. Written down after wave 53's first few-label job
# (seed 0: 51.6 % against 24.8 without the flip, at 5 epochs), before any of these runs. Seed 0 unless named:
#   - supervised training with the flip, 25 epochs (finetune, scratch), against wave 52's 38.5 and 44.1 without it:
#     a method is compared with supervised training that has the same augmentation;
#   - the few-label mean teacher with the flip, 25 epochs (wave 50's job), adapt seeds 0, 100, 200;
#   - FixMatch and FlexMatch with the flip, 5 epochs (wave 52: 22.5 and 17.3 without it), and the mean teacher with
#     the flip from a random start, 5 epochs (wave 52 without the flip: 33.5).
WAVE54_Q0=(
  "printed_100labels_supervised25_flip $P0 $FEWP --set adapt.variants=[finetune,scratch] --set seed=0 $FLIP"
  "printed_100labels_mtfew25_flip_s0 $P0 $FEWP --set seed=0 $FLIP"
  "printed_100labels_mtfew25_flip_s200 $P0 $FEWP --set seed=200 $FLIP"
)
WAVE54_Q1=(
  "printed_100labels_d5_mt_random_flip $D5 --set adapt.warm_start=false $FLIP"
  "printed_100labels_d5_fixmatch_flip $D5 --set adapt.variants=[fixmatch] $FLIP"
  "printed_100labels_d5_flexmatch_flip $D5 --set adapt.variants=[flexmatch] $FLIP"
  "printed_100labels_mtfew25_flip_s100 $P0 $FEWP --set seed=100 $FLIP"
)

# Wave 55 (twenty-first session): the second half of wave 49's rule, which wave 50 could not read (the few-label mean
# teacher did not learn on the printed digits). With the flip it does (wave 54, seed 0: 99.62 % at 25 epochs), and
# "auto" gives the flip there by default (0.49 of the images dark on light), while on the colour target it gives 0
# (0.965 in both "domains", one dataset), so wave 49's half stands under today's defaults. The rule, unchanged from
# wave 49: two-way alignment becomes the few-label mean teacher's default only if, here and on the colour target, its
# mean error is at most the floor's + 0.1 with no run newly flagged. Two-way here, adapt seeds 0, 100, 200, paired
# with wave 54's mtfew25_flip jobs (the floor). Run at nice 10 beside the session's end checks: seconds not comparable.
# Measured (14:17-14:58 UTC): two-way 99.40 ± 0.07 (99.38, 99.35, 99.48) against the floor's 99.40 ± 0.23, error
# paired -0.01 ± 0.22, none flagged: with wave 49's colour half the rule holds (the default itself is not built yet).
WAVE55_Q0=(
  "printed_100labels_mtfew25_flip_twoway_s100 $P0 $FEWP --set seed=100 $FLIP $TWO_WAY"
)
WAVE55_Q1=(
  "printed_100labels_mtfew25_flip_twoway_s0 $P0 $FEWP --set seed=0 $FLIP $TWO_WAY"
  "printed_100labels_mtfew25_flip_twoway_s200 $P0 $FEWP --set seed=200 $FLIP $TWO_WAY"
)

# Wave 56 (twenty-second session; record only, it decides nothing). Written down before any of its runs.
#   - queue 1: the lecture's question at the few-label budget on the printed digits: the few-label mean teacher with
#     the flip and two-way alignment (wave 55's jobs) from a random start (adapt.warm_start=false), 25 epochs, adapt
#     seeds 0, 100, 200, paired by seed with wave 55 (the VAE start). Wave 54 measured only 5 epochs (73.2 from a
#     random start against 51.6-57.3 from the VAE); whether the VAE start still costs at 25 epochs is open.
#   - queue 0: MNIST -> the printed digits (wave 22's pair, like MNIST -> SVHN: one polarity in the source, both in
#     the target), DANN 5 -> mean teacher 5 at today's UDA defaults (wave 43's floor, DANN's EMA), with the flip
#     (what `auto` gives there: source 0.00 and target 0.49 of the images dark on light) and without it, paired by
#     seed (0, 100, 200; the first job prepares the data and trains the VAE of 1 epoch that the second shares).
#     French et al. needed intens_flip for MNIST -> SVHN; this says whether it does the same here.
# Measured (15:26-16:56 UTC): queue 1, random start 99.74 ± 0.17 (99.83, 99.55, 99.85) against the VAE start's 99.40 ±
# 0.07, paired +0.34 ± 0.13, none flagged. Queue 0, DANN -> mean teacher with the flip 61.95 ± 18.03 (44.77, 80.73,
# 60.35; seed 100 flagged for a collapsed class), without it 26.26 (every mean-teacher run lost the source, 9.7-12.9 %,
# flagged and scored as its DANN run); DANN 37.80 ± 1.02 against 26.26 ± 2.57 (bench/RESULTS.md).
WAVE56_Q0=(
  "mnist_printed_convnet_dannmt_floor_flip configs/mnist_usps.yaml - $TO_PRINTED --set adapt.variants=[dann,dann_mean_teacher] $DEMA $FLOOR $FLIP"
  "mnist_printed_convnet_dannmt_floor configs/mnist_usps.yaml mnist_printed_convnet_dannmt_floor_flip $TO_PRINTED --set adapt.variants=[dann,dann_mean_teacher] $DEMA $FLOOR"
)
WAVE56_Q1=(
  "printed_100labels_mtfew25_flip_twoway_random_s0 $P0 $FEWP --set seed=0 $FLIP $TWO_WAY --set adapt.warm_start=false"
  "printed_100labels_mtfew25_flip_twoway_random_s100 $P0 $FEWP --set seed=100 $FLIP $TWO_WAY --set adapt.warm_start=false"
  "printed_100labels_mtfew25_flip_twoway_random_s200 $P0 $FEWP --set seed=200 $FLIP $TWO_WAY --set adapt.warm_start=false"
)

# Wave 57 (twenty-second session; a check, it decides nothing): adapt.mean_teacher.align_floor "auto" (the default
# since wave 55's rule held: the floor on source labels, two-way on the few labels) through the real CLI on the MNIST
# 100-label preset, seed 0, nothing about alignment set. It must reproduce wave 46's two-way seed-0 job (0.90 % error)
# bit for bit: the same data, VAE, seed and settings, with align_floor reached through "auto" instead of false. On
# queue 1, after wave 56 there (queue 0 holds wave 56's MNIST -> printed jobs, ~18 min a seed).
# Measured (16:08-16:31 UTC): 0.90 % error, every per-epoch accuracy and the confusion matrix equal to wave 46's job.
WAVE57_Q1=(
  "mnist_100labels_mtfew25_auto_s0 $FEW --set seed=0"
)

# Wave 58 (twenty-second session; record only, it decides nothing): the lecture's question for the MNIST 100-label
# preset's mean teacher, which has only been measured from the VAE start: the same job from a random start
# (adapt.warm_start=false), 25 epochs, two-way alignment (its default, as wave 57 runs it), adapt seeds 0 and 100 (the
# session's time allows two), paired with waves 46 and 57 (the VAE start, two-way: 0.90 and 0.97 % error). Queue 1,
# after wave 57. Written down before any of its runs.
# Measured (16:31-17:25 UTC): random start 0.90 and 2.09 % error (seed 100: 131 of MNIST's test 7s called 2), against
# the VAE start's 0.90 and 0.97 (bench/RESULTS.md).
WAVE58_Q1=(
  "mnist_100labels_mtfew25_random_s0 $FEW --set seed=0 --set adapt.warm_start=false"
  "mnist_100labels_mtfew25_random_s100 $FEW --set seed=100 --set adapt.warm_start=false"
)

# Wave 59 (twenty-third session; record only, it decides nothing). Written down before any of its runs.
#   - queue 0: wave 56's MNIST -> printed digits chain with the flip (DANN 5 -> mean teacher) with the mean teacher
#     given 15 epochs instead of 5, adapt seeds 0, 100, 200, sharing wave 56's data and VAE. Wave 56 ended still
#     rising (44.8, 80.7, 60.4 %; up to 17.8 points over the last epochs, one run flagged): whether a longer schedule
#     settles the pair or only spreads it further is the question. Its DANN runs repeat wave 56's (same seeds, data
#     and settings), so they must come out equal to them (a check of determinism across processes).
#   - queue 1: wave 58 for adapt seeds 200, 300, 400 (MNIST with 100 labels, mean_teacher_few 25 epochs, two-way, from
#     a random start), so that the lecture's question on MNIST-100 is paired over the five seeds of waves 46 and 48
#     (the VAE start: 0.90, 0.97, 0.93, 1.07, 0.88 % error). Two seeds said "level or better"; five say how often a
#     random start falls into the 7 -> 2 basin.
# Measured (18:11-19:47 UTC): queue 0, DANN bit for bit wave 56's (37.80 ± 1.02); the mean teacher at 15 epochs
# 54.77, 84.90, 47.08 (seed 200 lost the source, scored as its DANN run 38.45; seed 0 flagged for a collapsed class):
# 59.38 ± 23.56 scored against 61.95 ± 18.03 at 5 epochs. Queue 1, random start 1.00, 2.21 (128 7s called 2), 0.86:
# with wave 58, 1.41 ± 0.68 over five seeds against the VAE start's 0.95 ± 0.08 (bench/RESULTS.md).
WAVE59_Q0=(
  "mnist_printed_convnet_dannmt15_floor_flip configs/mnist_usps.yaml mnist_printed_convnet_dannmt_floor_flip $TO_PRINTED --set adapt.variants=[dann,dann_mean_teacher] --set adapt.mean_teacher.epochs=15 $DEMA $FLOOR $FLIP"
)
WAVE59_Q1=(
  "mnist_100labels_mtfew25_random_s200 $FEW --set seed=200 --set adapt.warm_start=false"
  "mnist_100labels_mtfew25_random_s300 $FEW --set seed=300 --set adapt.warm_start=false"
  "mnist_100labels_mtfew25_random_s400 $FEW --set seed=400 --set adapt.warm_start=false"
)

# Wave 60 (twenty-fourth session; record only, it decides nothing). Written down before any of its runs. This
# session's box is an AMD EPYC VM without AVX-512 (no fast bf16), like the box of waves 1-37, on which the USPS -> MNIST
# preset's schedule (DANN 3 -> mean teacher 18, fp32) was fixed from timings to fill the 15 minutes a seed (wave 32:
# 785-826 s). The floor (the default since wave 43) has been measured with it only on the Intel box, where fp32 took
# ~20 min a seed (99.01 +- 0.12) and bf16 within the budget gave 98.99. So: the preset's chain as it stands, fp32, the
# floor, on this box, nothing changed. What counts for the goal (>= 99.0, within 900 s a seed counting DANN with the
# mean teacher) is the three seeds 0, 100, 200, as in every earlier wave; seeds 300 and 400 are reported beside them,
# and if the five-seed mean falls under 99.0 the goal is "at the threshold, not robustly". Read as well: seconds a
# seed, the mean teacher's last five epochs. Fresh data and VAE (pretrain.epochs=1, as wave 38), made by the seed-0 job.
# Then MNIST -> USPS, the preset's chain (SHOT -> mean teacher 18, the floor) in fp32 on this box, seeds 0, 100, 200
# (the Intel box ran it in bf16: 97.99 +- 0.06), record only; fresh data and VAE, made by its seed-0 job.
#   - queue 0: USPS -> MNIST seeds 0 (makes data and VAE), 200, 400; then MNIST -> USPS seed 200.
#   - queue 1: USPS -> MNIST seeds 100, 300 (after seed 0's VAE); then MNIST -> USPS seeds 0 (makes data and VAE), 100.
# Amended at 21:20 UTC, before any mean-teacher epoch had run: this AMD box is not wave 32's. DANN's epochs took ~180 s
# here against ~54 s there (AVX2 only, 2.4 GHz), so a seed takes ~50 min, not ~14, and the 900 s cannot be read on it.
# The session holds two seeds a core: USPS -> MNIST seeds 0, 200 (queue 0) and 100, 300 (queue 1), then the queues are
# stopped; MNIST -> USPS and seed 400 do not run. What is read: the floor's fp32 accuracy over four more seeds on another
# CPU (the goal's 99.0 "robustly" or not), and seconds a seed as measured here, stated as over the budget.
# Measured (21:09-23:19 UTC; my test lanes beside them from 21:27): USPS -> MNIST 98.80, 99.04, 99.11 (seeds 0, 100,
# 200: 98.98 +- 0.16, 29,695 of 30,000), seed 300 99.14 (four: 99.02 +- 0.15); 2,967-3,787 s a seed (DANN + mean
# teacher), over the 900; no run flagged; last five epochs 0.06-0.21 (bench/RESULTS.md).
UM60="configs/usps_mnist.yaml usps_mnist_convnet_dannmt18_amd_s0 $MT01 $CONVNET $DANNMT18 $DEMA $FLOOR --set pretrain.epochs=1 --set adapt.repeats=1"
MU60="configs/mnist_usps.yaml mnist_usps_convnet_shotmt18_amd_s0 $MT01 $CONVNET $SHOTMT18 $DEMA $FLOOR --set pretrain.epochs=1 --set adapt.repeats=1"
WAVE60_Q0=(
  "usps_mnist_convnet_dannmt18_amd_s0 configs/usps_mnist.yaml - $MT01 $CONVNET $DANNMT18 $DEMA $FLOOR --set pretrain.epochs=1 --set adapt.repeats=1 --set seed=0"
  "usps_mnist_convnet_dannmt18_amd_s200 $UM60 --set seed=200"
  "usps_mnist_convnet_dannmt18_amd_s400 $UM60 --set seed=400"
  "mnist_usps_convnet_shotmt18_amd_s200 $MU60 --set seed=200"
)
WAVE60_Q1=(
  "usps_mnist_convnet_dannmt18_amd_s100 $UM60 --set seed=100"
  "usps_mnist_convnet_dannmt18_amd_s300 $UM60 --set seed=300"
  "mnist_usps_convnet_shotmt18_amd_s0 configs/mnist_usps.yaml - $MT01 $CONVNET $SHOTMT18 $DEMA $FLOOR --set pretrain.epochs=1 --set adapt.repeats=1 --set seed=0"
  "mnist_usps_convnet_shotmt18_amd_s100 $MU60 --set seed=100"
)

# Wave 61 (twenty-sixth session; record only, it decides no preset). Written down before any of its runs. MNIST -> USPS:
# every label of both domains buys this trunk 98.44 +- 0.12 on USPS's test set (wave 20, joint_oracle, domain BN,
# 12 epochs; 98.31 at 36 epochs, wave 18), under the 98.5 asked of adaptation. Is that the trunk's capacity? The same
# joint bound with every convolution twice as wide (adapt.width=2, new: 64-128-128 channels, ~3x a step), 12 epochs,
# and at width 1 on the current code (wave 20 ran at b14290b), same data (seed 0's split) and adapt seeds 0, 100, 200,
# so the two pair by seed. Read: the paired difference and the width-2 mean. If it is >= 98.7 on all three seeds, a
# wider trunk is the lever named for the full-schedule goal (>= 98.8; a GPU's, not this CPU's 15 minutes: the chain
# on width 2 costs ~3x its 15 minutes); otherwise capacity at this family of widths is not what holds the bound.
# A bound reads target labels by definition; it selects nothing. AMD EPYC, AVX2 only, fp32: seconds are this box's.
#   - queue 0: width 2 seed 0 (makes data and VAE), then width 1 seeds 0 and 200;
#   - queue 1: width 2 seeds 100 and 200 (after seed 0's VAE), then width 1 seed 100.
# Amended at 03:50 UTC, after the first epoch's seconds and before any accuracy was read: an epoch at width 2 took
# 444 s here (this box, with my tests beside it), ~80 min a seed, so seed 200 does not run at either width (its two
# jobs were marked done without running): width 2 seeds 0 and 100, then width 1 seeds 0 and 100, paired by seed.
# Amended again at 04:30 UTC, before any accuracy was read: under my test lanes an epoch at width 2 takes 7-15 min,
# so the width-1 reruns would end after the session; they do not run either. Width 2 is read against wave 20's
# width 1 on the same seeds and data (98.51, 98.31), which ran 259 commits earlier (the data splits, augmentation and
# algorithms code changed since), so the pairing is loose: only the pre-registered threshold (>= 98.7 on both seeds)
# is read as a finding.
# Reinstated at 04:40 UTC, still before any accuracy was read: with my tests stopped an epoch at width 2 takes 4.5 min,
# so both width-2 seeds end by ~05:05 and the width-1 reruns of seeds 0 and 100 (~1.5 min an epoch) fit after them;
# they run, and the pairing is by seed on the same code as first planned (seed 200 still does not run).
# Measured (03:27-05:30 UTC; my test lanes beside them until 04:30): width 2 98.41, 98.41 (32 errors of 2,007 each;
# 5,251 and 5,222 s a seed), width 1 98.46, 98.46 (1,325 and 1,359 s): paired -0.05 on both seeds, under the 98.7
# threshold, so capacity at twice the width is not what holds the bound (bench/RESULTS.md).
J61="configs/mnist_usps.yaml mnist_usps_convnet_w2_joint12_s0 $CONVNET $JOINT12 --set adapt.repeats=1"
WAVE61_Q0=(
  "mnist_usps_convnet_w2_joint12_s0 configs/mnist_usps.yaml - $CONVNET $JOINT12 --set adapt.repeats=1 --set adapt.width=2"
  "mnist_usps_convnet_w1_joint12_s0 $J61 --set seed=0"
  "mnist_usps_convnet_w1_joint12_s200 $J61 --set seed=200"
)
WAVE61_Q1=(
  "mnist_usps_convnet_w2_joint12_s100 $J61 --set seed=100 --set adapt.width=2"
  "mnist_usps_convnet_w2_joint12_s200 $J61 --set seed=200 --set adapt.width=2"
  "mnist_usps_convnet_w1_joint12_s100 $J61 --set seed=100"
)

core_busy() {  # core_busy CORE: another `vaeflow stage` process is pinned to this core (a queue restarted
  local p  # while its previous job still runs waits for it rather than share the core)
  for p in $(pgrep -f " -m vaeflow stage "); do
    [ "$(taskset -p "$p" 2>/dev/null | awk '{print $NF}')" = "$((1 << $1))" ] && return 0
  done
  return 1
}

run_job() {  # run_job NAME PRESET SHARE_FROM overrides...
  local name=$1 preset=$2 share=$3; shift 3
  local dir=$out/runs/$name
  [ -f "$dir/done" ] && return 0
  mkdir -p "$dir"
  echo "$preset $*" > "$dir/command.txt"
  local stages="prepare pretrain adapt"
  if [ "$share" != - ]; then  # wait for the shared job's VAE, then link its data and model
    until [ -f "$out/runs/$share/models/vae.pt" ] && [ -f "$out/runs/$share/pretrain.done" ]; do sleep 30; done
    mkdir -p "$dir/data" "$dir/models"
    ln -sfn "$out/runs/$share/data/prepared" "$dir/data/prepared"
    for f in vae.pt vae.pt.sha256 vae.json vae.json.sha256; do  # the model with its checksum files
      [ -e "$out/runs/$share/models/$f" ] && ln -sfn "$out/runs/$share/models/$f" "$dir/models/$f"
    done
    stages="adapt"
  fi
  for s in $stages; do
    echo "[$(date -u +%FT%TZ)] stage $s" >> "$dir/log.txt"
    (cd "$dir" && /usr/bin/time -v "$py" -m vaeflow stage "$s" --params "$root/$preset" $COMMON "$@") \
      >> "$dir/log.txt" 2>&1 || { echo "[$(date -u +%FT%TZ)] stage $s FAILED" >> "$dir/log.txt"; return 1; }
    [ "$s" = pretrain ] && touch "$dir/pretrain.done"
  done
  date -u +%FT%TZ > "$dir/done"
}

case $cmd in
  start)
    waves=${3:-1 2}
    echo "cpu_runs: code $(git -C "$root" rev-parse --short HEAD), $(nproc) cores, waves $waves, started $(date -u +%FT%TZ)" >> "$out/driver.log"
    # the colour target (waves 2, 6, 15, 19): a failure here (e.g. DATA_ROOT without USPS) stops `start`
    [ -f "$colour/test.npz" ] || "$py" "$root/bench/make_colour_shift.py" "$colour" --data "$data" >> "$out/driver.log" \
      || { echo "cpu_runs: could not make $colour (above); nothing started" >&2; exit 2; }
    for core in 0 1; do nohup taskset -c $core bash "$0" queue "$out" $core "$waves" >> "$out/queue$core.log" 2>&1 & done
    echo "started: logs in $out/runs/<job>/log.txt";;
  queue)  # internal: one queue, in order, on the core `start` pinned it to
    # the box, so that its seconds can be read later (the same schedule took 3.3x longer on an AVX2-only VM)
    echo "queue ${3:-0}: code $(git -C "$root" rev-parse --short HEAD), waves ${4:-1 2}, $(date -u +%FT%TZ)," \
      "$(lscpu | sed -n 's/^Model name: *//p' | head -1), torch CPU capability" \
      "$("$py" -c 'import torch; print(torch.backends.cpu.get_cpu_capability())' 2>/dev/null)"
    jobs=()  # the waves' jobs for this core, wave by wave
    for w in ${4:-1 2}; do declare -n q="WAVE${w}_Q${3:-0}"; [ -v q ] && jobs+=("${q[@]}"); done
    [[ " ${jobs[*]} " == *"npz:$joint "* ]] && { [ -f "$joint/test.npz" ] || "$py" "$root/bench/make_joint_target.py" \
      "$joint" --params "$root/configs/mnist_usps.yaml" --set "data.root=$data"; }
    [[ " ${jobs[*]} " == *"npz:$printed "* ]] && { [ -f "$printed/test.npz" ] || "$py" "$root/bench/make_printed_digits.py" \
      "$printed"; }
    set -f  # the job lines hold [a,b] lists: split into words, never glob
    # shellcheck disable=SC2086
    for j in "${jobs[@]}"; do
      while core_busy "${3:-0}"; do sleep 30; done
      run_job $j
    done;;
  status)
    [ -d "$out/runs" ] || { echo "$out: no jobs yet"; exit 0; }
    for d in "$out"/runs/*/; do n=$(basename "$d")
      if [ -f "$d/done" ]; then echo "$n: done $(cat "$d/done")"; else echo "$n: $(tail -c 300 "$d/log.txt" 2>/dev/null | tr '\r' '\n' | grep -v '^\s*$' | tail -1)"; fi
    done;;
  summary) "$py" "$root/bench/cpu_summary.py" "$out";;
esac  # any other command was refused at the top, before OUT was made
