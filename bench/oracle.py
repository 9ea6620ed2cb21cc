"""The synthetic LSTM oracles of METRICS.md: fixed LSTM language models over 5,000 token ids.

Two oracles share one recurrence (the SeqGAN target LSTM, Yu et al. 2017) and one scoring
code:
- ``Oracle()``: the project's own, every weight drawn from N(0, 1) with a fixed seed
  (vocabulary 5,000, embedding 32, hidden 32, length 20; 10,000 training and 5,000 test
  sequences). Numbers on it compare only with each other.
- ``load_seqgan_oracle(folder)``: SeqGAN's own oracle (its ``target_params``), read from the
  weight files described in ../shared/data/README.md, with 10,000 training and 10,000 test
  sequences sampled from it with a fixed seed, as in SeqGAN. Published synthetic results
  (SeqGAN, LeakGAN, RankGAN, "Language GANs Falling Short") were measured on this one.

Weights are held and scored in float64, and sequences are drawn by inverse-CDF sampling from
torch's CPU Mersenne-Twister generator, so every machine builds the same splits.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
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

SEQGAN_NUM_TEST = 10_000  # SeqGAN samples 10,000 sequences for each of its sets
SEQGAN_SPLIT_SEED = 20170205  # fixed once; the splits must never change
# The validation sequences are sampled with split_seed + this, apart from train and test.
VALID_SEED_OFFSET = 1_000_000


@dataclass
class OracleWeights:
    """An LSTM language model in column-vector layout (torch's nn.LSTM gate order)."""

    embedding: torch.Tensor  # [rows, E]; row start_index is the first input
    weight_ih: torch.Tensor  # [4H, E], gates in order input, forget, cell, output
    weight_hh: torch.Tensor  # [4H, H]
    bias: torch.Tensor  # [4H]
    weight_out: torch.Tensor  # [V, H]
    bias_out: torch.Tensor  # [V]

    def tensors(self) -> list[torch.Tensor]:
        return [self.embedding, self.weight_ih, self.weight_hh, self.bias, self.weight_out,
                self.bias_out]


def seeded_weights(seed: int) -> OracleWeights:
    """The project's oracle: N(0, 1) weights; the extra last embedding row is the start."""
    rng = torch.Generator().manual_seed(seed)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=rng, dtype=torch.float64)

    return OracleWeights(
        embedding=normal(VOCAB_SIZE + 1, EMBEDDING_DIM),
        weight_ih=normal(4 * HIDDEN_DIM, EMBEDDING_DIM),
        weight_hh=normal(4 * HIDDEN_DIM, HIDDEN_DIM),
        bias=normal(4 * HIDDEN_DIM),
        weight_out=normal(VOCAB_SIZE, HIDDEN_DIM),
        bias_out=normal(VOCAB_SIZE),
    )


def weights_from_seqgan(params: dict[str, torch.Tensor]) -> OracleWeights:
    """SeqGAN's row-vector parameters (i = sigmoid(x Wi + h Ui + bi), ..., p = softmax(h Wo +
    bo)) in the column layout above: each W and U transposed, stacked as input, forget,
    cell candidate, output."""
    gates = ("i", "f", "c", "og")
    as64 = {name: tensor.double() for name, tensor in params.items()}
    return OracleWeights(
        embedding=as64["embedding"],
        weight_ih=torch.cat([as64[f"w{g}"].T for g in gates]),
        weight_hh=torch.cat([as64[f"u{g}"].T for g in gates]),
        bias=torch.cat([as64[f"b{g}"] for g in gates]),
        weight_out=as64["wo"].T.contiguous(),
        bias_out=as64["bo"],
    )


