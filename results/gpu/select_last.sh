#!/bin/bash
# Issue 21 on the H200: the same runs as run.sh's, evaluated under select=last, for the
# best_valid-vs-last comparison (seconds budgets: the two trainings differ slightly).
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
R=$PWD; C=$R/.gpucheck; O=${OUT:-/tmp/gpucheck-out}; S=${S:-40}
export PYTHONPATH=$R GANBENCH_DATA=$C/data GANBENCH_CACHE=$C/cache
W=/tmp/gpuruns_last; rm -rf $W; mkdir -p $W
G="--set n_layer=12 --set n_embd=768 --set n_head=12 --set bpe_vocab_size=8000 --set batch_size=128 --set learning_rate=3e-4"
D="--set d_layers=12 --set d_hidden=768 --set d_heads=12 --set d_intermediate=3072"
E="--num-samples 1000 --eval curve_samples=1000 --eval temperatures=0.7,1.0,1.3 --eval select=last --checkpoint-every 100000 --quiet --device cuda --out $W"
timeout 60 python3 -m bench.cli run --variant mle_lstm --dataset coco --budget $((S/3))s --seed 0 $E > $O/last_mle_lstm.log 2>&1; echo "mle_lstm last rc=$?"
timeout 100 python3 -m bench.cli run --variant seqgan --dataset seqgan_oracle --budget $((S*2/3))s --seed 0 $E > $O/last_seqgan.log 2>&1; echo "seqgan last rc=$?"
timeout 170 python3 -m bench.cli run --variant gpt2_bert_gan --dataset coco --budget ${S}s --seed 0 $G $D $E > $O/last_gpt2_bert_gan.log 2>&1; echo "gpt2_bert_gan last rc=$?"
tar czf $O/records_last.tgz -C $W --exclude='*.safetensors' --exclude='*.bin' --exclude='artifacts' . 2>/dev/null
