#!/usr/bin/env bash
# Texygen's COCO MLE row: embedding 32, hidden 32, batch 64, Adam 0.01, gradient clip 5,
# 80 epochs of the 10,000 training captions (156 batches of 64 per epoch = 12,480 steps);
# BLEU-2..5 of N = 10,000 samples against the whole coco test split. 3 seeds, one thread.
# Usage: bash results/reproductions/run_texygen_coco.sh SEED [SEED...]
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
for seed in "$@"; do
  ganbench run --variant mle_lstm --dataset coco --budget 12480steps --seed "$seed" \
    --set embedding_dim=32 --set hidden_dim=32 --label "MLE (Texygen settings)" \
    --out results/reproductions/texygen_coco --quiet \
    --eval num_samples=10000 --eval temperatures= --eval disc_acc=false
done
