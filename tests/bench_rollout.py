"""SeqGAN's generator update with batched rollouts against the prefix-by-prefix loop.

Sizes of SeqGAN's synthetic-oracle experiment (Yu et al. 2017): vocabulary 5,000 (+4 special
tokens), length 20 (+EOS), generator LSTM 32/32, batch 64, R = 16 completions per prefix, the
paper's CNN discriminator (1,720 filters of widths 1..20 and a highway layer). One generator
update = Monte-Carlo rewards of a batch of samples + one REINFORCE step. One torch thread.

    pytest tests/bench_rollout.py -p no:xdist --benchmark-columns=mean,min,max,rounds

"batched, prefix windows reused" scores each completion on the convolution windows that touch
its sampled suffix alone (CompletionScorer: the prefix's windows are the full sample's); its
extra_info holds the discriminator's FLOP floor: the multiply-adds that remain (the scorer's,
plus the samples' own forward pass) over this machine's single-thread matmul rate, measured in
the same test. The "generation" group scores every completion with a free function, which
isolates the rollouts themselves (state reuse, batching, sampling) from the discriminator's
cost, the same in both. The "completion scores" pair times the discriminator's scoring of one
fixed set of completions, reusing the prefix windows against the forward pass on each. Where
benchmarks are disabled (under pytest-xdist, or --benchmark-disable) each case
runs once at toy sizes, so the code stays exercised in the test suite without the minutes.
"""

import os
import time

import pytest
import torch

from baselines.primitives import estimators as est
from baselines.primitives.discriminators import CNNDiscriminator
from baselines.primitives.lstm import LSTMGenerator
from baselines.primitives.rollout import (
    rollout_rewards,
    rollout_rewards_reference,
    sample_sequences,
)
from baselines.primitives.sequences import targets_to_inputs
from baselines.seqgan import SEQGAN_FILTER_SIZES, SEQGAN_NUM_FILTERS
from bench.text import PAD

ORACLE = {"vocab": 5004, "width": 21, "batch": 64, "rollouts": 16, "hidden": 32}
TOY = {"vocab": 50, "width": 6, "batch": 4, "rollouts": 2, "hidden": 8}
# The regression check (GANBENCH_BENCH_SIZE=regression) tracks the generation ratio at a size
# that takes seconds, not minutes: oracle vocabulary and width, a quarter of the batch, R = 4.
REGRESSION = {"vocab": 5004, "width": 21, "batch": 16, "rollouts": 4, "hidden": 32}


class GeneratorUpdate:
    """A generator, a discriminator and a fixed batch of samples to update on."""

    def __init__(self, sizes, score_with_discriminator: bool):
        torch.manual_seed(0)
        self.sizes = sizes
        self.generator = LSTMGenerator(sizes["vocab"], sizes["hidden"], sizes["hidden"])
        self.optimizer = torch.optim.Adam(self.generator.parameters(), lr=1e-2)
        self.discriminator = CNNDiscriminator(sizes["vocab"], 64, SEQGAN_FILTER_SIZES,
                                              SEQGAN_NUM_FILTERS, dropout=0.25).eval()
        self.samples, _ = sample_sequences(self.generator, sizes["batch"], sizes["width"],
                                           torch.Generator().manual_seed(0))
        self.score = self.probability_real if score_with_discriminator else self.free_score
        self.multiply_adds = 0  # the discriminator's, in the last run reusing prefix windows

    @torch.no_grad()
    def probability_real(self, tokens):
        return torch.sigmoid(self.discriminator(tokens))

    @staticmethod
    def free_score(tokens):
        return tokens[:, 0].float()

    def run(self, batched: bool, reuse_prefix_windows: bool = False) -> None:
        rng = torch.Generator().manual_seed(1)
        if reuse_prefix_windows:
            scorer = self.discriminator.completion_scorer(self.samples)
            rewards = rollout_rewards(
                self.generator, self.samples, self.sizes["rollouts"], self.score, rng,
                score_completions=lambda *args: torch.sigmoid(scorer(*args))).rewards
            self.multiply_adds = scorer.multiply_adds + len(self.samples) * (
                self.discriminator.flops_per_sequence(self.sizes["width"]) / 2)
        elif batched:
            rewards = rollout_rewards(self.generator, self.samples, self.sizes["rollouts"],
                                      self.score, rng).rewards
        else:
            rewards = rollout_rewards_reference(self.generator, self.samples,
                                                self.sizes["rollouts"], self.score, rng)
        mask = self.samples != PAD
        logits, _ = self.generator(targets_to_inputs(self.samples))
        log_probs = torch.log_softmax(logits.float(), -1).gather(
            -1, self.samples.unsqueeze(-1)).squeeze(-1)
        loss = est.reinforce_loss(log_probs, rewards, mask,
                                  est.batch_mean_baseline(rewards, mask))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def matmul_multiply_adds_per_second(seconds: float = 1.0) -> float:
    """This machine's single-thread sgemm rate: the best over the discriminator's own shapes
    (the convolutions' windows x (E k) @ (E k) x F, and the highway's N x F @ F x 2F), each
    timed for ``seconds``. The best, so that the floor is never flattered by a slow shape."""
    best_rate = 0.0
    for rows, inner, cols in ((4096, 320, 200), (1024, 1720, 3440)):
        a, b = torch.randn(rows, inner), torch.randn(inner, cols)
        best = float("inf")
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
        best_rate = max(best_rate, rows * inner * cols / best)
    return best_rate


