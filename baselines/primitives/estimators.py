"""Gradient estimators and GAN losses of the LSTM GANs as small pure tensor functions.

No model inside: every function takes tensors and returns tensors, so each one is tested against
numbers worked out by hand (tests/test_estimators.py). Shapes: B sequences of T positions;
``mask`` [B, T] is True on the positions that count (the sampled tokens and their EOS), False on
padding. Discriminator outputs are logits (real = positive) unless said otherwise.

Rewards
- ``monte_carlo_rewards``: SeqGAN's action values (Yu et al. 2017, eq. 4): the reward of the
  token at position t is the mean discriminator score of R completions of the prefix that ends
  with it; at the last position, the score of the full sequence.
- ``discounted_returns``: R_t = sum_{s >= t} gamma^(s - t) r_s over the counted positions, for
  dense per-prefix rewards (ScratchGAN, de Masson d'Autume et al. 2019).

REINFORCE (Williams 1992)
- ``reinforce_loss``: -(reward - baseline) x log p(token), averaged over counted tokens.
- ``sampled_action_mask``: the positions that hold a sampled action; the EOS forced at the
  length cap was not sampled and gets no policy gradient.
- ``sampling_log_probs``: log p(token) under the distribution actually sampled from (never-
  sampled tokens masked out, the sampling temperature applied).
- ``batch_mean_baseline``, ``moving_average``: the two baselines besides none.

Relaxation
- ``gumbel_softmax_straight_through``: one-hot samples whose gradient is the Gumbel-softmax's
  (Jang et al. 2017; Maddison et al. 2017), the straight-through estimator of Bengio et al. 2013.

GAN losses
- ``discriminator_bce_loss``, ``sequential_bce_loss`` (every prefix),
  ``nonsaturating_generator_loss`` (Goodfellow et al. 2014),
  ``wasserstein_critic_loss``, ``wasserstein_generator_loss`` (Arjovsky et al. 2017).

Diagnostics
- ``binary_accuracy``, ``mean_token_entropy``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the True entries of ``mask`` (0 when there are none)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


# -- rewards -----------------------------------------------------------------------------------


def monte_carlo_rewards(completion_scores: torch.Tensor, full_scores: torch.Tensor
                        ) -> torch.Tensor:
    """Per-token rewards [B, T] from rollout scores.

    completion_scores [B, T - 1, R]: the score of completion r of the prefix of length t + 1
    (tokens 0..t), for t = 0..T-2. full_scores [B]: the score of each whole sequence, which is
    the reward of the last position (no completion is needed there).
    """
    if completion_scores.shape[0] != full_scores.shape[0]:
        raise ValueError("completion_scores and full_scores disagree on the batch size")
    mean_over_rollouts = completion_scores.mean(dim=-1)
    return torch.cat([mean_over_rollouts, full_scores.unsqueeze(1)], dim=1)


def discounted_returns(step_rewards: torch.Tensor, mask: torch.Tensor, gamma: float
                       ) -> torch.Tensor:
    """R_t = sum_{s >= t, mask_s} gamma^(s - t) r_s, 0 at padding: [B, T]."""
    masked = step_rewards * mask.to(step_rewards.dtype)
    returns = torch.zeros_like(masked)
    running = torch.zeros_like(masked[:, 0])
    # Backwards over positions: T is the sentence length (tens), the loop costs nothing.
    for t in range(masked.shape[1] - 1, -1, -1):
        running = masked[:, t] + gamma * running
        returns[:, t] = running
    return returns * mask.to(step_rewards.dtype)


# -- REINFORCE ---------------------------------------------------------------------------------


def sampled_action_mask(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """[B, W] True where a token was sampled: not padding, and not the last position, whose
    token (EOS) the sampler forces at the length cap."""
    mask = tokens != pad_id
    mask[:, -1] = False
    return mask


def sampling_log_probs(logits: torch.Tensor, tokens: torch.Tensor,
                       never_sampled: tuple[int, ...] | list[int] = (),
                       temperature: float = 1.0) -> torch.Tensor:
    """log p(token) [B, T] under softmax(logits / temperature) with the ``never_sampled`` ids
    removed, i.e. the distribution the sampler drew from. logits [B, T, V], tokens [B, T];
    positions whose token is a never-sampled id (padding) get 0."""
    scaled = logits.float() / temperature
    if len(never_sampled):
        scaled = scaled.clone()
        scaled[..., list(never_sampled)] = -float("inf")
    never = torch.zeros(tokens.shape, dtype=torch.bool, device=tokens.device)
    for token_id in never_sampled:
        never |= tokens == token_id
    safe = tokens.masked_fill(never, 0)
    log_probs = torch.log_softmax(scaled, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return log_probs.masked_fill(never, 0.0)


def reinforce_loss(log_probs: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor,
                   baseline: torch.Tensor | float | None = None) -> torch.Tensor:
    """-(reward - baseline) x log p(token), averaged over the counted tokens of the batch.

    log_probs [B, T]: log p of each sampled token. rewards: [B] (one per sequence, given to
    each of its tokens) or [B, T] (one per token). baseline: None, a number, or a tensor that
    broadcasts against rewards ([T] per position, [B] or [B, T]). No gradient flows into the
    rewards or the baseline.
    """
    advantages = rewards.detach()
    if baseline is not None:
        advantages = advantages - (baseline.detach() if isinstance(baseline, torch.Tensor)
                                   else baseline)
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    return -masked_mean(advantages * log_probs, mask.expand_as(log_probs))


def batch_mean_baseline(rewards: torch.Tensor, mask: torch.Tensor | None = None
                        ) -> torch.Tensor:
    """The batch's mean reward: a scalar for rewards [B]; per position [T] for rewards [B, T]
    (mean over the sequences still counted there; 0 where none is)."""
    if rewards.dim() == 1:
        return rewards.mean()
    weights = (torch.ones_like(rewards) if mask is None else mask.to(rewards.dtype))
    return (rewards * weights).sum(dim=0) / weights.sum(dim=0).clamp(min=1.0)


def moving_average(previous: torch.Tensor | None, value: torch.Tensor, decay: float
                   ) -> torch.Tensor:
    """decay x previous + (1 - decay) x value; the first value starts it."""
    value = value.detach()
    if previous is None:
        return value.clone()
    return decay * previous + (1.0 - decay) * value


# -- relaxation --------------------------------------------------------------------------------


def gumbel_softmax_straight_through(logits: torch.Tensor, temperature: float,
                                    rng: torch.Generator | None = None
                                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(one_hot, index): a sample of softmax(logits) as a one-hot [..., V] whose forward value
    is exact and whose gradient is that of softmax((logits + g) / temperature), g ~ Gumbel(0, 1).

    The same Gumbel noise picks the sample (the Gumbel-max trick) and shapes the gradient.
    """
    uniform = torch.rand(logits.shape, generator=rng, device=logits.device,
                         dtype=torch.float32).clamp_(min=1e-20, max=1.0 - 1e-7)
    gumbel = -torch.log(-torch.log(uniform))
    soft = torch.softmax((logits.float() + gumbel) / temperature, dim=-1)
    index = soft.argmax(dim=-1)
    hard = F.one_hot(index, logits.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft, index


# -- GAN losses --------------------------------------------------------------------------------


def discriminator_bce_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor
                           ) -> torch.Tensor:
    """Binary cross-entropy, real labelled 1 and fake 0, the two sets weighted equally:
    (mean -log sigmoid(real) + mean -log(1 - sigmoid(fake))) / 2."""
    return 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())


