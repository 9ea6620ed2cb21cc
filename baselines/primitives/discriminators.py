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
    """Convolutions over the embedded tokens (right-padded with PAD to the widest filter),
    ReLU, max over every window position, then highway and output.

    A window that lies wholly in the padding has the same value in every row (the convolution
    of PAD embeddings), so the forward pass cuts a batch to its longest member plus the widest
    filter and stands for the windows cut away with that one value: the logits equal the
    full-width computation's up to float rounding, as do their gradients."""

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
        return self.head(self.pooled_features(tokens))

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled convolution features [N, F] -> logits [N]: highway, dropout, output."""
        return self.output(self.dropout(self.highway(pooled))).squeeze(1)

    def padded_width(self, width: int) -> int:
        """The width the convolutions see: the widest filter needs that many positions."""
        return max(width, max(self.filter_sizes))

    def padding_windows(self) -> list[torch.Tensor]:
        """Per filter, the ReLU of its window over PAD alone: [F_k]."""
        pad = self.embedding(torch.full((1, max(self.filter_sizes)), PAD,
                                        device=self.output.weight.device)).transpose(1, 2)
        return [torch.relu(conv(pad[:, :, :size])).squeeze(0).squeeze(1)
                for conv, size in zip(self.convolutions, self.filter_sizes)]

    def window_scores(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Per filter of width k, relu(conv) at every window of the full padded width:
        [N, F_k, padded_width - k + 1]. No trimming: the per-window values themselves."""
        width = self.padded_width(tokens.shape[1])
        tokens = nn.functional.pad(tokens, (0, width - tokens.shape[1]), value=PAD)
        embedded = self.embedding(tokens).transpose(1, 2)  # [N, E, W] for Conv1d
        return [torch.relu(conv(embedded)) for conv in self.convolutions]

    def pooled_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """Max over windows of every filter [N, F], computing no window that is all padding in
        every row: each filter of width k reads positions up to longest + k - 2, and the
        windows cut away (all PAD) enter the max as the filter's padding window."""
        width = self.padded_width(tokens.shape[1])
        longest = last_counted_column(tokens) + 1
        stop = min(width, max(longest + max(self.filter_sizes) - 1, max(self.filter_sizes)))
        tokens = nn.functional.pad(tokens[:, :stop], (0, max(0, stop - tokens.shape[1])),
                                   value=PAD)
        embedded = self.embedding(tokens).transpose(1, 2)
        padding = self.padding_windows() if longest + min(self.filter_sizes) - 1 < width else []
        pooled = []
        for index, (conv, size) in enumerate(zip(self.convolutions, self.filter_sizes)):
            reach = min(width, max(longest + size - 1, size))
            value = torch.relu(conv(embedded[:, :, :reach])).amax(dim=2)
            if reach < width:  # windows wholly in the padding were cut
                value = torch.maximum(value, padding[index])
            pooled.append(value)
        return torch.cat(pooled, dim=1)

    def completion_scorer(self, sequences: torch.Tensor) -> CompletionScorer:
        """A scorer of completions of prefixes of ``sequences`` (see CompletionScorer)."""
        return CompletionScorer(self, sequences)

    def flops_per_sequence(self, width: int) -> float:
        """Forward FLOPs (2 per multiply-add) for one sequence of ``width`` positions."""
        width = max(width, max(self.filter_sizes))
        convolution = sum(conv.out_channels * conv.in_channels * size * (width - size + 1)
                          for conv, size in zip(self.convolutions, self.filter_sizes))
        return 2.0 * (convolution + self.head_macs())

    def head_macs(self) -> int:
        """Multiply-adds of highway and output per sequence."""
        return 2 * self.features * self.features + self.features


def last_counted_column(tokens: torch.Tensor) -> int:
    """The last column holding a non-PAD token in some row (-1 when there is none)."""
    counted = (tokens != PAD).any(dim=0).nonzero()
    return int(counted[-1]) if counted.numel() else -1


class CompletionScorer:
    """The CNN's logits of completions of prefixes of sequences [B, W], computing only the
    windows that touch the completed part.

    A completion of sentence b's prefix of length t holds b's tokens 0..t-1: a window of width
    k that ends inside the prefix (start <= t - k) is the same window as in the full sentence,
    for every completion and every longer prefix. So the full sentences' windows are computed
    once and kept as a running max over window starts; a completion's pooled feature is the
    max of that running max at start t - k and of its own windows starting at t - k + 1 or
    later (those touching the sampled suffix), the windows wholly in the padding after its
    EOS again standing as the padding window. Then highway and output, per completion. Equal
    to the discriminator's forward pass on the completions up to float rounding (eval mode:
    dropout draws would differ)."""

    def __init__(self, discriminator: CNNDiscriminator, sequences: torch.Tensor):
        self.discriminator = discriminator
        self.width = sequences.shape[1]
        with torch.no_grad():
            self.running_max = [scores.cummax(dim=2).values
                                for scores in discriminator.window_scores(sequences)]
            self.padding = discriminator.padding_windows()
            highway = discriminator.highway
            self.highway_weight_t = torch.cat([highway.gate.weight,
                                               highway.transform.weight]).t().contiguous()
            self.highway_bias = torch.cat([highway.gate.bias, highway.transform.bias])
        self.multiply_adds = 0  # what the calls computed, for FLOPs accounting

    @torch.no_grad()
    def __call__(self, completions: torch.Tensor, sentence: torch.Tensor,
                 prefix_length: int) -> torch.Tensor:
        """Logits [N] of completions [N, W] whose first prefix_length tokens are those of
        sequences[sentence]."""
        model = self.discriminator
        width = model.padded_width(self.width)
        longest = last_counted_column(completions) + 1
        first = max(0, prefix_length - max(model.filter_sizes) + 1)
        stop = min(width, longest + max(model.filter_sizes) - 1)
        tokens = nn.functional.pad(completions[:, first:stop],
                                   (0, max(0, stop - self.width)), value=PAD)
        embedded = model.embedding(tokens).transpose(1, 2)
        pooled = []
        for index, (conv, size) in enumerate(zip(model.convolutions, model.filter_sizes)):
            start = max(0, prefix_length - size + 1)  # the first window touching the suffix
            reach = min(width, longest + size - 1)
            # relu(max) = max(relu): the ReLU is taken on the pooled [N, F_k] alone.
            value = conv(embedded[:, :, start - first : reach - first]).amax(dim=2)
            self.multiply_adds += (completions.shape[0] * conv.out_channels * conv.in_channels
                                   * size * (reach - size + 1 - start))
            if start > 0:  # windows ending inside the prefix (their max is >= 0)
                value = torch.maximum(value, self.running_max[index][sentence, :, start - 1])
            if reach < width:  # windows wholly in the padding after the EOS (>= 0 too)
                value = torch.maximum(value, self.padding[index])
            if start == 0 and reach == width:
                value = value.clamp_(min=0.0)
            pooled.append(value)
        self.multiply_adds += completions.shape[0] * model.head_macs()
        return self.head(torch.cat(pooled, dim=1))

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """The discriminator's head in eval mode, its highway's two products in one."""
        model = self.discriminator
        if model.training:
            return model.head(pooled)
        features = pooled.shape[1]
        both = torch.addmm(self.highway_bias, pooled, self.highway_weight_t)
        gate = torch.sigmoid(both[:, :features])
        highway = gate * torch.relu(both[:, features:]) + (1.0 - gate) * pooled
        return model.output(highway).squeeze(1)


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
