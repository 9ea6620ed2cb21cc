"""LSTM GAN: an LSTM generator against an LSTM discriminator; no rollouts.

The generator update (``g_loss``):
- ``reinforce``: REINFORCE (Williams 1992) with the discriminator's logit of each sampled
  sequence as its reward, minus a baseline (``baseline``: none, a moving average, or the batch
  mean). With ``dense_rewards``, ScratchGAN-style per-token rewards instead (de Masson
  d'Autume et al. 2019): the discriminator scores every prefix, r_t = its logit after token t,
  and token t gets R_t = sum_{s >= t} gamma^(s - t) r_s.
- ``nonsaturating``: the generator samples by straight-through Gumbel-softmax (Jang et al.
  2017), the discriminator reads the one-hots, and the generator minimises -log D (Goodfellow
  et al. 2014) by backpropagation through both.
- ``wasserstein``: the same relaxation with a Wasserstein critic (Arjovsky et al. 2017): the
  critic minimises critic(fake) - critic(real) with its weights clipped to +-critic_clip, the
  generator minimises -critic(fake).
The discriminator minimises binary cross-entropy except under ``wasserstein``; with
``dense_rewards`` at every prefix (ScratchGAN's sequential loss), since the rewards read them all.
Policy gradients count sampled actions only (not the EOS forced at the length cap) with the
log-probabilities of the distribution sampled from (PAD, BOS, UNK masked).

The phases (MLE pretraining, discriminator pretraining, adversarial rounds of ``g_steps``
generator updates then ``d_steps`` discriminator rounds), the stability checks, the logs and
the checkpoints are baselines/adversarial_lstm.py's, shared with seqgan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from baselines.adversarial_lstm import AdversarialLSTM, AdversarialLSTMConfig
from baselines.primitives import estimators as est
from baselines.primitives.discriminators import LSTMDiscriminator
from baselines.primitives.rollout import NEVER_SAMPLED, sample_sequences
from baselines.primitives.sequences import trim_padding
from bench.config import field
from bench.text import BOS, EOS, PAD
from bench.variant import StepReport


@dataclass
class LSTMGANConfig(AdversarialLSTMConfig):
    g_loss: Literal["reinforce", "nonsaturating", "wasserstein"] = field(
        "reinforce", "generator update: REINFORCE on the discriminator's logit, or through "
                     "Gumbel-softmax samples the non-saturating loss or a Wasserstein critic")
    dense_rewards: bool = field(False, "reinforce: per-token discounted rewards from the "
                                       "discriminator's score of every prefix (ScratchGAN)")
    gamma: float = field(0.95, "discount of the dense rewards", bounds="[0, 1]")
    gumbel_temperature: float = field(1.0, "Gumbel-softmax temperature (nonsaturating, "
                                           "wasserstein)", bounds="(0, inf)")
    critic_clip: float = field(0.01, "wasserstein: the critic's weights are clipped to this",
                               bounds="(0, inf)")
    d_embedding_dim: int = field(64, "discriminator token embedding size", bounds="[1, inf)")
    d_hidden_dim: int = field(128, "discriminator LSTM hidden size", bounds="[1, inf)")
    d_num_layers: int = field(1, "discriminator LSTM layers", bounds="[1, inf)")

    def validate(self) -> None:
        super().validate()
        if self.dense_rewards and self.g_loss != "reinforce":
            raise ValueError("dense_rewards needs g_loss=reinforce")


class LSTMGAN(AdversarialLSTM):
    name = "lstm_gan"
    Config = LSTMGANConfig
    description = ("LSTM generator (MLE-pretrained) against an LSTM discriminator: REINFORCE on "
                   "its logit, or Gumbel-softmax with a non-saturating or Wasserstein loss")

    def build_discriminator(self) -> LSTMDiscriminator:
        config = self.config
        return LSTMDiscriminator(len(self.corpus.vocab), config.d_embedding_dim,
                                 config.d_hidden_dim, config.d_num_layers)

    @property
    def is_critic(self) -> bool:
        return self.config.g_loss == "wasserstein"

    def sequence_scores(self, tokens: torch.Tensor) -> torch.Tensor:
        return LSTMDiscriminator.sequence_logits(self.discriminator(tokens), tokens)

    def discriminator_scores(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.sequence_scores(tokens)

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.dense_rewards:
            real_prefix, fake_prefix = self.discriminator(real), self.discriminator(fake)
            loss = est.sequential_bce_loss(real_prefix, real != PAD, fake_prefix, fake != PAD)
            return loss, est.binary_accuracy(LSTMDiscriminator.sequence_logits(real_prefix, real),
                                             LSTMDiscriminator.sequence_logits(fake_prefix, fake))
        real_scores, fake_scores = self.sequence_scores(real), self.sequence_scores(fake)
        if self.is_critic:
            loss = est.wasserstein_critic_loss(real_scores, fake_scores)
            # A critic's scores have no fixed threshold: accuracy at the midpoint of the means.
            middle = 0.5 * (real_scores.mean() + fake_scores.mean())
            return loss, est.binary_accuracy(real_scores - middle, fake_scores - middle)
        loss = est.discriminator_bce_loss(real_scores, fake_scores)
        return loss, est.binary_accuracy(real_scores, fake_scores)

    def after_discriminator_step(self) -> None:
        if self.is_critic:  # WGAN's Lipschitz constraint by weight clipping
            with torch.no_grad():
                for parameter in self.discriminator.parameters():
                    parameter.clamp_(-self.config.critic_clip, self.config.critic_clip)

    def discriminator_flops(self, num_sequences: int) -> float:
        return num_sequences * self.width * self.discriminator.flops_per_token()

    def discriminator_batch(self, tokens: torch.Tensor) -> torch.Tensor:
        # An LSTM reads left to right: the columns that are padding in every row change no
        # logit of a counted position, so they are cut (real batches are corpus-wide).
        return trim_padding(tokens)

    def generator_update(self) -> StepReport:
        if self.config.g_loss == "reinforce":
            return self.reinforce_update()
        return self.gumbel_update()

    def reinforce_update(self) -> StepReport:
        config = self.config
        samples, tokens = sample_sequences(self.generator, config.batch_size, self.width,
                                           self.train_rng)
        mask = samples != PAD
        self.discriminator.eval()
        with torch.no_grad():
            prefix_logits = self.discriminator(samples)
        self.discriminator.train()
        if config.dense_rewards:
            rewards = est.discounted_returns(prefix_logits, mask, config.gamma)
        else:
            rewards = LSTMDiscriminator.sequence_logits(prefix_logits, samples)
        report = self.policy_gradient_step(samples, rewards)
        report.tokens = tokens
        # Sampling (forward), the discriminator's scoring, the update (forward + backward).
        report.flops = 4 * tokens * self.generator.flops_per_token() + self.discriminator_flops(
            len(samples))
        return report

    def gumbel_samples(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(one_hots [B, W, V] with Gumbel-softmax gradients, ids [B, W], logits [B, W, V]).

        As LSTMGenerator.sample: PAD, BOS, UNK never drawn, EOS at the last position, PAD after
        EOS. Each step reads the previous one-hot through the embedding matrix, so gradients
        also flow along the sequence."""
        config, generator = self.config, self.generator
        batch, vocab = config.batch_size, len(self.corpus.vocab)
        never = torch.zeros(vocab, dtype=torch.bool, device=self.device)
        never[list(NEVER_SAMPLED)] = True
        eos = F.one_hot(torch.tensor(EOS, device=self.device), vocab).float()
        pad = F.one_hot(torch.tensor(PAD, device=self.device), vocab).float()
        finished = torch.zeros(batch, dtype=torch.bool, device=self.device)
        inputs = generator.embedding(torch.full((batch, 1), BOS, device=self.device))
        state = None
        one_hots, ids, all_logits = [], [], []
        generator.train()
        for position in range(self.width):
            hidden, state = generator.lstm(inputs, state)
            logits = generator.output(generator.dropout(hidden[:, 0])).float()
            logits = logits.masked_fill(never, -float("inf"))
            if position == self.width - 1:
                one_hot = eos.expand(batch, vocab)
                index = torch.full((batch,), EOS, dtype=torch.long, device=self.device)
            else:
                one_hot, index = est.gumbel_softmax_straight_through(
                    logits, config.gumbel_temperature, self.train_rng)
            one_hot = torch.where(finished.unsqueeze(1), pad, one_hot)
            index = index.masked_fill(finished, PAD)
            finished = finished | (index == EOS)
            one_hots.append(one_hot)
            ids.append(index)
            all_logits.append(logits)
            inputs = (one_hot @ generator.embedding.weight).unsqueeze(1)
        return torch.stack(one_hots, 1), torch.stack(ids, 1), torch.stack(all_logits, 1)

    def gumbel_update(self) -> StepReport:
        one_hots, ids, logits = self.gumbel_samples()
        mask = ids != PAD
        # The discriminator stays in training mode (it has no dropout): cuDNN's LSTM backward
        # runs only in training mode, and the generator's gradient passes through it.
        scores = LSTMDiscriminator.sequence_logits(self.discriminator(one_hots), ids)
        if self.is_critic:
            loss = est.wasserstein_generator_loss(scores)
        else:
            loss = est.nonsaturating_generator_loss(scores)
        entropy = est.mean_token_entropy(logits.detach(), mask)
        # The one wait of this update: how many tokens were drawn is known only on the device
        # (the relaxed sampler runs every row to the end, reading nothing back). Taken before
        # the update is queued, so it waits for the forward pass alone.
        tokens = int(mask.sum())
        self._step(self.g_optimizer, self.generator, loss)
        vocab = one_hots.shape[-1]
        # Forward + backward through the generator and the discriminator; the soft inputs are
        # read through the embedding matrices (a V x E product per position, in both).
        embedding_reads = 2 * vocab * (self.generator.embedding.embedding_dim
                                       + self.discriminator.embedding.embedding_dim)
        flops = 3 * (tokens * self.generator.flops_per_token() + self.discriminator_flops(
            len(ids)) + len(ids) * self.width * embedding_reads)
        return StepReport(tokens=tokens, flops=flops,
                          logs={"train/g_loss": loss.detach(), "train/g_entropy": entropy,
                                "train/reward_mean": scores.detach().mean()},
                          checks=self.generator_checks(loss, entropy))


VARIANT = LSTMGAN
