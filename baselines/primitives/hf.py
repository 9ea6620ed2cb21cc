"""Hugging Face pieces shared by the GPT-2 variants: the batched text <-> tensor bridges and
log-probabilities (training and NLL) of the generator, and the discriminator's batches and
scores. Tokenizers are in hf_tokenizers, models in hf_models, sampling in generation.

Conventions. A generator sequence is [BOS, t1..tL] -> [t1..tL, EOS]; GPT-2's one special token
``<|endoftext|>`` is BOS, EOS and padding at once (as in the released GPT-2), so what counts is
always said by a mask, never by comparing ids with a padding id. The discriminator is a
two-label sequence classifier (label 0 = generated, 1 = real); its reward is the log-odds
logit_real - logit_fake.

Variant modules import these modules lazily: importing transformers takes seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel, PreTrainedModel, PreTrainedTokenizerFast

from baselines.primitives.engine import autocast, bucket_width, to_device
from baselines.primitives.hf_policy import masked_token_log_probs
from baselines.primitives.lm_head import Head, aligned_head
from baselines.primitives.objectives import FAKE, REAL
from baselines.primitives.sampler_mask import SamplerMask

# ---------------------------------------------------------------------------------------------
# Generator sequences


@dataclass
class TokenBatch:
    """inputs [BOS, t1..tL, pad..], targets [t1..tL, EOS, pad..], mask True on targets that
    count (tokens and EOS); all [N, W]. ``counted``: how many mask positions are True, when
    the caller knows it on the host (token_log_probs then gathers them without waiting on the
    device)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    counted: int | None = None

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def to(self, device: torch.device) -> TokenBatch:
        return TokenBatch(to_device(self.inputs, device), to_device(self.targets, device),
                          to_device(self.mask, device), self.counted)

    def select(self, index: torch.Tensor, lengths: torch.Tensor | None = None,
               limit: int | None = None) -> TokenBatch:
        """The rows ``index``, trimmed. ``lengths``: their counted lengths, kept on the host
        by the caller (they size and count the batch with no device synchronisation);
        ``limit``: positions past it are cut (a model with fewer positions)."""
        rows = TokenBatch(self.inputs[index], self.targets[index], self.mask[index])
        if lengths is None:
            return rows.trimmed()
        cut = lengths.clamp(max=limit) if limit is not None else lengths
        rows.counted = int(cut.sum())
        return rows.trimmed(int(cut.max()) if len(cut) else 1)

    def trimmed(self, longest: int | None = None) -> TokenBatch:
        """Cut the columns that are padding in every row (a batch is as wide as its longest;
        on CUDA rounded up to a few shapes, engine.bucket_width); ``longest`` (known on the
        host) spares the device a synchronisation to find it."""
        if longest is None:
            longest = int(self.mask.sum(dim=1).max()) if len(self) else 1
        width = bucket_width(max(longest, 1), self.inputs.device, self.inputs.shape[1])
        return TokenBatch(self.inputs[:, :width], self.targets[:, :width], self.mask[:, :width],
                          self.counted)

    def num_tokens(self) -> int:
        return self.counted if self.counted is not None else int(self.mask.sum())

    def counted_positions(self) -> torch.Tensor:
        """Flat indices (row-major) of the counted targets; from ``counted`` without a wait on
        the device (nonzero_static), else by a nonzero that waits for it."""
        flat = self.mask.flatten()
        if self.counted is None:
            return flat.nonzero().squeeze(1)
        return torch.nonzero_static(flat, size=self.counted).squeeze(1)


