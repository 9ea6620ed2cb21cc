"""SeqGAN (Yu et al. 2017): an LSTM generator trained by REINFORCE against a CNN discriminator,
each token rewarded with the discriminator's mean score of Monte-Carlo completions of its prefix.

Phases, scheduled on the share of the budget spent (``progress``), as in lstm_gan:
0. ``progress < mle_fraction``: MLE pretraining of the generator (mle_lstm's step).
1. for ``disc_pretrain_fraction``: discriminator pretraining on real sentences against fresh
   samples, ``d_epochs`` updates per batch of samples.
2. adversarial rounds: ``g_steps`` generator updates, then ``d_steps`` discriminator rounds.

A generator update samples ``batch_size`` sequences, rewards the token at position t with the
mean of D(completion) over ``num_rollouts`` completions of the prefix ending at t (the full
sequence's D at the last position), D being the discriminator's probability of real, and takes
one REINFORCE step on sum_t (Q_t - b_t) log p(token_t) with the baseline b_t of ``baseline``
(the SeqGAN paper has none; the batch mean per position by default here). The completions are
drawn by the rollout network: as in the SeqGAN code, a delayed copy of the generator, moved
after every generator update to rate x itself + (1 - rate) x generator (the embedding copied
outright); ``rollout_update_rate`` = 0 uses the generator itself. Rollouts are batched
(baselines/primitives/rollout.py).

Defaults from the SeqGAN paper and code (oracle: generator LSTM 32/32 from mle_lstm's oracle
defaults, batch 64, R = 16; generator Adam 0.01 with gradient clip 5; discriminator: embedding
64, filter widths 1..10, 15, 20 with 100-200 filters each, a highway layer, dropout 0.25, L2
0.2 on the output layer, Adam 1e-4; per adversarial round 1 generator update and 5 rounds of
fresh negatives, each trained on for k = 3 updates (the paper's 3 epochs, here 3 minibatch
updates: a budget-sized scale-down). On the real corpora the generator keeps mle_lstm's sizes,
so that the two compare at equal generator size.

StepReport.tokens counts every token the generator or its rollout copy produced: the sampled
sequences, every token of every completion, and the samples for the discriminator (the
rollouts dominate: about batch x R x T^2 / 2 tokens per update for unfinished prefixes).
flops = 2 x parameters x tokens per forward (x3 with backward) for the generator, plus the
discriminator's convolutions and dense layers per scored sequence; the prefix pass counts the
LSTM alone.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import torch

from baselines.adversarial_lstm import AdversarialLSTM, AdversarialLSTMConfig
from baselines.primitives import estimators as est
from baselines.primitives.discriminators import CNNDiscriminator, CompletionScorer
from baselines.primitives.engine import compact_lstms
from baselines.primitives.rollout import CompletionScoreFn, rollout_rewards, sample_sequences
from bench.config import field
from bench.corpora import Corpus
from bench.variant import StepReport

# SeqGAN code (sequence_gan.py): dis_filter_sizes and dis_num_filters.
SEQGAN_FILTER_SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20]
SEQGAN_NUM_FILTERS = [100, 200, 200, 200, 200, 100, 100, 100, 100, 100, 160, 160]


@dataclass
class SeqGANConfig(AdversarialLSTMConfig):
    num_rollouts: int = field(16, "Monte-Carlo completions per prefix (R)", bounds="[1, inf)")
    rollout_update_rate: float = field(0.8, "the rollout network moves to rate x itself + "
                                            "(1 - rate) x generator after each update; 0 = "
                                            "the generator itself", bounds="[0, 1)")
    rollout_max_rows: int = field(1024, "completions in flight at once (memory bound)",
                                  bounds="[1, inf)")
    d_steps: int = field(5, "discriminator rounds (fresh samples each) per adversarial round")
    d_epochs: int = field(3, "discriminator updates on each batch of samples (SeqGAN's k)")
    g_learning_rate: float = field(1e-2, "generator Adam learning rate, adversarial phase")
    d_learning_rate: float = field(1e-4, "discriminator Adam learning rate")
    baseline: Literal["none", "moving", "batch_mean"] = field(
        "batch_mean", "REINFORCE baseline per position: none, a moving average over past "
                      "batches, or the batch mean")
    d_embedding_dim: int = field(64, "discriminator token embedding size", bounds="[1, inf)")
    d_filter_sizes: list[int] = field(SEQGAN_FILTER_SIZES, "convolution widths", bounds="[1, inf)")
    d_num_filters: list[int] = field(SEQGAN_NUM_FILTERS, "filters per convolution width",
                                     bounds="[1, inf)")
    d_dropout: float = field(0.25, "dropout before the discriminator's output layer",
                             bounds="[0, 1)")
    d_l2: float = field(0.2, "L2 penalty on the discriminator's output layer (SeqGAN's "
                             "l2_reg_lambda)", bounds="[0, inf)")

    def validate(self) -> None:
        super().validate()
        if not self.d_filter_sizes or len(self.d_filter_sizes) != len(self.d_num_filters):
            raise ValueError("d_filter_sizes and d_num_filters must be non-empty and as long")


class SeqGAN(AdversarialLSTM):
    name = "seqgan"
    Config = SeqGANConfig
    description = ("SeqGAN: LSTM generator, CNN discriminator, REINFORCE with Monte-Carlo "
                   "rollout rewards (batched)")

    def __init__(self, config: SeqGANConfig, corpus: Corpus, device: torch.device, seed: int):
        super().__init__(config, corpus, device, seed)
        self.rollout_network = None  # made when the MLE phase ends

    def build_discriminator(self) -> CNNDiscriminator:
        config = self.config
        return CNNDiscriminator(len(self.corpus.vocab), config.d_embedding_dim,
                                config.d_filter_sizes, config.d_num_filters, config.d_dropout)

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        real_logits, fake_logits = self.discriminator(real), self.discriminator(fake)
        output = self.discriminator.output
        # tf.nn.l2_loss(W) + tf.nn.l2_loss(b) = (|W|^2 + |b|^2) / 2, as the SeqGAN code.
        l2 = 0.5 * (output.weight.square().sum() + output.bias.square().sum())
        loss = est.discriminator_bce_loss(real_logits, fake_logits) + self.config.d_l2 * l2
        return loss, est.binary_accuracy(real_logits, fake_logits)

    def discriminator_flops(self, num_sequences: int) -> float:
        return num_sequences * self.discriminator.flops_per_sequence(self.width)

    def end_mle_phase(self) -> None:
        if self.config.rollout_update_rate > 0:
            self.rollout_network = compact_lstms(
                copy.deepcopy(self.generator).requires_grad_(False))

    def update_rollout_network(self) -> None:
        if self.rollout_network is None:
            return
        rate = self.config.rollout_update_rate
        with torch.no_grad():
            for (name, lagged), current in zip(self.rollout_network.named_parameters(),
                                               self.generator.parameters()):
                if name.startswith("embedding"):
                    lagged.copy_(current)
                else:
                    lagged.mul_(rate).add_(current, alpha=1.0 - rate)

    @torch.no_grad()
    def probability_real(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.discriminator(tokens))

    def discriminator_scores(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.probability_real(tokens)

    @staticmethod
    def completion_probability_real(scorer: CompletionScorer) -> CompletionScoreFn:
        """probability_real of rollout completions, computed on the windows touching their
        sampled part alone (the prefix's windows are the full sample's, computed once): the
        same numbers as probability_real on each completion."""
        return lambda *completions: torch.sigmoid(scorer(*completions))

    def generator_update(self) -> StepReport:
        config = self.config
        samples, sample_tokens = sample_sequences(self.generator, config.batch_size, self.width,
                                                  self.train_rng)
        rollout_generator = (self.generator if self.rollout_network is None
                             else self.rollout_network)
        self.discriminator.eval()  # no dropout in the rewards, as the SeqGAN code
        scorer = self.discriminator.completion_scorer(samples)
        rollout = rollout_rewards(rollout_generator, samples, config.num_rollouts,
                                  self.probability_real, self.train_rng,
                                  config.rollout_max_rows, should_stop=self.budget_spent,
                                  score_completions=self.completion_probability_real(scorer))
        self.discriminator.train()
        report = self.policy_gradient_step(samples, rollout.rewards)
        self.update_rollout_network()
        report.tokens = sample_tokens + rollout.completion_tokens
        g_flops = self.generator.flops_per_token()
        report.flops = (sample_tokens * g_flops  # sampling
                        + len(samples) * self.width * self.lstm_flops_per_token()  # prefixes
                        + rollout.completion_tokens * g_flops  # completions
                        + self.discriminator_flops(len(samples))  # samples' scores, windows
                        + 2.0 * scorer.multiply_adds  # the completions' scores
                        + 3 * sample_tokens * g_flops)  # the update, forward and backward
        report.logs["train/rollout_tokens"] = float(rollout.completion_tokens)
        return report

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["rollout_network"] = (None if self.rollout_network is None
                                    else self.rollout_network.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state.get("rollout_network") is None:
            self.rollout_network = None
        else:
            self.rollout_network = compact_lstms(
                copy.deepcopy(self.generator).requires_grad_(False))
            self.rollout_network.load_state_dict(state["rollout_network"])


VARIANT = SeqGAN
