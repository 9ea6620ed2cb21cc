#!/usr/bin/env bash
# SeqGAN Table 1 on SeqGAN's own oracle (seqgan_oracle), 3 seeds, one torch thread per run.
# Random init: the untrained generator (learning rate 1e-12 for its one step).
# MLE: 120 epochs of the 10,000 training sequences (156 batches of 64 per epoch = 18,720 steps),
#      embedding 32, hidden 32, Adam 0.01, gradient clip 5 (the oracle defaults of mle_lstm).
# SeqGAN: starts from the MLE generator of the same seed (as the paper's SeqGAN starts from its
#      MLE-pretrained generator); schedule in results/reproductions/README.md.
# Usage: bash results/reproductions/run_seqgan_table1.sh mle|seqgan SEED [SEED...]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/reproductions/seqgan_table1
what=$1; shift
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
eval_args=(--eval num_samples=10000 --eval temperatures= --eval disc_acc=false
           --eval reference_metrics=false)
for seed in "$@"; do
  case $what in
    random)
      ganbench run --variant mle_lstm --dataset seqgan_oracle --budget 1steps --seed "$seed" \
        --set learning_rate=1e-12 --label "random init" --out $out --quiet "${eval_args[@]}" ;;
    mle)
      ganbench run --variant mle_lstm --dataset seqgan_oracle --budget 18720steps --seed "$seed" \
        --label "MLE (120 epochs)" --out $out --quiet "${eval_args[@]}" ;;
    seqgan)
      # 300 discriminator-pretraining rounds (3 updates each), then 40 adversarial rounds.
      init=$out/mle_lstm__seqgan_oracle__18720steps__seed$seed/artifacts/generator.safetensors
      ganbench run --variant seqgan --dataset seqgan_oracle --budget 340steps --seed "$seed" \
        --set init_generator=$init --set mle_fraction=0 \
        --set disc_pretrain_fraction=0.8823529411764706 --set baseline=none \
        --label "SeqGAN (from MLE)" --out $out --quiet "${eval_args[@]}" ;;
  esac
done
