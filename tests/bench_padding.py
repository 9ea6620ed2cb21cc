"""mle_lstm's teacher-forcing step on coco: the full-width step (every batch padded to the
corpus's longest sentence, logits and log-softmax at every position) against today's (the batch
cut to its longest member, only counted positions projected and normalised).

    pytest tests/bench_padding.py -p no:xdist --benchmark-columns=median,min,rounds
    python tests/bench_padding.py --seconds 60      # interleaved rounds: medians, tokens/s
    python tests/bench_padding.py --profile         # torch.profiler top ops of today's step

Sizes: Texygen's (embedding 32, hidden 32, batch 64) and mle_lstm's defaults on real corpora
(64 / 128, batch 64). Both steps see the same batches in the same order (same seed). One torch
thread. Where benchmarks are disabled each case runs once on a few sentences.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import pytest
import torch
import torch.nn.functional as F

from baselines.mle_lstm import MLELSTM, MLELSTMConfig
from bench.config import build_config
from bench.text import PAD

SIZES = {"texygen": {"embedding_dim": 32, "hidden_dim": 32, "batch_size": 64},
         "default": {"embedding_dim": 64, "hidden_dim": 128, "batch_size": 64}}


class FullWidthStep:
    """The step as it was: the logits of every position of the corpus-wide batch."""

    def __init__(self, variant: MLELSTM):
        self.variant = variant

    def __call__(self) -> int:
        variant = self.variant
        batch = variant.train_data.select(variant.batches.next_indices())
        logits, _ = variant.generator(batch.inputs)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch.targets.flatten(),
                               ignore_index=PAD)
        variant.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(variant.generator.parameters(), variant.config.grad_clip)
        variant.optimizer.step()
        return batch.num_tokens()


class CountedStep:
    """Today's mle_lstm.train_step."""

    def __init__(self, variant: MLELSTM):
        self.variant = variant

    def __call__(self) -> int:
        return self.variant.train_step(0.0).tokens


def make_variant(corpus, size: str, seed: int = 0) -> MLELSTM:
    torch.manual_seed(seed)
    config = build_config(MLELSTMConfig, SIZES[size])
    return MLELSTM(config, corpus, torch.device("cpu"), seed)


def bench_step(benchmark, corpus, size: str, counted: bool, pair: str = ""):
    if benchmark.disabled:
        from bench.corpora import Corpus

        corpus = Corpus("coco_tiny", corpus.train[:200], corpus.test[:50], corpus.tokenization)
    elif os.environ.get("GANBENCH_BENCH_SIZE") == "regression" and not pair:
        pytest.skip("only the tracked pair runs at regression size")
    if pair:  # python -m bench.regression tracks ours / reference of this pair
        benchmark.extra_info.update({"pair": pair, "role": "ours" if counted else "ref"})
    variant = make_variant(corpus, size)
    step = CountedStep(variant) if counted else FullWidthStep(variant)
    step()  # warm-up
    tokens = []
    benchmark.pedantic(lambda: tokens.append(step()), rounds=20, iterations=1)
    benchmark.extra_info["tokens_per_step"] = sum(tokens) / len(tokens)


@pytest.mark.benchmark(group="mle_lstm step, Texygen sizes (32/32, batch 64), coco")
def test_mle_step_full_width_texygen(benchmark, coco):
    bench_step(benchmark, coco, "texygen", counted=False, pair="mle_lstm_step")


@pytest.mark.benchmark(group="mle_lstm step, Texygen sizes (32/32, batch 64), coco")
def test_mle_step_counted_texygen(benchmark, coco):
    bench_step(benchmark, coco, "texygen", counted=True, pair="mle_lstm_step")


@pytest.mark.benchmark(group="mle_lstm step, default sizes (64/128, batch 64), coco")
def test_mle_step_full_width_default(benchmark, coco):
    bench_step(benchmark, coco, "default", counted=False)


@pytest.mark.benchmark(group="mle_lstm step, default sizes (64/128, batch 64), coco")
def test_mle_step_counted_default(benchmark, coco):
    bench_step(benchmark, coco, "default", counted=True)


def interleaved(corpus, size: str, seconds: float) -> dict[str, float]:
    """Alternate one full-width and one counted step until ``seconds`` pass: median ms per
    step of each, tokens/s of each (their tokens over their time), and the ratio."""
    steps = {"full_width": FullWidthStep(make_variant(corpus, size)),
             "counted": CountedStep(make_variant(corpus, size))}
    times = {name: [] for name in steps}
    tokens = {name: 0 for name in steps}
    for step in steps.values():
        step()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for name, step in steps.items():
            start = time.perf_counter()
            tokens[name] += step()
            times[name].append(time.perf_counter() - start)
    out = {}
    for name in steps:
        out[f"{name}_median_ms"] = 1e3 * statistics.median(times[name])
        out[f"{name}_tokens_per_s"] = tokens[name] / sum(times[name])
    out["rounds"] = len(times["counted"])
    out["speedup_median"] = out["full_width_median_ms"] / out["counted_median_ms"]
    out["speedup_tokens_per_s"] = out["counted_tokens_per_s"] / out["full_width_tokens_per_s"]
    return out


def profile(corpus, size: str, steps: int = 30) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    step = CountedStep(make_variant(corpus, size))
    step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


def main() -> None:
    from bench.corpora import load_corpus
    from tests.conftest import SHARED_DATA

    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0, help="per size")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sizes", nargs="*", default=list(SIZES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    corpus = load_corpus("coco", SHARED_DATA)
    for size in args.sizes:
        if args.profile:
            print(f"== {size}\n{profile(corpus, size)}")
        else:
            result = interleaved(corpus, size, args.seconds)
            print(size, " ".join(f"{k}={v:.4g}" for k, v in result.items()))


if __name__ == "__main__":
    main()
