"""The synthetic LSTM oracle of METRICS.md (Yu et al. 2017, SeqGAN; Texygen's oracle setting).

Vocabulary 5,000, embedding 32, hidden 32, sequence length 20, every weight drawn from N(0, 1)
with a fixed seed. Weights and sampling use torch's CPU Mersenne-Twister generator and float64
arithmetic with inverse-CDF sampling, so every machine builds the same oracle and the same
10,000 training and 5,000 test sequences.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ORACLE_SEED = 20170204  # SeqGAN's arXiv date; any fixed number would do, this one never changes.
VOCAB_SIZE = 5000
EMBEDDING_DIM = 32
HIDDEN_DIM = 32
SEQUENCE_LENGTH = 20
NUM_TRAIN = 10_000
NUM_TEST = 5_000


@dataclass
class OracleWeights:
    embedding: torch.Tensor  # [VOCAB_SIZE + 1, E]; the last row is the start symbol
    weight_ih: torch.Tensor  # [4H, E], gates in order input, forget, cell, output
    weight_hh: torch.Tensor  # [4H, H]
    bias: torch.Tensor  # [4H]
    weight_out: torch.Tensor  # [VOCAB_SIZE, H]
    bias_out: torch.Tensor  # [VOCAB_SIZE]

    def tensors(self) -> list[torch.Tensor]:
        return [self.embedding, self.weight_ih, self.weight_hh, self.bias, self.weight_out,
                self.bias_out]


class Oracle:
    """A fixed random LSTM language model over 5,000 token ids, scored in float64."""

    def __init__(self, seed: int = ORACLE_SEED):
        rng = torch.Generator().manual_seed(seed)

        def normal(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=rng, dtype=torch.float64)

        self.weights = OracleWeights(
            embedding=normal(VOCAB_SIZE + 1, EMBEDDING_DIM),
            weight_ih=normal(4 * HIDDEN_DIM, EMBEDDING_DIM),
            weight_hh=normal(4 * HIDDEN_DIM, HIDDEN_DIM),
            bias=normal(4 * HIDDEN_DIM),
            weight_out=normal(VOCAB_SIZE, HIDDEN_DIM),
            bias_out=normal(VOCAB_SIZE),
        )
        self.seed = seed

    def checksum(self) -> str:
        """sha256 of the weights' bytes: pinned by a test so that a changed oracle is noticed."""
        digest = hashlib.sha256()
        for tensor in self.weights.tensors():
            digest.update(tensor.contiguous().numpy().tobytes())
        return digest.hexdigest()

    def _step(self, inputs: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        w = self.weights
        gates = w.embedding[inputs] @ w.weight_ih.T + h @ w.weight_hh.T + w.bias
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return torch.log_softmax(h @ w.weight_out.T + w.bias_out, dim=-1), h, c

    def _initial(self, batch: int):
        zeros = torch.zeros(batch, HIDDEN_DIM, dtype=torch.float64)
        start = torch.full((batch,), VOCAB_SIZE, dtype=torch.long)
        return start, zeros, zeros.clone()

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """n sequences of SEQUENCE_LENGTH token ids, by inverse-CDF sampling from a seeded RNG."""
        rng = torch.Generator().manual_seed(seed)
        uniforms = torch.rand(n, SEQUENCE_LENGTH, generator=rng, dtype=torch.float64)
        inputs, h, c = self._initial(n)
        out = torch.empty(n, SEQUENCE_LENGTH, dtype=torch.long)
        for t in range(SEQUENCE_LENGTH):
            log_probs, h, c = self._step(inputs, h, c)
            cdf = log_probs.exp().cumsum(dim=-1)
            # Clamp: the float64 cdf can end a hair below 1.
            token = torch.searchsorted(cdf, uniforms[:, t : t + 1].contiguous()).squeeze(1)
            inputs = token.clamp_(max=VOCAB_SIZE - 1)
            out[:, t] = inputs
        return out

    def splits(self, cache_dir: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The benchmark's fixed 10,000 training and 5,000 test sequences.

        Sampling them takes about 25 s on 2 CPU cores (float64 over a 5,000-way softmax), so they
        are cached under cache_dir, keyed by the weights' checksum, and rebuilt when absent.
        """
        cache_file = None
        if cache_dir is not None:
            cache_file = Path(cache_dir) / f"oracle-{self.checksum()[:16]}.safetensors"
            if cache_file.exists():
                try:
                    cached = load_file(str(cache_file))
                    return cached["train"], cached["test"]
                except Exception:  # a damaged cache is rebuilt, never trusted
                    pass
        both = self.sample(NUM_TRAIN + NUM_TEST, seed=self.seed + 1)
        train, test = both[:NUM_TRAIN].contiguous(), both[NUM_TRAIN:].contiguous()
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
            save_file({"train": train, "test": test}, str(tmp))
            os.replace(tmp, cache_file)
        return train, test

    def nll(self, sequences: Sequence[Sequence[int]]) -> float:
        """Mean NLL per token (nats) of the given sequences under the oracle (`nll_oracle`).

        Sequences are scored on their first SEQUENCE_LENGTH tokens; shorter ones on what they
        have, so a generator that stops early is not rewarded for it with a lower count.
        """
        if not sequences:
            raise ValueError("nll_oracle needs at least one sequence")
        length = SEQUENCE_LENGTH
        batch = torch.zeros(len(sequences), length, dtype=torch.long)
        mask = torch.zeros(len(sequences), length, dtype=torch.float64)
        for row, seq in enumerate(sequences):
            seq = list(seq)[:length]
            if any(not 0 <= t < VOCAB_SIZE for t in seq):
                raise ValueError("an oracle sequence holds a token outside 0..4999")
            batch[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1.0
        if mask.sum() == 0:
            raise ValueError("nll_oracle needs at least one token")
        inputs, h, c = self._initial(len(sequences))
        total = torch.zeros((), dtype=torch.float64)
        for t in range(length):
            log_probs, h, c = self._step(inputs, h, c)
            target = batch[:, t]
            total -= (log_probs.gather(1, target[:, None]).squeeze(1) * mask[:, t]).sum()
            inputs = target
        return float(total / mask.sum())
