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
- ``GPT2FixedShapeStepper``, the same forward with every decode step of one shape (all rows to
  the end, the new position in a device tensor, attention over the whole buffer under a mask),
  so that on CUDA the step is captured once as a CUDA graph and replayed (one launch per token
  for the model instead of about 15 per layer; issue 22). The default on CUDA.
- ``ModelCacheStepper`` for any other causal LM (or a model in training mode, whose dropout the
  static stepper leaves out): the model's forward with its own cache.

Both drop rows on request (``keep_rows``): a sampler drops the rows that have ended, with their
cache entries, so that a step costs only the rows still decoding.

Both run inside whatever autocast the caller set (bf16 on CUDA): the static cache takes the
dtype of the first keys written to it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel, PreTrainedModel

from baselines.primitives.lm_head import aligned_head
from baselines.primitives.sampling import fixed_rows_default

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

        def attend(layer: int, query, key, value) -> torch.Tensor:
            self.keys[layer][:, :, begin:end] = key
            self.values[layer][:, :, begin:end] = value
            # A single new position attends to every cached one; a prompt attends causally
            # (it is the first call, so the cache holds nothing before it).
            return F.scaled_dot_product_attention(
                query, self.keys[layer][:, :, :end], self.values[layer][:, :, :end],
                is_causal=new > 1, scale=self.scale)

        last = self.blocks(hidden, attend)
        self.length = end
        return last

    def blocks(self, hidden: torch.Tensor, attend) -> torch.Tensor:
        """GPT-2's blocks and final layer norm over the new positions' embeddings hidden
        [rows, new, E] -> the last position's state [rows, E]. ``attend(layer, query, key,
        value)`` stores the layer's new keys and values in the cache and returns the
        attention output [rows, heads, new, head_dim]."""
        transformer = self.model.transformer
        n, new = hidden.shape[:2]
        for layer, block in enumerate(transformer.h):
            query, key, value = (block.attn.c_attn(block.ln_1(hidden))
                                 .view(n, new, 3, self.heads, self.head_dim)
                                 .permute(2, 0, 3, 1, 4).unbind(0))
            if layer == len(self.keys):
                self.keys.append(self.new_buffer(key))
                self.values.append(self.new_buffer(value))
            attended = attend(layer, query, key, value)
            hidden = hidden + block.attn.c_proj(attended.transpose(1, 2).reshape(n, new, -1))
            hidden = hidden + block.mlp(block.ln_2(hidden))
        return transformer.ln_f(hidden[:, -1])

    def new_buffer(self, like: torch.Tensor) -> torch.Tensor:
        """A layer's key or value buffer; positions past the filled ones are never read."""
        return like.new_empty(self.shape)


class GPT2FixedShapeStepper(GPT2StaticCacheStepper):
    """GPT2StaticCacheStepper whose decode steps all have one shape and read no host value:
    every row decodes to the end (``fixed_rows``: the sampler feeds ended rows EOS and ignores
    what they draw, instead of dropping them), the new position lives in a device tensor, its
    keys and values are written with index_copy_, and attention covers the whole buffer with
    the positions not yet filled masked out. On CUDA (``graph``) the first decode step is
    captured as a CUDA graph and every later one replays it: the launches of a token's forward
    (about 15 per layer, 19,400 for 1,000 sentences on the H200 of results/gpu) become one.

    The prompt (the first call) runs as in the parent. Padded positions are zeros, so that a
    masked-out position contributes exactly nothing (a weight of 0 on a finite value)."""

    fixed_rows = True

    def __init__(self, model: GPT2LMHeadModel, batch_size: int, max_length: int,
                 graph: bool):
        super().__init__(model, batch_size, max_length)
        device = model.lm_head.weight.device
        self.token = torch.zeros((batch_size, 1), dtype=torch.long, device=device)
        self.position = torch.zeros((), dtype=torch.long, device=device)
        self.positions = torch.arange(max_length, device=device)
        self.graph, self.use_graph, self.logits = None, graph, None

    def new_buffer(self, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(self.shape)

    def keep_rows(self, keep: torch.Tensor) -> None:
        raise NotImplementedError("a fixed-shape stepper decodes every row to the end")

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.length == 0:
            return super().__call__(input_ids)
        if input_ids.shape != self.token.shape:
            raise ValueError(f"decode steps take ids {tuple(self.token.shape)}, "
                             f"not {tuple(input_ids.shape)}")
        if self.length >= self.shape[2]:
            raise ValueError(f"the cache holds {self.shape[2]} positions")
        self.token.copy_(input_ids)
        self.position.fill_(self.length)
        logits = self.replay() if self.use_graph else self.decode()
        self.length += 1
        return logits

    def decode(self) -> torch.Tensor:
        """One token's forward from ``self.token`` at ``self.position``: logits [rows, V]."""
        transformer = self.model.transformer
        hidden = transformer.wte(self.token) + transformer.wpe(self.position)
        visible = (self.positions <= self.position).view(1, 1, 1, -1)
        where = self.position.view(1)

        def attend(layer: int, query, key, value) -> torch.Tensor:
            self.keys[layer].index_copy_(2, where, key)
            self.values[layer].index_copy_(2, where, value)
            return F.scaled_dot_product_attention(
                query, self.keys[layer], self.values[layer], attn_mask=visible,
                scale=self.scale)

        return self.head(self.blocks(hidden, attend))[:, : self.vocab]

    def replay(self) -> torch.Tensor:
        """decode() through a CUDA graph captured at the first decode step. The returned logits
        are the graph's own output buffer: read them before the next step."""
        if self.graph is None:
            # Warm-up on a side stream first, as CUDA graphs require (cuBLAS and the allocator
            # set themselves up outside the capture). decode() is idempotent: it writes the
            # same keys and values at the same position again.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), self.capture_autocast():
                self.decode()
            torch.cuda.current_stream().wait_stream(side)
            try:
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph), self.capture_autocast():
                    self.logits = self.decode()
            except RuntimeError as err:  # an op this torch cannot capture: same numbers, eager
                warnings.warn(f"CUDA graph capture failed, decoding eagerly: {err}",
                              stacklevel=2)
                self.graph, self.use_graph = None, False
                return self.decode()
        self.graph.replay()
        return self.logits

    @staticmethod
    def capture_autocast():
        """The caller's CUDA autocast with its weight-cast cache off: cached casts made inside
        a capture would be freed when the caller's autocast exits, under the graph's feet."""
        return torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"),
                              enabled=torch.is_autocast_enabled("cuda"), cache_enabled=False)


def next_token_stepper(model: PreTrainedModel, batch_size: int, max_length: int,
                       fixed_shape: bool | None = None) -> Stepper:
    """The fastest stepper for ``model``: ``max_length`` bounds prompt + sampled positions.
    ``fixed_shape`` (default: on CUDA) picks GPT2FixedShapeStepper, graph-captured on CUDA;
    on a CPU, dropping ended rows is worth more than a fixed shape."""
    if GPT2StaticCacheStepper.supports(model) and max_length <= model.config.n_positions:
        device = model.lm_head.weight.device
        if fixed_rows_default(device) if fixed_shape is None else fixed_shape:
            return GPT2FixedShapeStepper(model, batch_size, max_length,
                                         graph=device.type == "cuda")
        return GPT2StaticCacheStepper(model, batch_size, max_length)
    return ModelCacheStepper(model)
