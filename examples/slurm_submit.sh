#!/usr/bin/env bash
# On a SLURM login node: write the sbatch scripts (train array, teacher-cache array, distill
# array, analyses job; each afterok the one before) and submit them. Tasks requeue themselves
# before the time limit and resume their cell.
set -euo pipefail
SPEC=${1:-trifeature.toml}
OUT=${2:-/scratch/$USER/sweeps/trifeature}
kdfair sweep slurm "$SPEC" -o "$OUT" --partition gpu --gpus 1 --cpus 8 --time 02:00:00 \
    --setup "source $HOME/venvs/kdfair/bin/activate"
bash "$OUT/slurm/submit.sh"
# Watch: kdfair sweep status "$OUT"     Result: kdfair report "$OUT"