def bench(benchmark, batched: bool, with_discriminator: bool, rounds: int, pair: str = "",
          reuse_prefix_windows: bool = False):
    if benchmark.disabled:
        sizes = TOY
    elif os.environ.get("GANBENCH_BENCH_SIZE") == "regression":
        if not pair:
            pytest.skip("only the tracked pair runs at regression size")
        sizes = REGRESSION
    else:
        sizes = ORACLE
    if pair:  # python -m bench.regression tracks ours / reference of this pair
        benchmark.extra_info.update({"pair": pair, "role": "ours" if batched else "ref"})
    update = GeneratorUpdate(sizes, with_discriminator)
    benchmark.pedantic(update.run, args=(batched, reuse_prefix_windows), rounds=rounds,
                       iterations=1, warmup_rounds=0)
    if reuse_prefix_windows:
        rate = matmul_multiply_adds_per_second()
        benchmark.extra_info.update({
            "discriminator_multiply_adds": update.multiply_adds,
            "matmul_multiply_adds_per_s": rate,
            "discriminator_floor_s": update.multiply_adds / rate})


@pytest.mark.benchmark(group="seqgan generator update (oracle sizes)")
def test_generator_update_prefix_by_prefix(benchmark):
    bench(benchmark, batched=False, with_discriminator=True, rounds=2)


@pytest.mark.benchmark(group="seqgan generator update (oracle sizes)")
def test_generator_update_batched(benchmark):
    bench(benchmark, batched=True, with_discriminator=True, rounds=3)


@pytest.mark.benchmark(group="seqgan generator update (oracle sizes)")
def test_generator_update_batched_reusing_prefix_windows(benchmark):
    bench(benchmark, batched=True, with_discriminator=True, rounds=3,
          reuse_prefix_windows=True)


class CompletionScores:
    """One fixed set of rollout completions (every unfinished prefix, R each) and the
    discriminator that scores them."""

    def __init__(self, sizes):
        update = GeneratorUpdate(sizes, score_with_discriminator=True)
        self.discriminator, self.samples = update.discriminator, update.samples
        kept = []

        def keep(completions, sentence, prefix_length):
            kept.append((completions, sentence, prefix_length))
            return torch.zeros(len(completions))

        rollout_rewards(update.generator, self.samples, sizes["rollouts"], update.free_score,
                        torch.Generator().manual_seed(1), score_completions=keep)
        self.groups = kept

    @torch.no_grad()
    def forward_each(self):
        return [self.discriminator(c) for c, _, _ in self.groups]

    @torch.no_grad()
    def reusing_prefix_windows(self):
        scorer = self.discriminator.completion_scorer(self.samples)
        return [scorer(*group) for group in self.groups]


@pytest.mark.parametrize("reuse", [False, True], ids=["forward_each", "reusing_prefix_windows"])
@pytest.mark.benchmark(group="completion scores only (oracle sizes)")
def test_completion_scores(benchmark, reuse):
    sizes = TOY if benchmark.disabled else (
        REGRESSION if os.environ.get("GANBENCH_BENCH_SIZE") == "regression" else ORACLE)
    benchmark.extra_info.update({"pair": "completion_scores", "role": "ours" if reuse else "ref"})
    scores = CompletionScores(sizes)
    run = scores.reusing_prefix_windows if reuse else scores.forward_each
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    if reuse and not benchmark.disabled:  # the scoring's own floor: its multiply-adds / rate
        scorer = scores.discriminator.completion_scorer(scores.samples)
        for group in scores.groups:
            scorer(*group)
        rate = matmul_multiply_adds_per_second()
        benchmark.extra_info.update({"discriminator_multiply_adds": scorer.multiply_adds,
                                     "matmul_multiply_adds_per_s": rate,
                                     "discriminator_floor_s": scorer.multiply_adds / rate})


@pytest.mark.benchmark(group="rollout generation only (oracle sizes, free scores)")
def test_generation_prefix_by_prefix(benchmark):
    bench(benchmark, batched=False, with_discriminator=False, rounds=1,
          pair="rollout_generation")


@pytest.mark.benchmark(group="rollout generation only (oracle sizes, free scores)")
def test_generation_batched(benchmark):
    bench(benchmark, batched=True, with_discriminator=False, rounds=3,
          pair="rollout_generation")
