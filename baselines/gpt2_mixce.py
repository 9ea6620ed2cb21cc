"""GPT-2 trained with MixCE (Zhang et al., ACL 2023, "MixCE: Training Autoregressive Language
Models by Mixing Forward and Reverse Cross-Entropies"): gpt2_mle's model, tokenizer, batches and
schedule, with each token's loss -(eta + (1 - eta) q_t) log q_t instead of -log q_t, q_t the
model's probability of the data token, held constant (primitives.objectives.mixce_loss).

The reverse cross-entropy that MixCE mixes in is an expectation under the model; the paper's
approximation re-weights the data's own tokens by the model's probability of them instead of
drawing samples (its "self-sampled" weights), so a MixCE step draws nothing: its FLOPs, and
what the budget charges, are an MLE step's. The record's training NLL (train/g_mle_loss) stays
the plain NLL of the batch, comparable with gpt2_mle's, not the MixCE objective.

The paper selects the mixing ratio eta by validation MAUVE; here it is a config field
(default 0.5, eta = 1 is gpt2_mle) to be swept by a suite.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from baselines.gpt2_mle import GPT2MLE, GPT2MLEConfig
from baselines.primitives import objectives
from bench.config import field


@dataclass
class GPT2MixCEConfig(GPT2MLEConfig):
    mixing_ratio: float = field(0.5, "MixCE's eta: the forward cross-entropy's share (1 = MLE)",
                                bounds="[0, 1]")


class GPT2MixCE(GPT2MLE):
    name = "gpt2_mixce"
    Config = GPT2MixCEConfig
    description = "GPT-2 trained with MixCE (forward + approximate reverse cross-entropy)"

    def training_loss(self, token_log_probs: torch.Tensor, num_tokens: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        loss = objectives.mixce_loss(token_log_probs, num_tokens, self.config.mixing_ratio)
        return loss, objectives.mle_loss(token_log_probs.detach(), num_tokens)


VARIANT = GPT2MixCE
