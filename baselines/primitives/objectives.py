"""Training objectives of the GPT-2 variants as small pure tensor functions (no model inside).

- ``mle_loss``: the mean negative log-likelihood of the counted tokens (gpt2_mle).
- ``mixce_loss``: MixCE (Zhang et al., ACL 2023, "MixCE: Training Autoregressive Language Models
  by Mixing Forward and Reverse Cross-Entropies"), eta x forward CE + (1 - eta) x the paper's
  approximation of the reverse CE. The reverse CE's gradient is an expectation under the model;
  the paper re-weights the data's tokens by the model's own (self-sampled) probability of them
  instead of sampling, which at the token level makes each token's loss
  ``-(eta + (1 - eta) * q_t) * log q_t`` with q_t = p(x_t | x_<t) held constant (no gradient
  through the weight). eta = 1 is MLE. Nothing is sampled, so the step costs what an MLE step
  costs.
- ``discriminator_loss``: a discriminator's loss on real and generated sentences.
  ``bce``: softmax cross-entropy of its two logits (fake, real) against the labels, over the
  real and the generated sentences together (the standard GAN loss; for two logits it is the
  binary cross-entropy of their difference). ``bradley_terry``: pairs (real i, generated i),
  -log sigmoid(s_real - s_generated) averaged over pairs, s = logit_real - logit_fake: the
  preference loss of reward models (Bradley and Terry 1952; GAD, Ye et al. 2025, arXiv
  2511.10643, trains its discriminator with it). It depends on score differences only, so a
  shift of every score leaves it unchanged: its scores are rewards, not probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FAKE, REAL = 0, 1  # a discriminator's logit columns (primitives.hf's classifiers too)


def mle_loss(token_log_probs: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """-sum log p / num_tokens; ``token_log_probs`` [B, T] is 0 at padding."""
    return -token_log_probs.sum() / num_tokens


def mixce_loss(token_log_probs: torch.Tensor, num_tokens: int, mixing_ratio: float
               ) -> torch.Tensor:
    """-sum_t (eta + (1 - eta) q_t) log q_t / num_tokens, q_t = exp(log p_t) without gradient;
    padding (log p = 0) adds nothing."""
    weights = mixing_ratio + (1.0 - mixing_ratio) * token_log_probs.detach().exp()
    return -(weights * token_log_probs).sum() / num_tokens


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, accuracy) from [N, 2] logits (fake, real) of N real and M generated sentences.
    bce: accuracy of argmax against the labels over all N + M. bradley_terry (N == M, row i of
    each side one pair): the share of pairs ranked right (s_real > s_generated)."""
    if kind == "bce":
        logits = torch.cat([real_logits, fake_logits])
        labels = torch.cat([torch.full((len(real_logits),), REAL, device=logits.device),
                            torch.full((len(fake_logits),), FAKE, device=logits.device)])
        loss = F.cross_entropy(logits, labels)
        return loss, (logits.argmax(dim=1) == labels).float().mean()
    if kind == "bradley_terry":
        if len(real_logits) != len(fake_logits):
            raise ValueError(f"Bradley-Terry pairs: {len(real_logits)} real against "
                             f"{len(fake_logits)} generated sentences")
        margin = ((real_logits[:, REAL] - real_logits[:, FAKE])
                  - (fake_logits[:, REAL] - fake_logits[:, FAKE]))
        # -log sigmoid(m) = softplus(-m), stable for any margin.
        return F.softplus(-margin).mean(), (margin > 0).float().mean()
    raise ValueError(f"unknown discriminator loss {kind!r}: bce or bradley_terry")
