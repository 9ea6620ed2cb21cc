"""The LSTM language model shared by the LSTM variants (MLE, SeqGAN, LSTM GAN)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from baselines.primitives.sampling import END_CHECK_EVERY, draw_categorical, fixed_rows_default
from bench.text import BOS, EOS, PAD, UNK


class _CrossEntropyInPlace(torch.autograd.Function):
    """Mean cross-entropy of logits [K, V] (float32) against targets [K], whose backward turns
    the logits' own buffer into the gradient (softmax - one-hot) instead of allocating a
    log-softmax and its gradient: at coco's vocabulary these K x V passes were a third of an
    MLE step. The logits must be a fresh tensor that nothing else reads after the loss."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_total = torch.logsumexp(logits, dim=1)
        loss = (log_total - logits.gather(1, targets.unsqueeze(1)).squeeze(1)).mean()
        ctx.save_for_backward(logits, log_total, targets)
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, log_total, targets = ctx.saved_tensors
        gradient = logits.sub_(log_total.unsqueeze(1)).exp_()  # softmax, in the logits' place
        gradient[torch.arange(len(targets), device=targets.device), targets] -= 1.0
        return gradient.mul_(grad / len(targets)), None


def cross_entropy_consuming_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """F.cross_entropy(logits, targets) (mean), reusing the logits' buffer for the gradient:
    the caller must not read ``logits`` after backward (see _CrossEntropyInPlace)."""
    if logits.dtype != torch.float32 or not logits.requires_grad:
        return F.cross_entropy(logits.float(), targets)
    return _CrossEntropyInPlace.apply(logits, targets)


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

    def counted_logits(self, inputs: torch.Tensor, targets: torch.Tensor,
                       lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing with no work on padding: the logits [K, V] and targets [K] of the K
        non-padding target positions, in row-major order.

        The batch is cut to its longest member (the LSTM is causal, so the columns that are
        padding in every row change nothing before them), and only the counted positions go
        through the output layer and the loss: at coco's widths (38 positions, mean about 12)
        the projection and log-softmax over padding were most of a step."""
        hidden, counted_targets = self.counted_hidden(inputs, targets, lengths)
        return self.output(self.dropout(hidden)), counted_targets

    def counted_hidden(self, inputs: torch.Tensor, targets: torch.Tensor,
                       lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The LSTM's top hidden states [K, H] and targets [K] at the K non-padding target
        positions (row-major), the batch cut to its longest member: counted_logits before
        the output layer. With ``lengths`` (each row's counted targets, on the host) the cut
        and the gather read nothing from the device; without, both wait for it."""
        if lengths is None:
            lengths = (targets != PAD).sum(dim=1)
        width = max(int(lengths.max()), 1)
        inputs, targets = inputs[:, :width], targets[:, :width]
        hidden, _ = self.lstm(self.embedding(inputs))
        counted = targets != PAD
        positions = torch.nonzero_static(counted.flatten(), size=int(lengths.sum())).squeeze(1)
        return hidden.flatten(0, 1)[positions], targets.flatten()[positions]

    def nll_loss(self, inputs: torch.Tensor, targets: torch.Tensor,
                 lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Mean NLL per non-padding target token (teacher forcing), over counted positions only
        (with dropout > 0 the dropout masks are drawn for those positions alone); ``lengths``
        as counted_hidden's."""
        logits, counted_targets = self.counted_logits(inputs, targets, lengths)
        return cross_entropy_consuming_logits(logits, counted_targets)

    def flops_per_token(self) -> float:
        """Multiply-adds per token, times 2 FLOPs each (forward only)."""
        params = sum(p.numel() for name, p in self.named_parameters() if "embedding" not in name)
        return 2.0 * params

    @torch.no_grad()
    def sample(self, n: int, max_length: int, temperature: float,
               generator: torch.Generator | None = None,
               fixed_rows: bool | None = None) -> torch.Tensor:
        """n sequences [n, max_length + 1]: tokens, EOS, then PAD (EOS forced at the end).

        On a CPU, finished rows leave the batch (with their LSTM state), so a step costs only
        the rows still decoding. With ``fixed_rows`` (the default on CUDA) every row decodes
        to the end and the loop reads the device once per END_CHECK_EVERY tokens instead of
        twice a token: on a GPU the waits, not the arithmetic, bound so small a step. Either
        way the draws are those of decoding every row to the end (draw_categorical's
        ``active``), so both give the same sequences."""
        device = self.output.weight.device
        if fixed_rows if fixed_rows is not None else fixed_rows_default(device):
            return self._sample_fixed_rows(n, max_length, temperature, generator)
        tokens = torch.full((n, 1), BOS, dtype=torch.long, device=device)
        out = torch.full((n, max_length + 1), PAD, dtype=torch.long, device=device)
        rows = torch.arange(n, device=device)  # batch rows still decoding
        active = torch.ones(n, dtype=torch.bool, device=device)
        state = None
        for t in range(max_length + 1):
            if t == max_length:
                out[rows, t] = EOS
                break
            # Inline, not in a helper shared with the fixed-row loop: a helper frees the step's
            # [rows, V] temporaries at its return, and on glibc that made this loop 1.7x slower
            # (memory given back and faulted in again each step; the lstm_sampling benchmark
            # went from 1.95 to 3.3 times its reference).
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

    def _sample_fixed_rows(self, n: int, max_length: int, temperature: float,
                           generator: torch.Generator | None) -> torch.Tensor:
        """sample() with every row decoding to the end: an ended row keeps being fed its own
        draws, which are not kept (PAD is written after its EOS)."""
        device = self.output.weight.device
        tokens = torch.full((n, 1), BOS, dtype=torch.long, device=device)
        out = torch.full((n, max_length + 1), PAD, dtype=torch.long, device=device)
        active = torch.ones(n, dtype=torch.bool, device=device)
        state = None
        for t in range(max_length):
            logits, state = self(tokens, state)
            logits = logits[:, -1].float()
            logits[:, [PAD, BOS, UNK]] = -float("inf")
            probs = torch.softmax(logits / temperature, dim=-1)
            drawn = draw_categorical(probs, generator)
            out[:, t] = torch.where(active, drawn, PAD)
            active &= drawn != EOS
            if (t + 1) % END_CHECK_EVERY == 0 and not bool(active.any()):
                return out
            tokens = drawn.unsqueeze(1)
        out[:, max_length] = torch.where(active, EOS, PAD)
        return out
