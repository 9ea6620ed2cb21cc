"""Discriminators of the LSTM GANs: they read generated sequences in the generator's token ids.

Both take token ids [N, W] in the generator's target layout (tokens, EOS, then PAD) and return
logits, real = positive.

- ``CNNDiscriminator``: SeqGAN's (Yu et al. 2017, after Kim 2014 and Zhang & LeCun 2015):
  convolutions of several widths over the token embeddings, max-pooled over time, a highway
  layer, dropout, one logit per sequence.
- ``LSTMDiscriminator``: an LSTM over the tokens with a logit after every position: the score
  of each prefix (for ScratchGAN-style dense rewards) and, at the EOS, of the sequence. It also
  reads soft one-hot rows [N, W, V] (Gumbel-softmax samples), so gradients reach the generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bench.text import PAD


class Highway(nn.Module):
    """y = gate * relu(W x) + (1 - gate) * x, gate = sigmoid(W_g x + b_g) (Srivastava et al.
    2015); the gate bias starts at -2 so that the layer starts close to the identity, as in the
    SeqGAN code."""

    def __init__(self, width: int):
        super().__init__()
        self.transform = nn.Linear(width, width)
        self.gate = nn.Linear(width, width)
        nn.init.constant_(self.gate.bias, -2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.gate(x))
        return gate * torch.relu(self.transform(x)) + (1.0 - gate) * x


class CNNDiscriminator(nn.Module):
    def __init__(self, vocab_size: int, embedding_dim: int, filter_sizes: Sequence[int],
                 num_filters: Sequence[int], dropout: float):
        super().__init__()
        if len(filter_sizes) != len(num_filters):
            raise ValueError("filter_sizes and num_filters must have the same length")
        self.filter_sizes = list(filter_sizes)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD)
        self.convolutions = nn.ModuleList(
            nn.Conv1d(embedding_dim, count, size) for size, count in zip(filter_sizes, num_filters))
        self.features = sum(num_filters)
        self.highway = Highway(self.features)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(self.features, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [N, W] -> one logit per sequence [N]."""
        shortfall = max(self.filter_sizes) - tokens.shape[1]
        if shortfall > 0:  # the widest filter needs that many positions
            tokens = nn.functional.pad(tokens, (0, shortfall), value=PAD)
        embedded = self.embedding(tokens).transpose(1, 2)  # [N, E, W] for Conv1d
        pooled = [torch.relu(conv(embedded)).amax(dim=2) for conv in self.convolutions]
        features = self.highway(torch.cat(pooled, dim=1))
        return self.output(self.dropout(features)).squeeze(1)

    def flops_per_sequence(self, width: int) -> float:
        """Forward FLOPs (2 per multiply-add) for one sequence of ``width`` positions."""
        width = max(width, max(self.filter_sizes))
        convolution = sum(conv.out_channels * conv.in_channels * size * (width - size + 1)
                          for conv, size in zip(self.convolutions, self.filter_sizes))
        dense = 2 * self.features * self.features + self.features
        return 2.0 * (convolution + dense)


class LSTMDiscriminator(nn.Module):
    def __init__(self, vocab_size: int, embedding_dim: int, hidden_dim: int,
                 num_layers: int = 1):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim, num_layers=num_layers, batch_first=True)
        self.output = nn.Linear(hidden_dim, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [N, W] ids, or [N, W, V] (soft) one-hot rows -> logit per prefix [N, W]:
        entry t scores the prefix of tokens 0..t."""
        # One-hot rows read the embedding by a product, differentiable in the one-hots.
        embedded = (tokens @ self.embedding.weight if tokens.dim() == 3
                    else self.embedding(tokens))
        hidden, _ = self.lstm(embedded)
        return self.output(hidden).squeeze(2)

    @staticmethod
    def sequence_logits(prefix_logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The logit at each sequence's last counted position (its EOS): [N]."""
        last = (tokens != PAD).sum(dim=1).clamp(min=1) - 1
        return prefix_logits.gather(1, last.unsqueeze(1)).squeeze(1)

    def flops_per_token(self) -> float:
        """Forward FLOPs per position (2 per multiply-add; the embedding lookup is free)."""
        params = sum(p.numel() for name, p in self.named_parameters() if "embedding" not in name)
        return 2.0 * params
