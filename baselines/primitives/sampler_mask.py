"""The probability a model puts where its sampler never draws (METRICS.md, NLL).

Sampling removes some tokens from the model's distribution: special tokens (PAD, BOS, UNK; for
GPT-2 every special token but EOS) and, for byte-level BPE, the tokens the UTF-8 guard forbids
after the prefix. nll_test is of the model's own softmax, not of that renormalised sampling
distribution; the mean mass on the removed tokens at the test positions says how far apart the
two are (-log(1 - mass) nats a token at most).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from baselines.primitives.utf8_guard import MAX_PENDING, Utf8Guard


class SamplerMask:
    """The tokens the sampler masks at each position, and the probability summed over them.

    ``total`` accumulates, over every scored position, the T = 1 softmax mass on the masked
    tokens; divide by the positions scored for the mean. The sum stays on the device (float64,
    the same additions a Python float made) until ``total`` is read: no wait per batch."""

    def __init__(self, banned_ids: Sequence[int], guard: Utf8Guard | None = None):
        self.banned_ids = list(banned_ids)
        self.guard = guard
        self.sum: torch.Tensor | None = None

    @property
    def total(self) -> float:
        return float(self.sum) if self.sum is not None else 0.0

    def _accumulate(self, part: torch.Tensor) -> None:
        part = part.double()
        self.sum = part if self.sum is None else self.sum + part

    def states(self, targets: torch.Tensor) -> torch.Tensor | None:
        """[B, L]: the guard's state before each target (a sentence starts at a character
        boundary); None without a guard."""
        if self.guard is None:
            return None
        states = torch.empty_like(targets)
        state = self.guard.start(len(targets)).to(targets.device)
        for position in range(targets.shape[1]):
            states[:, position] = state
            # Past EOS the rows are padding (never counted); keep their state a valid index.
            state = self.guard.advance(state.clamp(min=0), targets[:, position])
        return states.clamp(min=0)

    def masked(self, width: int, states: torch.Tensor | None, rows: int,
               device: torch.device) -> torch.Tensor:
        """[rows, width] bool: True where the sampler would not draw."""
        mask = torch.zeros(rows, width, dtype=torch.bool, device=device)
        if self.banned_ids:
            mask[:, self.banned_ids] = True
        if states is not None:
            # Far from the length cap (the guard's steps-left rule only bites at its last
            # MAX_PENDING tokens).
            forbidden = self.guard.forbidden[MAX_PENDING][states]
            columns = min(width, forbidden.shape[1])
            mask[:, :columns] |= forbidden[:, :columns]
        return mask

    def add(self, logits: torch.Tensor, states: torch.Tensor | None = None) -> None:
        """Adds the masked mass of these positions' logits [N, V] (float) to ``total``: the
        masked logits' exp over the row's logsumexp, no softmax of the whole row kept."""
        logits = logits.float()
        log_total = torch.logsumexp(logits, dim=-1, keepdim=True)
        if states is None:  # fixed columns alone (the LSTMs): gather just those
            if self.banned_ids:
                self._accumulate((logits[:, self.banned_ids] - log_total).exp().sum())
            return
        mask = self.masked(logits.shape[1], states, len(logits), logits.device)
        masked = logits.masked_fill(~mask, -float("inf"))
        self._accumulate((masked - log_total).exp().sum())
