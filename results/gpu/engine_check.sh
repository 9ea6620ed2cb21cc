#!/bin/bash
# Issue 22, next GPU session: the engine's options measured, to choose the gpu suite's settings.
# Set up .gpucheck as ../shared/gpu-check/README.md says, then from the project root:
#   OUT=/tmp/out bash results/gpu/engine_check.sh      (about 9 minutes on an H200; S=20 for less)
# 1. the gpt2_mle step against the bare loop at GPT-2-small, batch 128: eager, then compiled;
# 2. sampling 1,000 coco sentences at GPT-2-small: fixed-shape decoding (a CUDA graph per token)
#    against row-dropping decoding, and the host-device synchronisations of MLE steps, sampling,
#    the NLL pass and the LSTM GANs' adversarial rounds (CUDA's sync debug mode);
# 3. gpt2_mle for S s on coco: batch 128 as today; token-budgeted 8192 / 16384 positions; each
#    eager and compiled. The records give steps, train tokens/s and MFU.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
R=$PWD; C=$R/.gpucheck; O=${OUT:-/tmp/out}; S=${S:-30}; mkdir -p $O
export PYTHONPATH=$R GANBENCH_DATA=$C/data GANBENCH_CACHE=$C/cache
G="--set n_layer=12 --set n_embd=768 --set n_head=12 --set bpe_vocab_size=8000"
nvidia-smi --query-gpu=name --format=csv,noheader
for flag in "" --compile; do
  timeout 240 python3 tests/bench_engine.py $G --set batch_size=128 $flag 2>&1 | tail -1 | tee -a $O/pair.txt
done
timeout 120 python3 tests/bench_engine.py $G --sampling --rounds 3 2>&1 | tail -1 | tee -a $O/sampling.txt
timeout 180 python3 tests/bench_engine.py $G --set batch_size=128 --syncs 2>&1 | tail -1 | tee -a $O/syncs.txt
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_kv_decoding.py tests/test_engine.py 2>&1 | tail -2 | tee -a $O/cuda_tests.txt
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_rollout.py tests/test_lstm_gan.py tests/test_seqgan.py -k cuda 2>&1 | tail -2 | tee -a $O/cuda_tests.txt
W=/tmp/engine; rm -rf $W
for batching in "--set batch_size=128" "--set tokens_per_batch=8192" "--set tokens_per_batch=16384"; do
  for compile in false true; do
    name="$(echo $batching | tr -dc 'a-z0-9_=' )_compile=$compile"
    timeout $((S + 120)) python3 -m bench.cli run --variant gpt2_mle --dataset coco --budget ${S}s \
      --seed 0 $G $batching --set compile=$compile --set learning_rate=3e-4 --num-samples 1000 \
      --eval embedding_metrics=false --quiet --device cuda --out $W/$name > $O/$name.log 2>&1
    python3 - "$W/$name" "$name" <<'PY' | tee -a $O/runs.txt
import json, glob, sys
for f in glob.glob(f"{sys.argv[1]}/*/record.json"):
    r = json.load(open(f)); m, b = r["metrics"], r["budget"]
    print(json.dumps({"run": sys.argv[2], "steps": b["steps"], "tok_s": round(m["train_tokens_per_s"]),
                      "mfu": m["mfu"], "nll_test": round(m["nll_test"], 3),
                      "eval_s": round(r["timings"]["eval_seconds"], 1)}))
PY
  done
done
