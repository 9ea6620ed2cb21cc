"""The GPT-2 GANs' discriminator on text and the rollout they keep between updates.

- ``build_text_classifier``: the discriminator of gpt2_bert_gan (and of gpt2_gad with a BERT):
  loaded (a folder written by save_pretrained, a hub name, or ``minilm``), or a fresh BERT with
  a WordPiece tokenizer trained on the training split, shared by every data-parallel rank.
- ``classifier_update``: one update on real sentences against generated ones, with a loss of
  primitives.objectives.discriminator_loss.
- ``Rollout``: samples with their rewards, advantages and log-probs, kept for ``ppo_epochs``
  generator updates, and its checkpoint form (tensors only).

The two tokenizers meet through text: generated ids are batch-decoded and batch-tokenized
again in the discriminator's word pieces (primitives.hf.encode_for_classifier).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from baselines.primitives import hf, hf_models, hf_tokenizers, objectives
from baselines.primitives.engine import optimizer_step
from bench import distributed


def build_text_classifier(config: Any, train_text: list[str]) -> tuple[Any, Any, bool, int]:
    """(model, tokenizer, whether the tokenizer was trained here, position embeddings) of the
    discriminator ``config`` describes: ``discriminator_name_or_path``, or a fresh BERT of
    d_layers x d_hidden (d_heads heads, d_intermediate feed-forward, d_dropout) with a
    d_vocab_size WordPiece vocabulary."""
    if config.discriminator_name_or_path:
        model, tokenizer = hf_models.load_sequence_classifier(config.discriminator_name_or_path)
        return model, tokenizer, False, model.config.max_position_embeddings
    tokenizer = hf_tokenizers.train_wordpiece_tokenizer(train_text, config.d_vocab_size)
    # WordPiece training differs from process to process (even in size): data-parallel ranks
    # all take rank 0's, before the discriminator's embeddings are sized on it.
    trained = hf_tokenizers.tokenizer_json(tokenizer)
    shared = distributed.from_main(trained)
    if shared != trained:
        tokenizer = hf_tokenizers.wrap_wordpiece_tokenizer(
            hf_tokenizers.backend_from_json(shared))
    longest = int(hf.encode_for_classifier(tokenizer, train_text, 100_000)
                  .attention_mask.sum(dim=1).max())
    positions = max(128, hf_models.round_up(2 * longest, 64))
    model = hf_models.build_bert_classifier(
        len(tokenizer), config.d_layers, config.d_hidden, config.d_heads,
        config.d_intermediate, positions, config.d_dropout, tokenizer.pad_token_id)
    return model, tokenizer, True, positions


def stored_wordpiece_tokenizer(stored: str | None, current: Any) -> Any | None:
    """The WordPiece tokenizer a checkpoint stored, when it differs from ``current`` (None
    when it is the same or none was stored); its vocabulary must be as large."""
    if stored is None or stored == hf_tokenizers.tokenizer_json(current):
        return None
    tokenizer = hf_tokenizers.wrap_wordpiece_tokenizer(hf_tokenizers.backend_from_json(stored))
    if len(tokenizer) != len(current):
        raise ValueError("checkpoint discriminator tokenizer has another vocabulary size")
    return tokenizer


def classifier_update(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      reals: hf.ClassifierBatch, fakes: hf.ClassifierBatch, loss_kind: str,
                      grad_clip: float) -> tuple[dict[str, torch.Tensor], int]:
    """One update of ``model`` on real against generated sentences: (logs as tensors, the word
    pieces it read). Gradients are averaged over data-parallel ranks."""
    model.train()
    # Two forwards, each as wide as its own longest sentence: real sentences run longer than
    # samples, and one joint batch would be mostly padding on the generated side.
    loss, accuracy = objectives.discriminator_loss(
        hf.classifier_logits(model, reals), hf.classifier_logits(model, fakes), loss_kind)
    optimizer_step(optimizer, model, loss, grad_clip)
    logs = {"train/d_loss": loss.detach(), "train/d_acc": accuracy.detach()}
    return logs, reals.num_pieces() + fakes.num_pieces()


@torch.no_grad()
def realness_of(model: torch.nn.Module, batches) -> list[float]:
    """The discriminator's logit_real - logit_fake for every sentence of ``batches``."""
    model.eval()
    scores: list[float] = []
    for batch in batches:
        scores += hf.realness(hf.classifier_logits(model, batch)).tolist()
    return scores


@dataclass
class Rollout:
    """Samples with everything the generator's update needs, kept for ppo_epochs updates."""

    samples: Any  # generation.Samples
    fakes: hf.ClassifierBatch  # the same sentences in the discriminator's word pieces
    rewards: torch.Tensor
    advantages: torch.Tensor
    reference_log_probs: torch.Tensor | None
    old_log_probs: torch.Tensor | None
    updates_left: int

    def state_dict(self) -> dict[str, Any]:
        return {"prompts": self.samples.prompts, "tokens": self.samples.tokens,
                "mask": self.samples.mask, "fake_ids": self.fakes.input_ids,
                "fake_mask": self.fakes.attention_mask, "rewards": self.rewards,
                "advantages": self.advantages, "reference_log_probs": self.reference_log_probs,
                "old_log_probs": self.old_log_probs, "updates_left": self.updates_left}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> Rollout:
        from baselines.primitives.generation import Samples

        r = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in state.items()}
        lengths = state["mask"].cpu().sum(dim=1)
        return cls(Samples(r["prompts"], r["tokens"], r["mask"], lengths),
                   hf.ClassifierBatch(r["fake_ids"], r["fake_mask"],
                                      state["fake_mask"].cpu().sum(dim=1)), r["rewards"],
                   r["advantages"], r["reference_log_probs"], r["old_log_probs"],
                   int(r["updates_left"]))