def encode_texts(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], bos_id: int,
                 eos_id: int) -> TokenBatch:
    """Texts -> teacher-forcing tensors, in one batched tokenizer call (no per-text loop)."""
    encoded = tokenizer(list(texts), add_special_tokens=False, padding=True,
                        return_attention_mask=True, return_tensors="pt")
    ids, attention = encoded["input_ids"], encoded["attention_mask"]
    if ids.dim() == 1 or ids.shape[1] == 0:  # every text empty
        ids = torch.full((len(texts), 0), eos_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
    lengths = attention.sum(dim=1)
    n, width = ids.shape[0], ids.shape[1] + 1
    ids = ids.masked_fill(attention == 0, eos_id)
    inputs = torch.cat([torch.full((n, 1), bos_id, dtype=torch.long), ids], dim=1)
    targets = torch.cat([ids, torch.full((n, 1), eos_id, dtype=torch.long)], dim=1)
    mask = torch.arange(width).unsqueeze(0) <= lengths.unsqueeze(1)
    return TokenBatch(inputs, targets, mask)


def token_log_probs(model: PreTrainedModel, batch: TokenBatch, temperature: float = 1.0,
                    banned_ids: Sequence[int] = (),
                    body: torch.nn.Module | None = None) -> torch.Tensor:
    """log p(target | prefix) per position [N, W], float32, 0 where the mask is False
    (``banned_ids`` removed from the softmax, as when sampling). ``body``: a GPT-2's
    transformer to run instead of its own (the same weights compiled, engine.compiled).

    Right padding needs no attention mask: causal attention never looks at later positions.
    A GPT-2 projects and normalises the counted positions alone (its head is a plain linear
    layer on the transformer's last hidden states: gathering them first changes no number,
    and on short sentences most of a batch's vocabulary projection was padding).
    """
    if not isinstance(model, GPT2LMHeadModel):
        with autocast(batch.inputs.device):
            logits = model(input_ids=batch.inputs).logits
        return masked_token_log_probs(logits, batch.targets, batch.mask, temperature)
    positions = batch.counted_positions()
    with autocast(batch.inputs.device):
        body = model.transformer if body is None else body
        hidden = body(input_ids=batch.inputs).last_hidden_state.flatten(0, 1)[positions]
    targets = batch.targets.flatten()[positions]
    if torch.is_grad_enabled():
        counted = head_log_probs(model.lm_head, hidden, targets, temperature, banned_ids)
    else:  # evaluation: in row chunks, so that no [tokens, V] logits tensor is ever whole
        counted = torch.cat([
            head_log_probs(model.lm_head, hidden[i : i + HEAD_CHUNK_ROWS],
                           targets[i : i + HEAD_CHUNK_ROWS], temperature, banned_ids)
            for i in range(0, len(targets), HEAD_CHUNK_ROWS)]) if len(targets) else \
            torch.zeros(0, device=hidden.device)
    out = torch.zeros(batch.targets.numel(), dtype=torch.float32, device=counted.device)
    return out.index_copy(0, positions, counted.float()).view(batch.targets.shape)


# Rows of hidden states projected at once by evaluation's head: 2,048 x V = 4,000 logits are
# 32 MB, which keeps memory flat and is as fast as one projection of every counted position.
HEAD_CHUNK_ROWS = 2048

# Rows at once in nll_sums, which has no backward to feed: 256 x V float32 logits (5 MB at the
# oracle's 4,976 padded ids) stay in cache through the log-softmax and every temperature's
# division. On the oracle's 5,000 test sentences at three temperatures this took the head from
# 13.5 s to 9.1 s against 2,048 rows (log-softmax 2.4 -> 0.8 s, division 1.25 -> 0.13 s).
NLL_HEAD_CHUNK_ROWS = 256


def head_log_probs(lm_head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                   temperature: float, banned_ids: Sequence[int]) -> torch.Tensor:
    """log softmax(lm_head(hidden) / temperature)[targets] per row: hidden [N, E] -> [N],
    float32, the ``banned_ids`` removed from the softmax."""
    with autocast(hidden.device):
        logits = lm_head(hidden)
    logits = logits.float()
    if temperature != 1.0:  # a division copies the whole [N, V] tensor: only when it counts
        logits = logits / temperature
    if len(banned_ids):
        logits[:, list(banned_ids)] = -float("inf")
    return -F.cross_entropy(logits, targets, reduction="none")


@torch.no_grad()
def windowed_token_log_probs(model: PreTrainedModel, batch: TokenBatch, window: int,
                             temperature: float = 1.0) -> torch.Tensor:
    """As token_log_probs, for sequences that may be longer than the model's positions: windows
    of ``window`` positions advancing by half a window; each target is scored once, in the first
    window that reaches it past the previous one (so with at least half a window of context)."""
    width = batch.inputs.shape[1]
    if width <= window:
        return token_log_probs(model, batch, temperature)
    out = torch.zeros(batch.targets.shape, dtype=torch.float32, device=batch.inputs.device)
    scored_until = 0
    for begin in range(0, width, max(window // 2, 1)):
        end = min(begin + window, width)
        part = TokenBatch(batch.inputs[:, begin:end], batch.targets[:, begin:end],
                          batch.mask[:, begin:end])
        out[:, scored_until:end] = token_log_probs(model, part, temperature)[
            :, scored_until - begin:]
        scored_until = end
        if end == width:
            break
    return out


@torch.no_grad()
def nll_sums(model: PreTrainedModel, batch: TokenBatch, window: int,
             temperatures: Sequence[float], head: Head | None = None,
             sampler_mask: SamplerMask | None = None) -> list[torch.Tensor]:
    """Sum over the counted targets of -log p(target | prefix) with the logits divided by each
    temperature, as 0-d float64 tensors on the batch's device (read them once, after the last
    batch: nothing here waits on the device when the batch carries its count). One pass of the
    transformer for all temperatures (windows as in windowed_token_log_probs), the head in
    NLL_HEAD_CHUNK_ROWS chunks. ``head``: the model's aligned_head, built once by a caller that
    scores many batches. ``sampler_mask``: also adds the T = 1 mass on the tokens the sampler
    masks to its total (GPT-2 models only)."""
    device = batch.inputs.device
    if not isinstance(model, GPT2LMHeadModel):
        return [-windowed_token_log_probs(model, batch, window, temperature).sum().double()
                for temperature in temperatures]
    head = head if head is not None else aligned_head(model.lm_head)
    totals = [torch.zeros((), dtype=torch.float64, device=device) for _ in temperatures]
    states = sampler_mask.states(batch.targets) if sampler_mask is not None else None
    width, scored_until = batch.inputs.shape[1], 0
    for begin in range(0, width, max(window // 2, 1)):
        end = min(begin + window, width)
        with autocast(device):
            hidden = model.transformer(input_ids=batch.inputs[:, begin:end]).last_hidden_state
        if begin == 0 and end == width:  # one window: the counted positions from the count
            positions = batch.counted_positions()
            hidden = hidden.flatten(0, 1)[positions]
            targets = batch.targets.flatten()[positions]
            counted_states = states.flatten()[positions] if states is not None else None
        else:
            counted = batch.mask[:, scored_until:end]
            hidden = hidden[:, scored_until - begin :][counted]
            targets = batch.targets[:, scored_until:end][counted]
            counted_states = (states[:, scored_until:end][counted] if states is not None
                              else None)
        for first in range(0, len(targets), NLL_HEAD_CHUNK_ROWS):
            rows = slice(first, first + NLL_HEAD_CHUNK_ROWS)
            with autocast(hidden.device):
                logits = head(hidden[rows])
            logits = logits.float()
            if sampler_mask is not None:
                sampler_mask.add(logits, None if counted_states is None
                                 else counted_states[rows])
            for k, temperature in enumerate(temperatures):
                scaled = logits if temperature == 1.0 else logits / temperature
                totals[k] += F.cross_entropy(scaled, targets[rows], reduction="sum").double()
        scored_until = end
        if end == width:
            break
    return totals


# ---------------------------------------------------------------------------------------------
# Discriminator side


@dataclass
class ClassifierBatch:
    """Discriminator inputs: input_ids and attention_mask [N, W] (right-padded), and where known
    each row's word pieces counted on the host (``lengths`` [N], made with the batch from the
    tokenizer's output): a batch is then cut to its longest row and counted without waiting for
    the device."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    lengths: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device) -> ClassifierBatch:
        return ClassifierBatch(to_device(self.input_ids, device),
                               to_device(self.attention_mask, device),
                               self.lengths)

    def select(self, index: torch.Tensor) -> ClassifierBatch:
        """Rows ``index`` (on the host, or on the batch's device), cut to their longest."""
        lengths = None if self.lengths is None else self.lengths[index.cpu()]
        index = to_device(index, self.input_ids.device)
        return ClassifierBatch(self.input_ids[index], self.attention_mask[index],
                               lengths).trimmed()

    def trimmed(self) -> ClassifierBatch:
        width = 1
        if len(self):
            longest = (self.lengths.max() if self.lengths is not None
                       else self.attention_mask.sum(dim=1).max())
            width = max(int(longest), 1)
        width = bucket_width(width, self.input_ids.device, self.input_ids.shape[1])
        return ClassifierBatch(self.input_ids[:, :width], self.attention_mask[:, :width],
                               self.lengths)

    def num_pieces(self) -> int:
        """The word pieces the batch holds, padding excluded."""
        if self.lengths is not None:
            return int(self.lengths.sum())
        return int(self.attention_mask.sum())


def encode_for_classifier(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str],
                          max_length: int) -> ClassifierBatch:
    """The tokenizer bridge: texts (decoded generator samples or real sentences) -> classifier
    ids in one batched call; longer sentences are cut at ``max_length`` word pieces."""
    encoded = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                        return_attention_mask=True, return_tensors="pt")
    return ClassifierBatch(encoded["input_ids"], encoded["attention_mask"],
                           encoded["attention_mask"].sum(dim=1))


def classifier_logits(model: PreTrainedModel, batch: ClassifierBatch) -> torch.Tensor:
    """[N, 2] float32 logits (fake, real)."""
    with autocast(batch.input_ids.device):
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return logits.float()


def realness(logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's log-odds that a sentence is real: logit_real - logit_fake."""
    return logits[:, REAL] - logits[:, FAKE]
