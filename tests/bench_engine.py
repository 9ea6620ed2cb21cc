"""gpt2_mle's training step against a bare loop on the same model and batches (issue 22).

The reference is what a newcomer writes in 40 lines: transformers' GPT2LMHeadModel of the same
configuration and weights, the same AdamW (fused on CUDA), a padded batch whose padding is
ignored by cross-entropy (-100 labels), forward, backward, clip, step. Both sides draw the
same sequence of training batches (so the same shapes) from the same sampler state. The ratio
ours / reference is the harness's own overhead per step: its step machinery, batching, FLOP and
token counting, logs. Goal: at most 1.15 (eager on a CPU; fused AdamW + compile on CUDA).

Collected by `python -m bench.regression` (pair gpt2_mle_step) and runnable alone:
    python -m pytest -s -p no:xdist tests/bench_engine.py
On a GPU, at GPT-2-small size and the gpu suite's batch, both sides compiled (the numbers
alone, ms per step, interleaved rounds):
    python tests/bench_engine.py --set n_layer=12 --set n_embd=768 --set n_head=12 \
        --set bpe_vocab_size=8000 --set batch_size=128 --compile
"""

from __future__ import annotations

import copy

import pytest
import torch

STEPS = 4  # steps per timed round: each round replays the same batches from the same state
SIZE = {"n_layer": 4, "n_embd": 256, "n_head": 4, "bpe_vocab_size": 2000, "batch_size": 64,
        "dropout": 0.0, "warmup_steps": 0}


@pytest.fixture(scope="module")
def variant(coco):
    from baselines.gpt2_mle import GPT2MLE
    from bench.config import build_config
    from bench.corpora import Corpus

    corpus = Corpus("coco_2k", coco.train[:2000], coco.test[:100], coco.tokenization)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return GPT2MLE(build_config(GPT2MLE.Config, SIZE), corpus, device, seed=0)


class BareLoop:
    """The same model, optimiser and batches as ``variant``, trained the textbook way."""

    def __init__(self, variant, compile_model: bool = False):
        self.model = copy.deepcopy(variant.generator).train()
        self.forward = torch.compile(self.model) if compile_model else self.model
        fused = {"fused": True} if variant.device.type == "cuda" else {}
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=0.01,
                                           **fused)
        self.data, self.device = variant.train_data, variant.device

    def step(self, index: torch.Tensor) -> float:
        index = index.to(self.device)
        mask = self.data.mask[index]
        width = int(mask.sum(dim=1).max())  # the batch cut to its longest sentence
        inputs, mask = self.data.inputs[index, :width], mask[:, :width]
        labels = self.data.targets[index, :width].masked_fill(~mask, -100)
        logits = self.forward(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                                 ignore_index=-100)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        return loss.item()


def replay(variant, run_step) -> None:
    """STEPS steps from the same batch-sampler state each round (so the same shapes)."""
    state = copy.deepcopy(variant.batches.state_dict())
    for _ in range(STEPS):
        run_step()
    variant.batches.load_state_dict(state)
    if variant.device.type == "cuda":
        torch.cuda.synchronize()


@pytest.mark.benchmark(group="gpt2_mle_step")
def test_gpt2_mle_step(benchmark, variant):
    benchmark.extra_info.update({"pair": "gpt2_mle_step", "role": "ours"})
    benchmark.pedantic(replay, args=(variant, variant.mle_step), rounds=3, warmup_rounds=1)
    assert variant.mle_steps >= STEPS


@pytest.mark.benchmark(group="gpt2_mle_step")
def test_gpt2_mle_step_bare_loop_reference(benchmark, variant):
    benchmark.extra_info.update({"pair": "gpt2_mle_step", "role": "ref"})
    bare = BareLoop(variant)
    losses = []

    def bare_step():
        losses.append(bare.step(variant.batches.next_indices()))

    benchmark.pedantic(replay, args=(variant, bare_step), rounds=3, warmup_rounds=1)
    assert all(0 < loss < 20 for loss in losses)


def main() -> None:
    import argparse
    import statistics
    import time

    from baselines.gpt2_mle import GPT2MLE
    from bench.config import build_config
    from bench.corpora import load_corpus

    parser = argparse.ArgumentParser(description="gpt2_mle step against the bare loop")
    parser.add_argument("--set", action="append", default=[], help="config KEY=VALUE")
    parser.add_argument("--compile", action="store_true", help="compile both sides")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    overrides = {**SIZE, **dict(item.split("=", 1) for item in args.set),
                 "compile": args.compile}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    variant = GPT2MLE(build_config(GPT2MLE.Config, overrides), load_corpus("coco"), device, 0)
    bare = BareLoop(variant, compile_model=args.compile)
    sides = {"ours": variant.mle_step,
             "bare": lambda: bare.step(variant.batches.next_indices())}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for round_ in range(args.rounds + 1):  # the first round warms up (and compiles)
        for name, run_step in sides.items():
            started = time.perf_counter()
            replay(variant, run_step)
            if round_:
                times[name].append((time.perf_counter() - started) / STEPS * 1000)
    ours, ref = (statistics.median(times[name]) for name in sides)
    print(f"{torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}: ours "
          f"{ours:.1f} ms/step, bare loop {ref:.1f} ms/step, ratio {ours / ref:.3f}")


if __name__ == "__main__":
    main()
