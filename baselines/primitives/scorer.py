"""A discriminator made from the generator itself (GAD, Ye et al. 2025, arXiv 2511.10643: the
discriminator starts as a copy of the student with a scalar head): the causal LM's transformer
reads the whole sentence, BOS to EOS, and a linear head turns the hidden state at its last
counted position into one score s.

It answers like the GAN's two-class classifiers (primitives.hf.classifier_logits), with logits
(fake, real) = (0, s), so that the GAN's code applies unchanged: softmax cross-entropy on them
is the binary cross-entropy of s, and the realness logit_real - logit_fake is s itself.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from types import SimpleNamespace

import torch
from torch import nn

from baselines.primitives.hf import ClassifierBatch, encode_texts


class SequenceScorer(nn.Module):
    def __init__(self, causal_lm: nn.Module):
        super().__init__()
        # GPT2LMHeadModel.transformer: the body without the LM head.
        self.transformer = copy.deepcopy(causal_lm.base_model)
        self.head = nn.Linear(causal_lm.config.hidden_size, 1)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def copy_body_from(self, causal_lm: nn.Module) -> None:
        """The generator's current weights (at the start of the adversarial stage); the head
        keeps its own."""
        self.transformer.load_state_dict(causal_lm.base_model.state_dict())

    def scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[N] scores read at each row's last counted position (rows are right-padded)."""
        hidden = self.transformer(input_ids=input_ids,
                                  attention_mask=attention_mask).last_hidden_state
        last = attention_mask.sum(dim=1).clamp(min=1) - 1
        return self.head(hidden[torch.arange(len(hidden), device=hidden.device), last]
                         ).squeeze(-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        score = self.scores(input_ids, attention_mask)
        return SimpleNamespace(logits=torch.stack([torch.zeros_like(score), score], dim=1))


def encode_for_scorer(tokenizer, texts: Sequence[str], bos_id: int, eos_id: int,
                      max_length: int) -> ClassifierBatch:
    """Texts as the generator reads them, BOS t1..tL EOS (right-padded), cut at max_length."""
    batch = encode_texts(tokenizer, texts, bos_id, eos_id)
    ids = torch.cat([batch.inputs[:, :1], batch.targets], dim=1)[:, :max_length]
    mask = torch.cat([torch.ones_like(batch.mask[:, :1]), batch.mask], dim=1)[:, :max_length]
    return ClassifierBatch(ids, mask.long(), mask.sum(dim=1))
