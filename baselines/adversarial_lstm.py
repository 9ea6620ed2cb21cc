"""The machinery the LSTM GANs share (lstm_gan, seqgan): phases, the MLE and discriminator
steps, stability checks and checkpoints; a subclass builds the discriminator and updates the
generator.

Phases, scheduled on the share of the budget spent (``progress``):
0. ``progress < mle_fraction``: MLE pretraining of the generator, mle_lstm's step.
1. then, for ``disc_pretrain_fraction``: discriminator pretraining, real training sentences
   against samples of the pretrained generator.
2. the rest: adversarial rounds, each ``g_steps`` generator updates (the subclass's) then
   ``d_steps`` discriminator rounds (a fresh batch of samples, ``d_epochs`` updates on it).

Stability: a non-finite loss, or a generator whose mean entropy per sampled token falls below
``min_entropy`` in the adversarial phase (collapse onto a few sentences), ends the run with
status ``diverged`` at that step. Steps report these as checks (bench.variant.Check) and their
logs as 0-d tensors, which the harness reads a few steps at a time: no step waits for the
device to report them.

Logs per step: ``train/phase`` (0 MLE, 1 discriminator pretraining, 2 adversarial), and where
the phase computes them ``train/g_loss``, ``train/g_entropy`` (nats per token; MLE: of the
teacher-forced predictions on 8 sentences of the batch), ``train/d_loss``, ``train/d_acc``
(the discriminator's own accuracy on its last batch, balanced), ``train/reward_mean``. MLE
steps log g_loss and g_entropy; discriminator pretraining d_loss and d_acc; adversarial
rounds all of them.

StepReport.tokens counts the generator's tokens: teacher-forced ones in MLE, sampled ones
(including those sampled for the discriminator) afterwards. flops: 2 x parameters x tokens per
forward (embeddings excluded), x3 for a forward with backward (``_flops`` methods).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Literal

import torch

from baselines.mle_lstm import MLELSTM, MLELSTMConfig
from baselines.primitives import estimators as est
from baselines.primitives.engine import adam, compact_lstms, optimizer_step, to_device
from baselines.primitives.lstm import cross_entropy_consuming_logits
from baselines.primitives.rollout import NEVER_SAMPLED, sample_sequences
from baselines.primitives.sequences import (
    RandomBatches,
    encode,
    targets_to_inputs,
)
from bench.config import field
from bench.corpora import Corpus
from bench.text import PAD
from bench.variant import Check, StepReport

PHASE_MLE, PHASE_D_PRETRAIN, PHASE_ADVERSARIAL = 0, 1, 2
PHASE_NAMES = ("mle", "discriminator", "adversarial")


@dataclass
class AdversarialLSTMConfig(MLELSTMConfig):
    mle_fraction: float = field(0.5, "share of the budget for MLE pretraining of the generator",
                                bounds="[0, 1)")
    disc_pretrain_fraction: float = field(0.1, "share of the budget for discriminator "
                                               "pretraining (after MLE)", bounds="[0, 1)")
    g_steps: int = field(1, "generator updates per adversarial round", bounds="[1, inf)")
    d_steps: int = field(1, "discriminator rounds (fresh samples each) per adversarial round",
                         bounds="[1, inf)")
    d_epochs: int = field(1, "discriminator updates on each batch of samples", bounds="[1, inf)")
    g_learning_rate: float = field(1e-3, "generator Adam learning rate, adversarial phase",
                                   bounds="(0, inf)")
    d_learning_rate: float = field(1e-3, "discriminator Adam learning rate", bounds="(0, inf)")
    baseline: Literal["none", "moving", "batch_mean"] = field(
        "moving", "REINFORCE baseline: none, a moving average of the reward, or the batch mean")
    baseline_decay: float = field(0.9, "decay of the moving-average baseline", bounds="[0, 1)")
    min_entropy: float = field(0.1, "adversarial phase: a mean generator entropy below this "
                                    "(nats per token) ends the run as diverged; 0 = off",
                                    bounds="[0, inf)")

    def validate(self) -> None:
        if self.mle_fraction + self.disc_pretrain_fraction >= 1:
            raise ValueError("mle_fraction and disc_pretrain_fraction must sum below 1")


class AdversarialLSTM(MLELSTM, abc.ABC):
    """The phases, the MLE and discriminator steps, the checks and the checkpoints of the LSTM
    GANs; subclasses build the discriminator and update the generator."""

    def __init__(self, config: AdversarialLSTMConfig, corpus: Corpus, device: torch.device,
                 seed: int):
        # The generator (and its MLE optimiser) first, from the global RNG: the same initial
        # weights as mle_lstm with the same seed.
        super().__init__(config, corpus, device, seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            self.discriminator = compact_lstms(self.build_discriminator().to(self.device))
        self.d_optimizer = adam(self.discriminator.parameters(), config.d_learning_rate,
                                self.device)
        self.g_optimizer = adam(self.generator.parameters(), config.g_learning_rate, self.device)
        self.real_batches = RandomBatches(len(self.train_data), config.batch_size, seed + 2)
        self.train_rng = torch.Generator(device=self.device).manual_seed(seed + 3)
        self.width = corpus.max_length + 1  # tokens + EOS, as the generator's targets
        self.phase = PHASE_MLE
        self.moving_baseline: torch.Tensor | None = None

    # -- what a subclass provides ---------------------------------------------------------

    @abc.abstractmethod
    def build_discriminator(self) -> torch.nn.Module: ...

    @abc.abstractmethod
    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, balanced accuracy) of the discriminator on real and fake ids [B, W]."""

    @abc.abstractmethod
    def discriminator_flops(self, num_sequences: int) -> float:
        """Forward FLOPs of the discriminator on that many sequences of self.width."""

    @abc.abstractmethod
    def discriminator_scores(self, tokens: torch.Tensor) -> torch.Tensor:
        """The discriminator's score (higher = more real) of each sequence of ids [N, W]."""

    @abc.abstractmethod
    def generator_update(self) -> StepReport:
        """One adversarial generator update: its generator tokens, FLOPs, logs and checks."""

    def end_mle_phase(self) -> None:
        """Called once, when the MLE phase is over."""

    # -- phases -----------------------------------------------------------------------------

    def phase_name(self) -> str:
        return PHASE_NAMES[self.phase]

    def train_step(self, progress: float) -> StepReport:
        config = self.config
        if progress < config.mle_fraction:
            report = self.mle_step()
        else:
            if self.phase == PHASE_MLE:
                self.phase = PHASE_D_PRETRAIN
                self.end_mle_phase()
            if progress < config.mle_fraction + config.disc_pretrain_fraction:
                report = self.discriminator_round()
            else:
                self.phase = PHASE_ADVERSARIAL
                report = self.adversarial_round()
        report.logs["train/phase"] = float(self.phase)
        return report

    def mle_step(self) -> StepReport:
        indices = self.batches.next_indices()
        lengths = self.train_lengths[indices]
        batch = self.train_data.select(to_device(indices, self.device))
        # Logits of the counted positions only (no work on padding), sentence after sentence.
        logits, targets = self.generator.counted_logits(batch.inputs, batch.targets, lengths)
        # A diagnostic only (no collapse check in MLE): 8 sentences keep its cost a few per
        # cent of the step, so the MLE phase runs as fast as mle_lstm's. Their positions are
        # the first rows of the counted logits; taken before the loss's backward, which
        # reuses the logits' buffer. Counts come from the host's lengths (mle_lstm's).
        first_eight = int(lengths[:8].sum())
        entropy = est.mean_token_entropy(logits[:first_eight].detach(),
                                         torch.ones(first_eight, dtype=torch.bool,
                                                    device=logits.device))
        loss = cross_entropy_consuming_logits(logits, targets)
        self._step(self.optimizer, self.generator, loss)
        tokens = int(lengths.sum())
        # The harness ends the run at a non-finite or exploding MLE loss (its nll rule).
        loss = loss.detach()
        return StepReport(tokens=tokens, flops=3 * tokens * self.generator.flops_per_token(),
                          logs={"train/g_loss": loss, "train/g_entropy": entropy},
                          nll=loss, nll_vocab_size=len(self.corpus.vocab))

    def discriminator_round(self) -> StepReport:
        """Fresh samples of the generator, then d_epochs discriminator updates on them, each
        against a fresh batch of real sentences."""
        fake, fake_tokens = sample_sequences(self.generator, self.config.batch_size,
                                             self.width, self.train_rng)
        self.discriminator.train()
        checks = []
        for _ in range(self.config.d_epochs):
            index = to_device(self.real_batches.next_indices(), self.device)
            real = self.discriminator_batch(self.train_data.targets[index])
            loss, accuracy = self.discriminator_loss(real, self.discriminator_batch(fake))
            self._step(self.d_optimizer, self.discriminator, loss)
            self.after_discriminator_step()
            checks.append(Check("discriminator loss", loss.detach()))
        flops = (fake_tokens * self.generator.flops_per_token()
                 + 3 * self.config.d_epochs * self.discriminator_flops(len(real) + len(fake)))
        return StepReport(tokens=fake_tokens, flops=flops, checks=checks,
                          logs={"train/d_loss": loss.detach(), "train/d_acc": accuracy},
                          generator_updates=0, discriminator_updates=self.config.d_epochs)

    def after_discriminator_step(self) -> None:
        """Hook after every discriminator update (weight clipping for a critic)."""

    def discriminator_batch(self, tokens: torch.Tensor) -> torch.Tensor:
        """The discriminator's training input for ids [N, W]: as they are, unless the
        discriminator's scores are known not to change when padding columns are cut."""
        return tokens

    def adversarial_round(self) -> StepReport:
        round_report = StepReport(tokens=0, generator_updates=self.config.g_steps)
        parts = [self.generator_update() for _ in range(self.config.g_steps)]
        for _ in range(self.config.d_steps):
            if self.budget_spent():
                break  # the round is cut short where the budget ends; the harness stops next
            parts.append(self.discriminator_round())
        for part in parts:  # the logs of the last update of each network are kept
            round_report.tokens += part.tokens
            round_report.flops += part.flops
            round_report.logs.update(part.logs)
            round_report.checks += part.checks
            round_report.discriminator_updates += part.discriminator_updates
        return round_report

    # -- shared pieces of generator updates ----------------------------------------------------

    def _step(self, optimizer: torch.optim.Optimizer, module: torch.nn.Module,
              loss: torch.Tensor) -> None:
        optimizer_step(optimizer, module, loss, self.config.grad_clip)

    def generator_checks(self, loss: torch.Tensor, entropy: torch.Tensor) -> list[Check]:
        """The adversarial generator update's divergence rules: a finite loss, and a mean
        entropy (nats per sampled token) not below min_entropy (0: only finite)."""
        floor = self.config.min_entropy if self.config.min_entropy > 0 else -float("inf")
        return [Check("generator loss", loss.detach()),
                Check("generator entropy (nats per token)", entropy, floor, "min_entropy")]

    def baseline_for(self, rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """The baseline of this batch's rewards ([B]: a number; [B, W]: per position); the
        moving average is taken over past batches, then updated with this one."""
        kind = self.config.baseline
        if kind == "none":
            return None
        batch_mean = est.batch_mean_baseline(rewards, mask)
        if kind == "batch_mean":
            return batch_mean
        baseline = batch_mean if self.moving_baseline is None else self.moving_baseline
        if rewards.dim() == 2:  # positions no sequence reached this time keep their average
            reached = mask.any(dim=0)
            batch_mean = torch.where(reached, batch_mean, baseline)
        self.moving_baseline = est.moving_average(self.moving_baseline, batch_mean,
                                                  self.config.baseline_decay)
        return baseline

    def policy_gradient_step(self, samples: torch.Tensor, rewards: torch.Tensor
                             ) -> StepReport:
        """REINFORCE on sampled sequences [B, W] with rewards [B] or [B, W]: the update's logs
        and checks (the caller counts its tokens and FLOPs)."""
        mask = samples != PAD
        # The EOS forced at the length cap was no sampled action: no gradient there.
        actions = est.sampled_action_mask(samples, PAD)
        baseline = self.baseline_for(rewards, actions)
        self.generator.train()
        logits, _ = self.generator(targets_to_inputs(samples))
        # The sampler never draws PAD/BOS/UNK: log-probs of that distribution, not the full one.
        log_probs = est.sampling_log_probs(logits, samples, NEVER_SAMPLED)
        loss = est.reinforce_loss(log_probs, rewards, actions, baseline)
        entropy = est.mean_token_entropy(logits.detach(), mask)
        self._step(self.g_optimizer, self.generator, loss)
        reward_mean = est.masked_mean(rewards, mask) if rewards.dim() == 2 else rewards.mean()
        return StepReport(tokens=0, logs={"train/g_loss": loss.detach(),
                                          "train/g_entropy": entropy,
                                          "train/reward_mean": reward_mean},
                          checks=self.generator_checks(loss, entropy))

    def lstm_flops_per_token(self) -> float:
        """The generator's LSTM alone (no output layer), per token."""
        return 2.0 * sum(p.numel() for p in self.generator.lstm.parameters())

    def scoring_flops(self, texts: list[str]) -> float:
        return self.discriminator_flops(len(texts))

    @torch.no_grad()
    def realness_scores(self, texts: list[str]) -> list[float]:
        """The discriminator's score of each text, read in the evaluation tokenization."""
        sentences = [self.corpus.tokenization.tokenize(text) for text in texts]
        tokens = encode(self.corpus.vocab, sentences, self.corpus.max_length).targets
        self.discriminator.eval()
        scores = [self.discriminator_scores(tokens[i : i + 500].to(self.device)).float().cpu()
                  for i in range(0, len(tokens), 500)]
        self.discriminator.train()
        return torch.cat(scores).tolist() if scores else []

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update({
            "discriminator": self.discriminator.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
            "g_optimizer": self.g_optimizer.state_dict(),
            "real_batches": self.real_batches.state_dict(),
            "train_rng": self.train_rng.get_state(),
            "phase": self.phase,
            "moving_baseline": self.moving_baseline,
        })
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.discriminator.load_state_dict(state["discriminator"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        self.real_batches.load_state_dict(state["real_batches"])
        self.train_rng.set_state(state["train_rng"])
        self.phase = int(state["phase"])
        baseline = state["moving_baseline"]
        self.moving_baseline = None if baseline is None else baseline.to(self.device)
