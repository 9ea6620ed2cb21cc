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
    parser.add_argument("--sampling", action="store_true",
                        help="time sampling 1,000 sentences instead: fixed-shape (a CUDA graph "
                             "on CUDA) against row-dropping decoding")
    parser.add_argument("--syncs", action="store_true",
                        help="count host-device synchronisations instead (CUDA only)")
    args = parser.parse_args()
    overrides = {**SIZE, **dict(item.split("=", 1) for item in args.set),
                 "compile": args.compile}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    variant = GPT2MLE(build_config(GPT2MLE.Config, overrides), load_corpus("coco"), device, 0)
    if args.sampling:
        return time_sampling(variant, args.rounds)
    if args.syncs:
        return count_syncs(variant)
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


def time_sampling(variant, rounds: int, n: int = 1000) -> None:
    """Median ms to sample ``n`` sentences at T = 1 (as evaluation does: the UTF-8 guard and
    banned ids, one batch), each decoding path, in interleaved rounds; and how many rows both
    drew alike from the same seed."""
    import statistics
    import time

    from baselines.primitives import generation

    model = variant.generator.eval()
    prompts = variant.bos_prompts(n)
    times: dict[bool, list[float]] = {False: [], True: []}
    drawn = {}
    for round_ in range(rounds + 1):
        for fixed_shape in times:
            rng = torch.Generator(device=variant.device).manual_seed(0)
            started = time.perf_counter()
            samples = generation.sample_tokens(
                model, prompts, variant.max_new_tokens, variant.eos_id, 1.0, rng,
                variant.banned_ids, utf8_guard=variant.utf8_guard(), fixed_shape=fixed_shape)
            tokens = samples.tokens.cpu()  # waits for the device
            if round_:
                times[fixed_shape].append((time.perf_counter() - started) * 1000)
            drawn[fixed_shape] = tokens
    dropping, fixed = (statistics.median(times[k]) for k in (False, True))
    # Rows drawn alike; a row may differ where float rounding moved a cdf boundary.
    width = min(drawn[False].shape[1], drawn[True].shape[1])
    same = int((drawn[False][:, :width] == drawn[True][:, :width]).all(dim=1).sum())
    name = torch.cuda.get_device_name() if variant.device.type == "cuda" else "cpu"
    print(f"{name}: sampling {n} sentences: fixed-shape {fixed:.0f} ms, dropping rows "
          f"{dropping:.0f} ms, rows drawn alike {same}/{n}")


def cuda_syncs(work) -> int:
    """The synchronising CUDA calls ``work()`` makes (CUDA's sync debug mode)."""
    import warnings

    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            work()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def count_syncs(variant, syncs=cuda_syncs) -> dict[str, int]:
    """How often each piece of work makes the host wait for the device: 3 MLE steps,
    sampling 200 sentences each way, NLL of 500 test sentences."""
    from baselines.primitives import generation

    if syncs is cuda_syncs and variant.device.type != "cuda":
        print("cpu: synchronisations are counted on CUDA only")
        return {}

    variant.mle_step()  # warm-up: first-call allocations
    model, prompts = variant.generator, variant.bos_prompts(200)

    def sample(fixed_shape: bool):
        return lambda: generation.sample_tokens(
            model.eval(), prompts, variant.max_new_tokens, variant.eos_id, 1.0,
            torch.Generator(device=variant.device).manual_seed(0), variant.banned_ids,
            utf8_guard=variant.utf8_guard(), fixed_shape=fixed_shape)

    counts = {"3 mle steps": syncs(lambda: [variant.mle_step() for _ in range(3)]),
              "sampling 200, fixed shape": syncs(sample(True)),
              "sampling 200, dropping rows": syncs(sample(False)),
              "nll of 500 test sentences": syncs(
                  lambda: variant.token_nll(variant.corpus.test[:500]))}
    counts.update(count_lstm_gan_syncs(variant.corpus, variant.device, syncs))
    name = torch.cuda.get_device_name() if variant.device.type == "cuda" else "cpu"
    print(f"{name}: synchronisations {counts} (max_new_tokens {variant.max_new_tokens})")
    return counts


def count_lstm_gan_syncs(corpus, device, syncs=cuda_syncs) -> dict[str, int]:
    """The same for the LSTM GANs' adversarial rounds at their default sizes: 3 of lstm_gan
    (REINFORCE, then Gumbel-softmax) and one of seqgan (its rollouts)."""
    from baselines.lstm_gan import LSTMGAN
    from baselines.seqgan import SeqGAN
    from bench.config import build_config

    counts = {}
    adversarial = {"mle_fraction": 0.0, "disc_pretrain_fraction": 0.0}
    for label, cls, overrides, rounds in (
            ("3 lstm_gan rounds, reinforce", LSTMGAN, {}, 3),
            ("3 lstm_gan rounds, gumbel", LSTMGAN, {"g_loss": "nonsaturating"}, 3),
            ("1 seqgan round", SeqGAN, {}, 1)):
        gan = cls(build_config(cls.Config, {**adversarial, **overrides}), corpus, device, 0)
        gan.train_step(0.5)  # warm-up: first-call allocations
        counts[label] = syncs(lambda gan=gan, rounds=rounds:
                              [gan.train_step(0.5) for _ in range(rounds)])
    return counts


if __name__ == "__main__":
    main()
