"""The LSTM language model shared by the LSTM variants (MLE, SeqGAN, LSTM GAN)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.primitives.sampling import draw_categorical
from bench.text import BOS, EOS, PAD, UNK


def log_probs_of(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0
                 ) -> torch.Tensor:
    """log softmax(logits / temperature) at each target [B, T], 0 at padding."""
    log_probs = torch.log_softmax(logits / temperature, dim=-1)
    picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked * (targets != PAD)


class LSTMGenerator(nn.Module):
    """Embedding -> LSTM -> linear over the vocabulary; trained by teacher forcing."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_dim: int,
                 num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_dim, vocab_size)

    def forward(self, inputs: torch.Tensor, state=None):
        """inputs [B, T] -> logits [B, T, V] and the LSTM state after the last position."""
        hidden, state = self.lstm(self.embedding(inputs), state)
        return self.output(self.dropout(hidden)), state

    def token_log_probs(self, inputs: torch.Tensor, targets: torch.Tensor,
                        temperature: float = 1.0) -> torch.Tensor:
        """log p(target_t | prefix) per position, 0 at padding: [B, T]."""
        logits, _ = self(inputs)
        return log_probs_of(logits.float(), targets, temperature)

    def nll_loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean NLL per non-padding target token (teacher forcing)."""
        logits, _ = self(inputs)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                               ignore_index=PAD)

    def flops_per_token(self) -> float:
        """Multiply-adds per token, times 2 FLOPs each (forward only)."""
        params = sum(p.numel() for name, p in self.named_parameters() if "embedding" not in name)
        return 2.0 * params

    @torch.no_grad()
    def sample(self, n: int, max_length: int, temperature: float,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """n sequences [n, max_length + 1]: tokens, EOS, then PAD (EOS forced at the end).

        Finished rows leave the batch (with their LSTM state), so a step costs only the rows
        still decoding; the draws are those of decoding every row to the end
        (draw_categorical's ``active``)."""
        device = self.output.weight.device
        tokens = torch.full((n, 1), BOS, dtype=torch.long, device=device)
        out = torch.full((n, max_length + 1), PAD, dtype=torch.long, device=device)
        rows = torch.arange(n, device=device)  # batch rows still decoding
        active = torch.ones(n, dtype=torch.bool, device=device)
        state = None
        for t in range(max_length + 1):
            if t == max_length:
                out[rows, t] = EOS
                break
            logits, state = self(tokens, state)
            logits = logits[:, -1].float()
            # Never emit the special input-only tokens.
            logits[:, [PAD, BOS, UNK]] = -float("inf")
            probs = torch.softmax(logits / temperature, dim=-1)
            next_token = draw_categorical(probs, generator, active)
            out[rows, t] = next_token
            going_on = next_token != EOS
            if not bool(going_on.any()):
                break
            if not bool(going_on.all()):
                rows, next_token = rows[going_on], next_token[going_on]
                state = tuple(part[:, going_on] for part in state)
                active = torch.zeros_like(active).index_fill_(0, rows, True)
            tokens = next_token.unsqueeze(1)
        return out