def cached_tensors(cache_dir: Path | None, name: str,
                   build: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """build()'s tensors, kept in cache_dir/name (safetensors, written atomically) and read
    from there next time; a damaged file is rebuilt, never trusted. No cache_dir: built."""
    if cache_dir is None:
        return build()
    cache_file = Path(cache_dir) / name
    if cache_file.exists():
        try:
            return load_file(str(cache_file))
        except Exception:  # a damaged cache is rebuilt, never trusted
            pass
    tensors = build()
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
    save_file(tensors, str(tmp))
    os.replace(tmp, cache_file)
    return tensors


class Oracle:
    """A fixed LSTM language model, scored in float64; ``Oracle()`` is the project's seeded one.

    ``start_index`` is the embedding row fed at the first position (the seeded oracle has an
    extra start row; SeqGAN feeds token 0's embedding).
    """

    def __init__(self, seed: int = ORACLE_SEED, *, weights: OracleWeights | None = None,
                 start_index: int | None = None, num_train: int = NUM_TRAIN,
                 num_test: int = NUM_TEST, split_seed: int | None = None,
                 sequence_length: int = SEQUENCE_LENGTH, name: str = "oracle"):
        self.weights = weights if weights is not None else seeded_weights(seed)
        self.vocab_size = self.weights.weight_out.shape[0]
        self.hidden_dim = self.weights.weight_hh.shape[1]
        self.start_index = self.vocab_size if start_index is None else start_index
        self.seed = seed
        self.num_train, self.num_test = num_train, num_test
        self.split_seed = seed + 1 if split_seed is None else split_seed
        self.sequence_length = sequence_length
        self.name = name

    def checksum(self) -> str:
        """sha256 of the weights' bytes: pinned by a test so that a changed oracle is noticed."""
        digest = hashlib.sha256()
        for tensor in self.weights.tensors():
            digest.update(tensor.contiguous().numpy().tobytes())
        return digest.hexdigest()

    def recur(self, inputs: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        """One LSTM step from embedding rows ``inputs``: the new (h, c)."""
        w = self.weights
        gates = w.embedding[inputs] @ w.weight_ih.T + h @ w.weight_hh.T + w.bias
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def step(self, inputs: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        """One LSTM step from embedding rows ``inputs``: (log p(next token), h, c)."""
        h, c = self.recur(inputs, h, c)
        w = self.weights
        return torch.log_softmax(h @ w.weight_out.T + w.bias_out, dim=-1), h, c

    def _initial(self, batch: int):
        zeros = torch.zeros(batch, self.hidden_dim, dtype=torch.float64)
        start = torch.full((batch,), self.start_index, dtype=torch.long)
        return start, zeros, zeros.clone()

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """n sequences of sequence_length token ids, by inverse-CDF sampling from a seeded RNG."""
        rng = torch.Generator().manual_seed(seed)
        uniforms = torch.rand(n, self.sequence_length, generator=rng, dtype=torch.float64)
        inputs, h, c = self._initial(n)
        out = torch.empty(n, self.sequence_length, dtype=torch.long)
        for t in range(self.sequence_length):
            log_probs, h, c = self.step(inputs, h, c)
            cdf = log_probs.exp().cumsum(dim=-1)
            # Clamp: the float64 cdf can end a hair below 1.
            token = torch.searchsorted(cdf, uniforms[:, t : t + 1].contiguous()).squeeze(1)
            inputs = token.clamp_(max=self.vocab_size - 1)
            out[:, t] = inputs
        return out

    def splits(self, cache_dir: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The benchmark's fixed training and test sequences.

        Sampling them takes tens of seconds on 2 CPU cores (float64 over a 5,000-way softmax),
        so they are cached under cache_dir, keyed by the weights' checksum and the split sizes
        and seed, and rebuilt when absent.
        """
        key = f"{self.checksum()[:16]}"
        if (self.num_train, self.num_test, self.split_seed) != (
                NUM_TRAIN, NUM_TEST, self.seed + 1):  # the seeded oracle keeps its old name
            key += f"-{self.num_train}-{self.num_test}-{self.split_seed}"

        def build() -> dict[str, torch.Tensor]:
            both = self.sample(self.num_train + self.num_test, seed=self.split_seed)
            return {"train": both[: self.num_train].contiguous(),
                    "test": both[self.num_train :].contiguous()}

        cached = cached_tensors(cache_dir, f"oracle-{key}.safetensors", build)
        return cached["train"], cached["test"]

    def validation_split(self, cache_dir: Path | None = None) -> torch.Tensor:
        """The oracle's own validation sequences (5% of the training count), sampled with
        another seed than the splits, so that training and test stay the published ones;
        cached like them."""
        num_valid, seed = max(1, self.num_train // 20), self.split_seed + VALID_SEED_OFFSET
        name = f"oracle-{self.checksum()[:16]}-valid{num_valid}-{seed}.safetensors"
        return cached_tensors(cache_dir, name, lambda: {
            "valid": self.sample(num_valid, seed=seed).contiguous()})["valid"]

    def nll(self, sequences: Sequence[Sequence[int]]) -> float:
        """Mean NLL per token (nats) of the given sequences under the oracle (`nll_oracle`).

        As SeqGAN scores it: teacher forcing from the start input, every position's -log p
        averaged over all tokens. Sequences are scored on their first sequence_length tokens;
        shorter ones on what they have, so a generator that stops early is not rewarded for it
        with a lower count.
        """
        if not sequences:
            raise ValueError("nll_oracle needs at least one sequence")
        length = self.sequence_length
        batch = torch.zeros(len(sequences), length, dtype=torch.long)
        counted = torch.zeros(len(sequences), length, dtype=torch.bool)
        for row, seq in enumerate(sequences):
            seq = list(seq)[:length]
            if any(not 0 <= t < self.vocab_size for t in seq):
                raise ValueError(f"an oracle sequence holds a token outside "
                                 f"0..{self.vocab_size - 1}")
            batch[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            counted[row, : len(seq)] = True
        if not counted.any():
            raise ValueError("nll_oracle needs at least one token")
        # The recurrence first (cheap at width 32), then the 5,000-way head over the counted
        # positions in row chunks: -log p(target) = logsumexp(logits) - logits[target]. Step
        # by step with a whole log-softmax this was 1.6-1.9 s for 1,000 sequences (three times
        # an oracle evaluation); in cache-sized chunks it is 0.63-0.96 s, the same to 1e-14.
        inputs, h, c = self._initial(len(sequences))
        states = []
        for t in range(length):
            h, c = self.recur(inputs, h, c)
            states.append(h)
            inputs = batch[:, t]
        hidden, targets = torch.stack(states, dim=1)[counted], batch[counted]
        w = self.weights
        weight_out = w.weight_out.T.contiguous()
        total = 0.0
        for first in range(0, len(targets), self.NLL_CHUNK_ROWS):
            rows = slice(first, first + self.NLL_CHUNK_ROWS)
            logits = torch.addmm(w.bias_out, hidden[rows], weight_out)
            target_logits = logits.gather(1, targets[rows, None]).squeeze(1)
            total += float((torch.logsumexp(logits, dim=-1) - target_logits).sum())
        return total / len(targets)

    # Head rows at once in nll: 128 x 5,000 float64 logits (5 MB) stay in cache (measured
    # 0.44 s for 1,000 sequences against 0.52 s at 256 rows and 1.34 s at 4,096).
    NLL_CHUNK_ROWS = 128


def seqgan_oracle(params: dict[str, torch.Tensor]) -> Oracle:
    """SeqGAN's oracle from its parameters (names as the weight files, without .npz)."""
    return Oracle(weights=weights_from_seqgan(params), start_index=0,
                  num_train=NUM_TRAIN, num_test=SEQGAN_NUM_TEST,
                  split_seed=SEQGAN_SPLIT_SEED, name="seqgan_oracle")
