"""Policy-gradient pieces of the GPT-2 GAN as small pure tensor functions (no model inside).

Shapes: B sequences of T positions; ``mask`` [B, T] is True on the positions that count (the
sampled tokens and their EOS), False on padding. Log-probs are per token, float32.

- ``masked_token_log_probs``: log p(target) per position from logits, 0 at padding.
- ``group_relative_advantages``: GRPO (Shao et al. 2024, "DeepSeekMath"): rewards of the
  samples drawn from one prompt, minus the group's mean, divided by the group's spread. The
  divisor is max(std, floor), not std + 1e-8: a group whose rewards barely differ (the
  discriminator cannot tell its samples apart) must give small advantages, not amplified noise.
- ``moving_baseline_advantages``: REINFORCE with an exponential moving average of the reward as
  the baseline (Williams 1992; the average is estimators.moving_average), scaled the same way.
- ``clipped_surrogate_loss``: PPO's clipped ratio objective (Schulman et al. 2017), averaged
  over all counted tokens of the batch (one weight per token, as in DAPO, Yu et al. 2025).
- ``kl_penalty``: the "k3" estimator of KL(policy || reference) per token,
  exp(r - p) - (r - p) - 1 with p, r the policy's and the reference's log-probs (Schulman 2020,
  "Approximating KL divergence"; the one GRPO uses): unbiased, never negative.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from baselines.primitives.estimators import masked_mean


def masked_token_log_probs(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                           temperature: float = 1.0, banned_ids: Sequence[int] = ()
                           ) -> torch.Tensor:
    """log softmax(logits / temperature)[target] per position [B, T], 0 where mask is False.
    ``banned_ids`` (tokens the sampler never draws) are removed from the softmax, so that the
    log-probs are those of the distribution sampled from."""
    logits = logits.float()
    if len(banned_ids):
        logits = logits.clone()
        logits[..., list(banned_ids)] = -float("inf")
    # cross_entropy is log_softmax + gather fused: no [B, T, V] log-prob tensor is kept.
    log_probs = -F.cross_entropy(logits.flatten(0, 1) / temperature, targets.flatten(),
                                 reduction="none").view(targets.shape)
    # where, not a product: a banned target at a masked position has log-prob -inf.
    return torch.where(mask, log_probs, torch.zeros_like(log_probs))


def sequence_log_probs(token_log_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log p(sequence) = sum of its counted tokens' log-probs: [B, T] -> [B]."""
    return (token_log_probs * mask).sum(dim=1)


def group_relative_advantages(rewards: torch.Tensor, group_size: int,
                              std_floor: float) -> torch.Tensor:
    """(reward - group mean) / max(group std, std_floor); rewards [G * group_size], grouped in
    consecutive runs of ``group_size``. The std is the population one (divides by group_size),
    so that a group of two has a defined spread."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    groups = rewards.float().view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    spread = groups.std(dim=1, unbiased=False, keepdim=True).clamp(min=std_floor)
    return (centred / spread).flatten()


def moving_baseline_advantages(rewards: torch.Tensor, baseline: torch.Tensor | None,
                               std_floor: float) -> torch.Tensor:
    """(reward - baseline) / max(batch std, std_floor); no baseline yet: the batch mean. The
    baseline itself is estimators.moving_average of the batch-mean rewards."""
    rewards = rewards.float()
    reference = rewards.mean() if baseline is None else baseline
    spread = rewards.std(unbiased=False).clamp(min=std_floor)
    return (rewards - reference) / spread


def clipped_surrogate_loss(log_probs: torch.Tensor, old_log_probs: torch.Tensor,
                           advantages: torch.Tensor, mask: torch.Tensor,
                           clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO loss -mean_t min(ratio_t A, clip(ratio_t, 1 - clip, 1 + clip) A) over counted tokens,
    ratio_t = exp(log_probs - old_log_probs), A the sequence's advantage; clip = 0 turns clipping
    off (plain importance-weighted policy gradient; with old = log_probs.detach() this is
    REINFORCE: the gradient of ratio at 1 is the gradient of log p). Returns (loss, share of
    counted tokens whose ratio was clipped)."""
    ratio = torch.exp(log_probs - old_log_probs)
    advantage = advantages.unsqueeze(1).to(ratio.dtype)
    unclipped = ratio * advantage
    if clip <= 0:
        return -masked_mean(unclipped, mask), torch.zeros((), device=ratio.device)
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip) * advantage
    was_clipped = (clipped < unclipped).to(ratio.dtype)
    return -masked_mean(torch.minimum(unclipped, clipped), mask), masked_mean(was_clipped, mask)


def kl_penalty(log_probs: torch.Tensor, reference_log_probs: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
    """Mean over counted tokens of the k3 estimate exp(d) - d - 1, d = ref - policy log-prob."""
    difference = reference_log_probs - log_probs
    return masked_mean(torch.exp(difference) - difference - 1.0, mask)