def sequential_bce_loss(real_logits: torch.Tensor, real_mask: torch.Tensor,
                        fake_logits: torch.Tensor, fake_mask: torch.Tensor) -> torch.Tensor:
    """ScratchGAN's discriminator loss (de Masson d'Autume et al. 2019): the binary
    cross-entropy of every prefix's logit [B, T], averaged over each side's counted positions,
    the two sides weighted equally. Dense rewards read every prefix, so every prefix is trained."""
    return 0.5 * (masked_mean(F.softplus(-real_logits), real_mask)
                  + masked_mean(F.softplus(fake_logits), fake_mask))


def nonsaturating_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """mean -log sigmoid(D(fake)): Goodfellow et al.'s non-saturating generator loss."""
    return F.softplus(-fake_logits).mean()


def wasserstein_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor
                            ) -> torch.Tensor:
    """mean critic(fake) - mean critic(real): the critic minimises it (WGAN)."""
    return fake_scores.mean() - real_scores.mean()


def wasserstein_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """-mean critic(fake)."""
    return -fake_scores.mean()


# -- diagnostics -------------------------------------------------------------------------------


def binary_accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Share of real logits > 0 and fake logits <= 0, the two sets weighted equally."""
    return 0.5 * ((real_logits > 0).float().mean() + (fake_logits <= 0).float().mean())


def mean_token_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of softmax(logits) [B, T, V] over the counted positions."""
    # entr(p) = -p ln p with entr(0) = 0: tokens masked to -inf logits add nothing, not NaN.
    entropy = torch.special.entr(torch.softmax(logits.float(), dim=-1)).sum(dim=-1)
    return masked_mean(entropy, mask)
