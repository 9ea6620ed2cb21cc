"""Sampling from a causal LM: continuations of prompts one token at a time with the KV cache
(kv_decoding's steppers), seeded by a torch.Generator, special tokens banned and, for byte-level
BPE, only tokens that keep each row decodable as UTF-8; then decoded to text in one call.

Conventions as in primitives.hf: a row is [BOS, prompt..., sampled..., EOS, EOS padding...].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from baselines.primitives.engine import autocast
from baselines.primitives.hf import TokenBatch
from baselines.primitives.kv_decoding import next_token_stepper
from baselines.primitives.sampling import END_CHECK_EVERY, draw_categorical
from baselines.primitives.utf8_guard import Utf8Guard


@dataclass
class Samples:
    """Sampled continuations: prompts [N, P] (BOS, then P - 1 given tokens), tokens [N, L]
    (sampled tokens, EOS, then EOS as padding) and mask [N, L], True on the sampled tokens and
    the first EOS. ``lengths`` [N] (on the host, when known): each row's mask count, so that
    counting and the teacher-forcing views never wait on the device."""

    prompts: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor | None = None

    def as_batch(self) -> TokenBatch:
        """Teacher-forcing view of the whole sequence; only the sampled part counts."""
        prompt_length = self.prompts.shape[1]
        sequence = torch.cat([self.prompts, self.tokens], dim=1)
        given = torch.zeros(len(self.tokens), prompt_length - 1, dtype=torch.bool,
                            device=self.mask.device)
        return TokenBatch(sequence[:, :-1], sequence[:, 1:], torch.cat([given, self.mask], 1),
                          self.num_tokens() if self.lengths is not None else None)

    def num_tokens(self) -> int:
        if self.lengths is not None:
            return int(self.lengths.sum())
        return int(self.mask.sum())

    def action_batch(self, max_new_tokens: int) -> TokenBatch:
        """as_batch with only the sampled actions counted: the EOS that sample_tokens forces
        after ``max_new_tokens`` was not drawn and gets no policy gradient (it stands at that
        index of ``tokens`` in the rows sampled to the cap)."""
        batch = self.as_batch()
        forced = self.prompts.shape[1] - 1 + max_new_tokens
        if forced < batch.mask.shape[1]:
            batch.mask = batch.mask.clone()
            batch.mask[:, forced] = False
            if batch.counted is not None:
                batch.counted -= int((self.lengths > max_new_tokens).sum())
        return batch


@torch.no_grad()
def sample_tokens(model: PreTrainedModel, prompts: torch.Tensor, max_new_tokens: int,
                  eos_id: int, temperature: float, generator: torch.Generator,
                  banned_ids: Sequence[int] = (), utf8_guard: Utf8Guard | None = None,
                  fixed_shape: bool | None = None) -> Samples:
    """Continuations of ``prompts`` [N, P] (each starting with BOS), one token per step with the
    KV cache; EOS is forced after ``max_new_tokens``. On a CPU a row that has ended leaves the
    batch (with its cache entries), so each step costs only the rows still decoding; with a
    fixed-shape stepper (``fixed_shape``, the default on CUDA) every row decodes to the end
    and the loop reads nothing from the device but a check every END_CHECK_EVERY tokens.
    Either way the draws are those of decoding every row to the end (draw_categorical's
    ``active``), so both give the same samples.
    ``generator`` seeds the draws (model.generate takes no torch.Generator, hence this loop).
    ``utf8_guard`` (byte-level BPE): only tokens that keep each row decodable as UTF-8."""
    n = prompts.shape[0]
    # The last sampled token and the forced EOS are never fed back to the model.
    next_logits = next_token_stepper(model, n, prompts.shape[1] + max(max_new_tokens - 1, 0),
                                     fixed_shape)
    chooser = TokenChooser(next_logits, max_new_tokens, temperature, generator, banned_ids,
                           utf8_guard, n, prompts.device)
    if getattr(next_logits, "fixed_rows", False):
        tokens, lengths = _decode_fixed_rows(chooser, prompts, max_new_tokens, eos_id)
    else:
        tokens, lengths = _decode_dropping_rows(chooser, prompts, max_new_tokens, eos_id)
    lengths_on_host = lengths.cpu()  # the one wait on the device after the loop
    width = int(lengths_on_host.max())
    mask = torch.arange(width, device=prompts.device).unsqueeze(0) < lengths.unsqueeze(1)
    return Samples(prompts, tokens[:, :width], mask, lengths_on_host)


class TokenChooser:
    """One sampling step's token choice: the stepper's logits, banned ids and the UTF-8 guard
    removed, the temperature applied, one draw per row (the same for any set of live rows)."""

    def __init__(self, next_logits, max_new_tokens: int, temperature: float,
                 generator: torch.Generator, banned_ids: Sequence[int],
                 utf8_guard: Utf8Guard | None, n: int, device: torch.device):
        self.next_logits, self.max_new_tokens = next_logits, max_new_tokens
        self.temperature, self.generator = temperature, generator
        self.banned, self.utf8_guard = list(banned_ids), utf8_guard
        # One decoder state per row decoding (byte-level BPE), None without the guard.
        self.utf8_states = utf8_guard.start(n) if utf8_guard is not None else None
        self.device = device

    def __call__(self, step_input: torch.Tensor, step: int,
                 active: torch.Tensor | None) -> torch.Tensor:
        with autocast(self.device):
            logits = self.next_logits(step_input).float()
        if self.banned:
            logits[:, self.banned] = -float("inf")
        if self.utf8_guard is not None:
            logits = self.utf8_guard.mask_logits(logits, self.utf8_states,
                                                 self.max_new_tokens - 1 - step)
        if self.temperature != 1.0:  # logits / 1 is logits: no pass over [rows, V] for it
            logits = logits / self.temperature
        return draw_categorical(torch.softmax(logits, dim=-1), self.generator, active)

    def advance(self, tokens: torch.Tensor, keep: torch.Tensor | None = None) -> None:
        """The UTF-8 states after ``tokens``, then only the rows ``keep``."""
        if self.utf8_states is not None:
            self.utf8_states = self.utf8_guard.advance(self.utf8_states, tokens)
            if keep is not None:
                self.utf8_states = self.utf8_states[keep]


def _decode_dropping_rows(choose: TokenChooser, prompts: torch.Tensor, max_new_tokens: int,
                          eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampled tokens [N, max_new + 1] and lengths [N]; ended rows leave the batch."""
    device, n = prompts.device, prompts.shape[0]
    tokens = torch.full((n, max_new_tokens + 1), eos_id, dtype=torch.long, device=device)
    lengths = torch.full((n,), max_new_tokens + 1, dtype=torch.long, device=device)
    rows = torch.arange(n, device=device)  # batch rows still decoding
    active = torch.ones(n, dtype=torch.bool, device=device)
    step_input = prompts
    for step in range(max_new_tokens):
        next_token = choose(step_input, step, active)
        tokens[rows, step] = next_token
        ended = next_token == eos_id
        lengths[rows[ended]] = step + 1
        # One host sync per token; it drops the rows that have ended.
        if bool(ended.all()):
            break
        if bool(ended.any()):
            going_on = ~ended
            choose.advance(next_token, going_on)
            rows, next_token = rows[going_on], next_token[going_on]
            choose.next_logits.keep_rows(going_on)
            active = torch.zeros_like(active).index_fill_(0, rows, True)
        else:
            choose.advance(next_token)
        step_input = next_token.unsqueeze(1)
    return tokens, lengths


