"""What a variant is: a typed config and five methods the harness calls.

The harness owns the training loop and the budget: it calls ``train_step(progress)`` until the
budget is spent, so no variant can overrun it or misreport it. ``progress`` (0..1, the share of
the budget spent) lets a variant schedule its phases (MLE pretraining, discriminator
pretraining, adversarial steps) in any budget unit.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from bench.corpora import Corpus


@dataclass
class Check:
    """A value of a training step that ends the run as diverged when it is not finite or is
    below ``floor``: a GAN's losses, its generator's entropy (collapse onto a few sentences).
    The harness reads it with the step's logs at its own sync points (bench.step_values), so a
    check never makes the host wait for the device inside a step."""

    what: str  # what the value is, for the reason: "generator loss"
    value: float | torch.Tensor  # a float or a 0-d tensor
    floor: float = -math.inf
    floor_name: str = ""  # the config field that sets the floor: "min_entropy"

    def failure(self) -> str | None:
        """Why this check's value (read on the host: a float) ends the run, or None."""
        value = float(self.value)
        if not math.isfinite(value):
            return f"non-finite {self.what}: {value}"
        if value < self.floor:
            return (f"{self.what} fell to {value:.4g}, below {self.floor_name} "
                    f"{self.floor:g}")
        return None


@dataclass
class StepReport:
    """What one training step did: generator tokens processed, its FLOPs (sampling included),
    the optimiser updates of each network, diagnostics, and the MLE loss if it took one."""

    tokens: int
    flops: float = 0.0
    logs: dict[str, float] = field(default_factory=dict)
    generator_updates: int = 1
    discriminator_updates: int = 0
    # Mean per-token cross-entropy (nats) of a maximum-likelihood step, over a softmax of
    # nll_vocab_size tokens: the harness ends a run whose loss is far above log(vocab) as
    # diverged (bench.divergence).
    nll: float | None = None
    nll_vocab_size: int = 0
    # The variant's own divergence rules for this step, in the order it met them.
    checks: list[Check] = field(default_factory=list)


@dataclass
class NLLResult:
    """Summed negative log-likelihood (nats) with the counts to divide it by."""

    total_nats: float
    num_tokens: int  # the model's own tokens, EOS included, padding excluded
    num_words: int  # evaluation tokens + one EOS per sentence, for per-word comparisons
    # Summed T = 1 probability on the tokens the variant's sampler masks, over the same
    # positions (baselines/primitives/sampler_mask.py); None where the variant does not say.
    masked_mass: float | None = None

    @property
    def per_token(self) -> float:
        return self.total_nats / self.num_tokens

    @property
    def per_word(self) -> float:
        return self.total_nats / self.num_words


class Variant(abc.ABC):
    """Base of every registered variant; see baselines/mle_lstm.py for the smallest one."""

    name: ClassVar[str]
    Config: ClassVar[type]
    description: ClassVar[str] = ""

    def __init__(self, config: Any, corpus: Corpus, device: torch.device, seed: int):
        self.config = config
        self.corpus = corpus
        self.device = torch.device(device)
        self.seed = seed

    def progress_now(self) -> float:
        """The share of the budget spent right now. The harness replaces this with its clock's
        reading while training; this default (never spent) serves variants used standalone."""
        return 0.0

    def budget_spent(self) -> bool:
        """For variants whose steps are long (SeqGAN's rollouts: tens of seconds on news): check
        this inside a step and raise bench.errors.StepAbandoned (before any weight changes) or
        cut the step short, so that a seconds budget holds even then."""
        return self.progress_now() >= 1.0

    @classmethod
    def import_libraries(cls, config: Any) -> None:
        """Import the libraries the variant builds with (transformers, ...). The harness calls
        this before it starts the construction clock: a process's first import of a library
        is the process's cost, not this run's (METRICS.md, Budget)."""
        return None  # torch alone: already imported

    def generator_module(self) -> torch.nn.Module | None:
        """The network that ``sample`` and ``token_nll`` use now; checkpoint selection keeps
        copies of its weights (bench/selection.py). None: nothing to validate yet."""
        module = getattr(self, "generator", None)
        return module if isinstance(module, torch.nn.Module) else None

    def phase_name(self) -> str:
        """The training phase the variant is in (e.g. mle, discriminator, adversarial): the
        records say in which phase the selected generator was taken."""
        return "train"

    @classmethod
    def corpus_defaults(cls, corpus: Corpus) -> dict[str, Any]:
        """Config values that differ by corpus (e.g. the oracle's literature sizes)."""
        return {}

    @abc.abstractmethod
    def train_step(self, progress: float) -> StepReport:
        """One optimiser step of whatever phase ``progress`` puts the variant in."""

    @abc.abstractmethod
    def sample(self, n: int, temperature: float, seed: int) -> list[str]:
        """n sentences as text (evaluation tokens joined by blanks, or any text)."""

    def token_nll(self, sentences: list[list[str]], temperature: float = 1.0
                  ) -> NLLResult | None:
        """NLL of evaluation-token sentences under the model with its logits divided by
        ``temperature`` (the quality-diversity curve scores nll_test per temperature);
        None for variants without likelihoods."""
        return None

    def token_nll_temperatures(self, sentences: list[list[str]],
                               temperatures: Sequence[float]) -> list[NLLResult] | None:
        """token_nll at each temperature (a variant may share one forward pass among them)."""
        results = [self.token_nll(sentences, temperature) for temperature in temperatures]
        return None if not results or results[0] is None else results

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: models, optimisers, RNG states, counters."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def realness_scores(self, texts: list[str]) -> list[float] | None:
        """The variant's own discriminator's score per text (higher = more real), if it has one.
        Used to filter synthetic data; never used for evaluation (disc_acc is a fresh model)."""
        return None

    def sampling_flops(self, texts: list[str]) -> float:
        """FLOPs it took to sample ``texts`` (synthetic data counts in FLOPs budgets); 0 for a
        variant that does not say."""
        return 0.0

    def scoring_flops(self, texts: list[str]) -> float:
        """FLOPs of ``realness_scores(texts)``; 0 for a variant that does not say."""
        return 0.0

    def save_artifacts(self, directory: Path) -> None:  # noqa: B027 - optional hook
        """Optional: write models in their native format (e.g. save_pretrained)."""
