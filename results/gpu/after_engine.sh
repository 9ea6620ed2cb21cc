#!/bin/bash
# Issue 22 slice on the H200: the gpu-check's GPT-2-small runs (S s budgets) after the engine
# changes (fused AdamW, no cuDNN attention, 16-position buckets, MFU in records).
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
R=$PWD; C=$R/.gpucheck; O=${OUT:-/tmp/out}; S=${S:-30}; mkdir -p $O
export PYTHONPATH=$R GANBENCH_DATA=$C/data GANBENCH_CACHE=$C/cache
W=/tmp/after; rm -rf $W
G="--set n_layer=12 --set n_embd=768 --set n_head=12 --set bpe_vocab_size=8000 --set batch_size=128 --set learning_rate=3e-4"
D="--set d_layers=12 --set d_hidden=768 --set d_heads=12 --set d_intermediate=3072"
E="--num-samples 1000 --eval curve_samples=1000 --eval temperatures=0.7,1.0,1.3 --checkpoint-every 100000 --quiet --device cuda --out $W"
run() { local name=$1 t=$2; shift 2; local t0=$(date +%s)
  timeout $t python3 -m bench.cli run "$@" $E > $O/$name.log 2>&1; echo "$name rc=$? wall=$(( $(date +%s) - t0 ))s"
  python3 - "$W" "$name" <<'PY'
import json, glob, sys
for f in glob.glob(f"{sys.argv[1]}/{sys.argv[2]}__*/record.json"):
    r = json.load(open(f)); m, t, b, s = r["metrics"], r["timings"], r["budget"], r["selection"]
    print(json.dumps({"run": r["run"], "steps": b["steps"], "seconds": round(b["seconds"], 1),
        "construction": round(b["construction_seconds"], 2), "tok_s": round(m["train_tokens_per_s"]),
        "tflops": round(m["train_tflops_per_s"], 2), "mfu": m["mfu"], "nll_test": round(m["nll_test"], 3),
        "eval_s": round(t["eval_seconds"], 1), "valid_s": round(t["valid_seconds"], 1),
        "phases": {k: round(v, 1) for k, v in t.items() if k.endswith("_seconds") and isinstance(v, float)},
        "selection": {k: s.get(k) for k in ("evaluated", "evaluated_step", "evaluated_phase", "best_step", "best_phase")}}))
PY
}
nvidia-smi --query-gpu=name --format=csv,noheader
run gpt2_mle 100 --variant gpt2_mle --dataset coco --budget ${S}s --seed 0 $G
run gpt2_bert_gan 110 --variant gpt2_bert_gan --dataset coco --budget ${S}s --seed 0 $G $D
run mle_lstm 40 --variant mle_lstm --dataset coco --budget 10s --seed 0
