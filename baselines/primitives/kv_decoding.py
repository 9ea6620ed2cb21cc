"""One-token-at-a-time forward passes for sampling, with a key/value cache.

``next_token_stepper(model, n, max_length)`` returns a callable that takes the next input ids
[N, S] (the prompt first, then one token per call) and returns the logits [N, V] of the last
position. Two implementations:

- ``GPT2StaticCacheStepper`` for GPT2LMHeadModel in eval mode: GPT-2's forward written over the
  model's own modules, with the keys and values of every layer kept in buffers sized for the
  whole sample. transformers' generic path grows its cache by concatenation on every token and
  rebuilds masks and position ids per call; for the small models of a CPU benchmark that
  bookkeeping, not the arithmetic, is most of a step (measured on 2 layers of width 64, batch
  64, 48 tokens: about 2.1 ms a token through the model's forward, 0.9 ms here). The logits
  equal the model's own forward to float rounding (tests/test_kv_decoding.py).
- ``ModelCacheStepper`` for any other causal LM (or a model in training mode, whose dropout the
  static stepper leaves out): the model's forward with its own cache.

Both drop rows on request (``keep_rows``): a sampler drops the rows that have ended, with their
cache entries, so that a step costs only the rows still decoding.

Both run inside whatever autocast the caller set (bf16 on CUDA): the static cache takes the
dtype of the first keys written to it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel, PreTrainedModel

from baselines.primitives.lm_head import aligned_head

Stepper = Callable[[torch.Tensor], torch.Tensor]  # input ids [N, S] -> last logits [N, V]


def cache_argument(model: PreTrainedModel) -> str:
    """The name of the forward's key/value cache argument and output: ``cache`` from
    transformers 5.2x (which warns at ``past_key_values``), ``past_key_values`` before."""
    import inspect

    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


class ModelCacheStepper:
    def __init__(self, model: PreTrainedModel):
        self.model, self.cache = model, None
        self.argument = cache_argument(model)

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        output = self.model(input_ids=input_ids, use_cache=True, **{self.argument: self.cache})
        self.cache = getattr(output, self.argument)
        return output.logits[:, -1]

    def keep_rows(self, keep: torch.Tensor) -> None:
        """Only the rows where ``keep`` [N] is True go on (their cache entries with them)."""
        if self.cache is not None:
            self.cache.batch_select_indices(keep.nonzero().squeeze(1))


class GPT2StaticCacheStepper:
    @staticmethod
    def supports(model: PreTrainedModel) -> bool:
        config = model.config
        # The options below change GPT-2's attention; the static path implements the default.
        return (isinstance(model, GPT2LMHeadModel) and not model.training
                and not getattr(config, "scale_attn_by_inverse_layer_idx", False)
                and not getattr(config, "reorder_and_upcast_attn", False)
                and not getattr(config, "add_cross_attention", False))

    def __init__(self, model: GPT2LMHeadModel, batch_size: int, max_length: int):
        config = model.config
        if max_length > config.n_positions:
            raise ValueError(f"{max_length} positions asked of a model with {config.n_positions}")
        self.model = model
        # Sampling runs with the weights fixed: the padded copy is made once per sampler.
        self.head = aligned_head(model.lm_head)
        self.vocab = model.lm_head.weight.shape[0]
        self.heads = config.n_head
        self.head_dim = config.n_embd // self.heads
        self.scale = self.head_dim ** -0.5 if config.scale_attn_weights else 1.0
        self.shape = (batch_size, self.heads, max_length, self.head_dim)
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.length = 0  # positions already in the cache
        # The buffer rows still decoding, in batch order.
        self.live = torch.arange(batch_size, device=model.lm_head.weight.device)

    # Rows that end stay in the buffers (computed, their logits not returned) until at most
    # this share of the buffers' rows is still decoding; only then are the live rows' filled
    # positions copied out. Compacting on every ending was 20% of a sampling pass (a copy of
    # every row's cache each time one row ended); this bounds the wasted rows to a quarter.
    COMPACT_AT = 0.75

    def keep_rows(self, keep: torch.Tensor) -> None:
        """Only the rows where ``keep`` [N] is True go on (their cache entries with them)."""
        self.live = self.live[keep]
        if len(self.live) > self.COMPACT_AT * self.shape[0] or not self.keys:
            return
        self.shape = (len(self.live), *self.shape[1:])
        filled = slice(0, self.length)
        for buffers in (self.keys, self.values):
            for layer, buffer in enumerate(buffers):
                compact = buffer.new_empty(self.shape)
                compact[:, :, filled] = buffer[self.live, :, filled]
                buffers[layer] = compact
        self.live = torch.arange(self.shape[0], device=self.live.device)

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        if len(self.live) < self.shape[0]:  # ended rows still in the buffers: feed them anything
            padded = input_ids.new_zeros((self.shape[0], input_ids.shape[1]))
            padded[self.live] = input_ids
            return self.head(self.step(padded)[self.live])[:, : self.vocab]
        return self.head(self.step(input_ids))[:, : self.vocab]

    def step(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The transformer over every buffer row: input ids [rows, S] -> the last position's
        final hidden state [rows, E] (the head is applied to the live rows alone)."""
        transformer = self.model.transformer
        n, new = input_ids.shape
        begin, end = self.length, self.length + new
        if new > 1 and begin > 0:
            raise ValueError("several new positions are taken only as the first call's prompt")
        hidden = transformer.wte(input_ids) + transformer.wpe.weight[begin:end]
        for layer, block in enumerate(transformer.h):
            query, key, value = (block.attn.c_attn(block.ln_1(hidden))
                                 .view(n, new, 3, self.heads, self.head_dim)
                                 .permute(2, 0, 3, 1, 4).unbind(0))
            if layer == len(self.keys):
                self.keys.append(key.new_empty(self.shape))
                self.values.append(value.new_empty(self.shape))
            self.keys[layer][:, :, begin:end] = key
            self.values[layer][:, :, begin:end] = value
            # A single new position attends to every cached one; a prompt attends causally
            # (it is the first call, so the cache holds nothing before it).
            attended = F.scaled_dot_product_attention(
                query, self.keys[layer][:, :, :end], self.values[layer][:, :, :end],
                is_causal=new > 1, scale=self.scale)
            hidden = hidden + block.attn.c_proj(attended.transpose(1, 2).reshape(n, new, -1))
            hidden = hidden + block.mlp(block.ln_2(hidden))
        self.length = end
        return transformer.ln_f(hidden[:, -1])


def next_token_stepper(model: PreTrainedModel, batch_size: int, max_length: int) -> Stepper:
    """The fastest stepper for ``model``: ``max_length`` bounds prompt + sampled positions."""
    if GPT2StaticCacheStepper.supports(model) and max_length <= model.config.n_positions:
        return GPT2StaticCacheStepper(model, batch_size, max_length)
    return ModelCacheStepper(model)
