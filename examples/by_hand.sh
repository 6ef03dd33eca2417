#!/usr/bin/env bash
# The Trifeature study for one seed and one temperature, one stage at a time (what `kdfair sweep`
# automates): data -> teacher and NDS -> teacher-logit cache -> distilled student -> predictions
# -> analyses. Small settings; raise the epochs for real numbers.
set -euo pipefail
W=${1:-work}
mkdir -p "$W"/{runs,cache,preds,pairs}

kdfair data trifeature -o "$W/data" --train-per-combination 5 --val-per-combination 1 --test-per-combination 1
kdfair train-teacher --data "$W/data" --arch resnet20 --epochs 12 --seed 0 -o "$W/runs/teacher-s0"
kdfair train-teacher --data "$W/data" --arch lenet5 --epochs 15 --seed 0 -o "$W/runs/nds-s0"
kdfair predict "$W/runs/teacher-s0" --split train -o "$W/cache/teacher-s0-train.parquet"
kdfair distill --teacher-logits "$W/cache/teacher-s0-train.parquet" --data "$W/data" --arch lenet5 \
    --epochs 15 --temperature 4 --alpha 0.8 --seed 0 -o "$W/runs/ds-T4-s0"
for m in teacher-s0 nds-s0 ds-T4-s0; do
    kdfair predict "$W/runs/$m" --split test -o "$W/preds/$m.parquet"
done
kdfair pairs --dataset trifeature --data "$W/data" --split test --source knn -k 5 -o "$W/pairs/test.parquet"
for m in teacher-s0 nds-s0 ds-T4-s0; do
    kdfair group-fairness "$W/preds/$m.parquet" --attribute color --attribute texture
    kdfair individual-fairness "$W/preds/$m.parquet" --pairs "$W/pairs/test.parquet"
done
# Class-wise bias needs several seeds per model (Welch's t-test over seeds):
#   kdfair compare-classes -a "$W"/preds/teacher-s*.parquet -b "$W"/preds/ds-T4-s*.parquet