def _decode_fixed_rows(choose: TokenChooser, prompts: torch.Tensor, max_new_tokens: int,
                       eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """As _decode_dropping_rows, every row to the end: an ended row is fed EOS and what it
    draws is not kept (its UTF-8 state stays at the boundary it ended on)."""
    device, n = prompts.device, prompts.shape[0]
    tokens = torch.full((n, max_new_tokens + 1), eos_id, dtype=torch.long, device=device)
    lengths = torch.full((n,), max_new_tokens + 1, dtype=torch.long, device=device)
    active = torch.ones(n, dtype=torch.bool, device=device)
    step_input = prompts
    for step in range(max_new_tokens):
        drawn = choose(step_input, step, None)
        next_token = torch.where(active, drawn, eos_id)
        tokens[:, step] = next_token
        ended_now = active & (next_token == eos_id)
        lengths.masked_fill_(ended_now, step + 1)
        active &= ~ended_now
        if (step + 1) % END_CHECK_EVERY == 0 and not bool(active.any()):
            break
        choose.advance(next_token)
        step_input = tokens[:, step : step + 1]
    return tokens, lengths


def decode_samples(tokenizer: PreTrainedTokenizerFast, samples: Samples) -> list[str]:
    """Prompts + sampled ids -> text in one batched call; BOS/EOS (and the EOS padding) are
    special tokens, so skipping special tokens leaves exactly the sentence."""
    sequence = torch.cat([samples.prompts, samples.tokens], dim=1).cpu()
    return tokenizer.batch_decode(sequence, skip_special_tokens=True,
                                  clean_up_tokenization_spaces=False)
