"""MLE LSTM: an LSTM language model trained by teacher forcing (the baseline every GAN must beat).

Sizes: on the oracle, embedding 32 / hidden 32 as in SeqGAN (Yu et al. 2017) and Texygen. On real
corpora, embedding 64 / hidden 128: close to the 32/32..128 LSTMs of the Texygen and
TextGAN-PyTorch real-data tables while small enough to train for many epochs of coco (10k
sentences) inside a CPU budget of minutes; --set changes any of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from baselines.primitives.engine import adam, compact_lstms, optimizer_step, to_device
from baselines.primitives.lstm import LSTMGenerator
from baselines.primitives.sequences import RandomBatches, decode, encode
from bench.config import field
from bench.corpora import Corpus
from bench.text import PAD, Tokenization
from bench.variant import NLLResult, StepReport, Variant


@dataclass
class MLELSTMConfig:
    embedding_dim: int = field(64, "token embedding size", bounds="[1, inf)")
    hidden_dim: int = field(128, "LSTM hidden size", bounds="[1, inf)")
    num_layers: int = field(1, "LSTM layers", bounds="[1, inf)")
    dropout: float = field(0.0, "dropout on the LSTM outputs", bounds="[0, 1)")
    batch_size: int = field(64, "sentences per optimiser step", bounds="[1, inf)")
    tokens_per_batch: int = field(
        0, "token-budgeted MLE batches instead: sentences taken in the epoch's seeded order "
           "while rows x the longest stays within this many positions (0 = batch_size "
           "sentences)", bounds="[0, inf)")
    learning_rate: float = field(1e-2, "Adam learning rate", bounds="(0, inf)")
    grad_clip: float = field(5.0, "gradient-norm clip (0 = off)")
    init_generator: str = field("", "start from this generator.safetensors (written to "
                                    "artifacts/ by an earlier LSTM run of the same sizes); "
                                    "'' = fresh weights. Its training is not in this budget")


GENERATOR_FILE = "generator.safetensors"


def build_generator(config: Any, corpus: Corpus, device: torch.device) -> LSTMGenerator:
    generator = LSTMGenerator(len(corpus.vocab), config.embedding_dim, config.hidden_dim,
                              config.num_layers, config.dropout)
    if config.init_generator:
        load_generator_weights(generator, Path(config.init_generator))
    return compact_lstms(generator.to(device))


def load_generator_weights(generator: LSTMGenerator, path: Path) -> None:
    """Weights from a safetensors file (never pickle), refused in one line if they do not fit."""
    from safetensors.torch import load_file

    from bench.errors import GanbenchError

    try:
        state = load_file(str(path))
    except Exception as err:  # missing, unreadable or not safetensors: all the same to a user
        raise GanbenchError(f"init_generator {path}: cannot load ({err})") from None
    own = generator.state_dict()
    if {k: tuple(v.shape) for k, v in state.items()} != {k: tuple(v.shape)
                                                         for k, v in own.items()}:
        raise GanbenchError(f"init_generator {path}: its tensors do not fit this generator "
                            "(another vocabulary or sizes)")
    generator.load_state_dict(state)


def sample_text(generator: LSTMGenerator, corpus: Corpus, n: int, temperature: float,
                seed: int, batch_size: int = 1000) -> list[str]:
    device = generator.output.weight.device
    rng = torch.Generator(device=device).manual_seed(seed)
    generator.eval()
    texts: list[str] = []
    for start in range(0, n, batch_size):
        ids = generator.sample(min(batch_size, n - start), corpus.max_length, temperature, rng)
        texts.extend(Tokenization.detokenize(s) for s in decode(corpus.vocab, ids.cpu()))
    generator.train()
    return texts


@torch.no_grad()
def generator_nll(generator: LSTMGenerator, corpus: Corpus, sentences: list[list[str]],
                  temperatures: Sequence[float] = (1.0,), batch_size: int = 500,
                  head_rows: int = 256) -> list[NLLResult]:
    """The NLL of the sentences at each temperature, from one forward pass per batch: the
    counted positions' hidden states go through the output layer ``head_rows`` at a time, and
    every temperature's cross-entropy is taken on the same logits.

    Chunking is for speed, not only memory: a whole batch's logits (500 sentences x 21
    positions x 5,000 words = 210 MB) do not stay in cache, and the log-softmax and division
    by T over them ran about 3x slower than over 256-row chunks (5 MB) on this machine."""
    from baselines.primitives.sampler_mask import SamplerMask
    from bench.text import BOS, PAD, UNK

    device = generator.output.weight.device
    generator.eval()
    # Sums stay on the device in float64 (the Python float's precision) and are read once.
    totals, tokens = [torch.zeros((), dtype=torch.float64, device=device)
                      for _ in temperatures], 0
    sampler_mask = SamplerMask([PAD, BOS, UNK])  # what LSTMGenerator.sample never draws
    # Test sentences are scored whole (the length cap is only for generation), in batches of
    # similar length so that little time goes into padding.
    by_length = sorted(sentences, key=len)
    with torch.no_grad():
        for start in range(0, len(by_length), batch_size):
            chunk = by_length[start : start + batch_size]
            batch = encode(corpus.vocab, chunk, max(len(s) for s in chunk))
            lengths = (batch.targets != PAD).sum(dim=1)
            batch = batch.to(device)
            hidden, targets = generator.counted_hidden(batch.inputs, batch.targets, lengths)
            for first in range(0, len(targets), head_rows):
                logits = generator.output(hidden[first : first + head_rows]).float()
                sampler_mask.add(logits)
                for i, temperature in enumerate(temperatures):
                    scaled = logits if temperature == 1.0 else logits / temperature
                    totals[i] += F.cross_entropy(
                        scaled, targets[first : first + head_rows], reduction="sum").double()
            tokens += len(targets)
    generator.train()
    return [NLLResult(total, tokens, tokens,
                      sampler_mask.total if temperature == 1.0 else None)
            for total, temperature in zip(torch.stack(totals).tolist(), temperatures)]


class MLELSTM(Variant):
    name = "mle_lstm"
    Config = MLELSTMConfig
    description = "LSTM language model trained by maximum likelihood (teacher forcing)"

    @classmethod
    def corpus_defaults(cls, corpus: Corpus) -> dict[str, Any]:
        return {"embedding_dim": 32, "hidden_dim": 32} if corpus.is_oracle else {}

    def __init__(self, config: MLELSTMConfig, corpus: Corpus, device: torch.device, seed: int):
        super().__init__(config, corpus, device, seed)
        self.generator = build_generator(config, corpus, self.device)
        self.optimizer = adam(self.generator.parameters(), config.learning_rate, self.device)
        train_data = encode(corpus.vocab, corpus.train, corpus.max_length)
        # Counted tokens per sentence (words + EOS) on the host: a step counts its batch
        # without waiting for the device.
        self.train_lengths = (train_data.targets != PAD).sum(dim=1)
        self.train_data = train_data.to(self.device)
        self.batches = RandomBatches(len(self.train_data), config.batch_size, seed,
                                     config.tokens_per_batch, self.train_lengths)

    def phase_name(self) -> str:
        return "mle"

    def train_step(self, progress: float) -> StepReport:
        indices = self.batches.next_indices()
        lengths = self.train_lengths[indices]
        batch = self.train_data.select(to_device(indices, self.device))
        loss = self.generator.nll_loss(batch.inputs, batch.targets, lengths)
        optimizer_step(self.optimizer, self.generator, loss, self.config.grad_clip)
        tokens = int(lengths.sum())
        # Tensors, not floats: the harness reads them in batches (bench.step_values).
        loss = loss.detach()
        return StepReport(tokens=tokens, flops=3 * tokens * self.generator.flops_per_token(),
                          logs={"train/g_loss": loss}, nll=loss,
                          nll_vocab_size=len(self.corpus.vocab))

    def sample(self, n: int, temperature: float, seed: int) -> list[str]:
        return sample_text(self.generator, self.corpus, n, temperature, seed)

    def sampling_flops(self, texts: list[str]) -> float:
        """One forward per sampled token, EOS included."""
        tokens = sum(len(self.corpus.tokenization.tokenize(t)) + 1 for t in texts)
        return tokens * self.generator.flops_per_token()

    def token_nll(self, sentences: list[list[str]], temperature: float = 1.0) -> NLLResult:
        return generator_nll(self.generator, self.corpus, sentences, (temperature,))[0]

    def token_nll_temperatures(self, sentences: list[list[str]],
                               temperatures: Sequence[float]) -> list[NLLResult]:
        return generator_nll(self.generator, self.corpus, sentences, temperatures)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "batches": self.batches.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.batches.load_state_dict(state["batches"])

    def save_artifacts(self, directory: Path) -> None:
        """The trained generator, so that a later run can start from it (init_generator)."""
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.generator.state_dict().items()}
        save_file(state, str(directory / GENERATOR_FILE))


VARIANT = MLELSTM
