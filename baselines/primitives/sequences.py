"""Evaluation-token sentences as padded id tensors, and seeded random minibatches of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bench.text import BOS, EOS, PAD, Vocabulary


@dataclass
class EncodedSentences:
    """inputs = [BOS, w1..wL, PAD..], targets = [w1..wL, EOS, PAD..]; shape [N, max_length + 1]."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def to(self, device: torch.device) -> EncodedSentences:
        return EncodedSentences(self.inputs.to(device), self.targets.to(device))

    def select(self, index: torch.Tensor) -> EncodedSentences:
        return EncodedSentences(self.inputs[index], self.targets[index])

    def num_tokens(self) -> int:
        return int((self.targets != PAD).sum())


def encode(vocab: Vocabulary, sentences: Sequence[Sequence[str]], max_length: int
           ) -> EncodedSentences:
    """Sentences longer than max_length are cut (their EOS then comes after max_length)."""
    n, width = len(sentences), max_length + 1
    inputs = torch.full((n, width), PAD, dtype=torch.long)
    targets = torch.full((n, width), PAD, dtype=torch.long)
    for row, sentence in enumerate(sentences):
        ids = vocab.encode(sentence[:max_length])
        inputs[row, 0] = BOS
        inputs[row, 1 : len(ids) + 1] = torch.tensor(ids, dtype=torch.long)
        targets[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        targets[row, len(ids)] = EOS
    return EncodedSentences(inputs, targets)


def targets_to_inputs(targets: torch.Tensor) -> torch.Tensor:
    """Generated sequences (tokens, EOS, PAD) -> teacher-forcing inputs (BOS, tokens, ...)."""
    inputs = torch.roll(targets, 1, dims=1)
    inputs[:, 0] = BOS
    return inputs


def trim_padding(tokens: torch.Tensor) -> torch.Tensor:
    """ids [N, W] (target layout) cut to the longest row: the columns that are PAD in every row
    go (at least one column stays)."""
    counted = (tokens != PAD).any(dim=0).nonzero()
    width = int(counted[-1]) + 1 if counted.numel() else 1
    return tokens[:, :width]


def decode(vocab: Vocabulary, targets: torch.Tensor) -> list[list[str]]:
    return [vocab.decode(row) for row in targets.tolist()]


class RandomBatches:
    """Minibatches drawn with replacement-free epochs from a seeded generator (resumable).

    ``batch_size`` sentences a batch; or, with ``tokens_per_batch`` and the sentences'
    ``lengths``, token-budgeted batches: sentences are taken in the epoch's order while the
    batch's padded size (rows x its longest sentence) stays within ``tokens_per_batch`` (at
    least one sentence), so that every step fills about the same, bounded shape whatever the
    sentence lengths. A batch never spans two epochs."""

    def __init__(self, size: int, batch_size: int, seed: int, tokens_per_batch: int = 0,
                 lengths: torch.Tensor | None = None):
        if tokens_per_batch and (lengths is None or len(lengths) != size):
            raise ValueError("tokens_per_batch needs one length per sentence")
        self.size, self.batch_size = size, min(batch_size, size)
        self.tokens_per_batch = tokens_per_batch
        self.lengths = lengths.cpu() if lengths is not None else None
        self.generator = torch.Generator().manual_seed(seed)
        self._order = torch.randperm(size, generator=self.generator)
        self._position = 0

    def _count(self) -> int:
        """Sentences in the next batch, from self._position."""
        if not self.tokens_per_batch:
            return self.batch_size
        # Every sentence holds at least one token: no batch is longer than the budget.
        ahead = self.lengths[self._order[self._position : self._position
                                         + self.tokens_per_batch]]
        longest, _ = torch.cummax(ahead, dim=0)
        padded = longest * torch.arange(1, len(ahead) + 1)
        return max(1, int((padded <= self.tokens_per_batch).sum()))

    def next_indices(self) -> torch.Tensor:
        if self._position + (1 if self.tokens_per_batch else self.batch_size) > self.size:
            self._order = torch.randperm(self.size, generator=self.generator)
            self._position = 0
        count = self._count()
        index = self._order[self._position : self._position + count]
        self._position += count
        return index

    def state_dict(self) -> dict:
        return {"rng": self.generator.get_state(), "order": self._order,
                "position": self._position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["rng"])
        self._order = state["order"]
        self._position = int(state["position"])
