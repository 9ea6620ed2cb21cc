"""Synthetic-data augmentation: does training a language model on GAN-made text help?

Three budgeted phases, all paid from the run's one budget (METRICS.md):
  (a) train a source generator (any registered variant: seqgan, gpt2_bert_gan, or mle_lstm as
      the control) for the first ``source_share`` of the budget;
  (b) sample synthetic sentences in chunks, one chunk per step (so sampling counts in every
      budget unit), keeping the ``keep_top`` fraction its own discriminator scores as most real;
  (c) train the target language model (mle_lstm or gpt2_mle) on the real training split plus
      ``synthetic_ratio`` x (real size) synthetic sentences, for the rest of the budget.
The target is what the harness evaluates. The real-only control is the target variant itself run
at the same total budget (the shipped augmentation suite always includes it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.config import build_config, config_to_dict, field, parse_assignments
from bench.corpora import Corpus
from bench.errors import GanbenchError, StepAbandoned
from bench.registry import get_variant
from bench.variant import NLLResult, StepReport, Variant

PHASE_SOURCE, PHASE_SAMPLE, PHASE_TARGET = 0, 1, 2
PHASE_NAMES = ("source", "sampling", "target")


@dataclass
class SyntheticAugmentationConfig:
    source: str = field("seqgan", "variant that generates the synthetic data")
    target: str = field("mle_lstm", "language model trained on real + synthetic data")
    source_share: float = field(0.5, "share of the budget for training the source (a)",
                                bounds="(0, 1)")
    synthetic_ratio: float = field(0.5, "synthetic sentences added per real training sentence",
                                   bounds="[0, inf)")
    keep_top: float = field(1.0, "keep this top fraction by the source discriminator's score",
                            bounds="(0, 1]")
    sample_chunk: int = field(500, "synthetic sentences sampled per budgeted step (b)",
                              bounds="[1, inf)")
    sample_temperature: float = field(1.0, "temperature of the synthetic samples")
    source_set: str = field("", "source config overrides, 'field=value;field=value'")
    target_set: str = field("", "target config overrides, 'field=value;field=value'")

    def validate(self) -> None:
        if self.source == "synthetic_augmentation" or self.target == "synthetic_augmentation":
            raise ValueError("source and target must be other variants")
        from bench.registry import discover

        registered = discover()
        for role, name in (("source", self.source), ("target", self.target)):
            if name not in registered:
                raise ValueError(f"{role} {name!r} is not a registered variant")


def _overrides(text: str) -> dict[str, str]:
    return parse_assignments([part for part in text.split(";") if part.strip()])


def build_sub_variant(name: str, overrides: str, corpus: Corpus, device: torch.device,
                      seed: int) -> Variant:
    variant_class = get_variant(name)
    config = build_config(variant_class.Config, _overrides(overrides),
                          base=variant_class.corpus_defaults(corpus))
    return variant_class(config, corpus, device, seed)


def select_top(texts: list[str], scores: list[float] | None, keep: int) -> list[str]:
    """The ``keep`` texts with the highest scores (stable for ties); the first ``keep`` if
    there are no scores."""
    if scores is None:
        return texts[:keep]
    order = sorted(range(len(texts)), key=lambda i: (-scores[i], i))
    return [texts[i] for i in sorted(order[:keep])]


class SyntheticAugmentation(Variant):
    name = "synthetic_augmentation"
    Config = SyntheticAugmentationConfig
    description = ("a target LM trained on real + GAN-generated sentences; source training, "
                   "sampling and target training share one budget")

    def __init__(self, config: SyntheticAugmentationConfig, corpus: Corpus,
                 device: torch.device, seed: int):
        super().__init__(config, corpus, device, seed)
        self.source = build_sub_variant(config.source, config.source_set, corpus, self.device,
                                        seed)
        # The source's budget is this run's first share: its long steps stop where that ends.
        self.source.progress_now = lambda: self.progress_now() / config.source_share
        # Validate the target's config now, not after the source has used half the budget.
        target_class = get_variant(config.target)
        build_config(target_class.Config, _overrides(config.target_set),
                     base=target_class.corpus_defaults(corpus))
        if config.keep_top < 1 and type(self.source).realness_scores is Variant.realness_scores:
            raise GanbenchError(f"keep_top < 1 needs a source with a discriminator; "
                                f"{config.source} has none")
        self.num_needed = round(config.synthetic_ratio * len(corpus.train))
        self.num_to_sample = math.ceil(self.num_needed / config.keep_top)
        self.phase = PHASE_SOURCE
        self.generated: list[str] = []
        self.scores: list[float] = []
        self.synthetic: list[str] = []
        self.target: Variant | None = None
        self.target_started_at = 0.0

    @classmethod
    def import_libraries(cls, config: SyntheticAugmentationConfig) -> None:
        for name in (config.source, config.target):
            get_variant(name).import_libraries(None)

    def generator_module(self) -> torch.nn.Module | None:
        """The target once it exists: it is what is evaluated (the source is not)."""
        return self.target.generator_module() if self.target is not None else None

    def phase_name(self) -> str:
        return PHASE_NAMES[self.phase]

    def _build_target(self) -> None:
        tokenize = self.corpus.tokenization.tokenize
        synthetic_tokens = [t for t in (tokenize(s) for s in self.synthetic) if t]
        mixed = Corpus(self.corpus.name, self.corpus.train + synthetic_tokens, self.corpus.test,
                       self.corpus.tokenization, dict(self.corpus.sha256), self.corpus.oracle)
        # Generation length and vocabulary stay those of the real training split (synthetic
        # words outside it read as UNK).
        mixed.max_length = self.corpus.max_length
        mixed.vocab = self.corpus.vocab
        self.target = build_sub_variant(self.config.target, self.config.target_set, mixed,
                                        self.device, self.seed + 1)

    def _finish_sampling(self) -> None:
        scores = self.scores if self.config.keep_top < 1 else None
        self.synthetic = select_top(self.generated, scores, self.num_needed)
        self._build_target()

    def train_step(self, progress: float) -> StepReport:
        share = self.config.source_share
        if self.phase == PHASE_SOURCE and progress < share:
            try:
                report = self.source.train_step(progress / share)
            except StepAbandoned:  # the source's share ran out inside its step: go on to (b)
                self.phase = PHASE_SAMPLE
                return StepReport(tokens=0, generator_updates=0, logs={
                    "train/phase_augmentation": float(PHASE_SOURCE)})
            report.logs = {**report.logs, "train/phase_augmentation": float(PHASE_SOURCE)}
            return report
        if self.phase == PHASE_SOURCE:
            self.phase = PHASE_SAMPLE
        if self.phase == PHASE_SAMPLE and len(self.generated) < self.num_to_sample:
            n = min(self.config.sample_chunk, self.num_to_sample - len(self.generated))
            texts = self.source.sample(n, self.config.sample_temperature,
                                       seed=self.seed * 7919 + len(self.generated))
            flops = self.source.sampling_flops(texts)
            if self.config.keep_top < 1:
                self.scores.extend(self.source.realness_scores(texts) or [])
                flops += self.source.scoring_flops(texts)
            self.generated.extend(texts)
            tokens = sum(len(self.corpus.tokenization.tokenize(t)) + 1 for t in texts)
            # Sampling and filtering count in FLOPs budgets too; no network is updated.
            return StepReport(tokens=tokens, flops=flops, generator_updates=0, logs={
                "train/phase_augmentation": float(PHASE_SAMPLE),
                "synthetic/generated": float(len(self.generated))})
        if self.phase == PHASE_SAMPLE:
            self._finish_sampling()
            self.phase = PHASE_TARGET
            self.target_started_at = progress
        span = max(1e-9, 1.0 - self.target_started_at)
        report = self.target.train_step(min(1.0, (progress - self.target_started_at) / span))
        report.logs = {**report.logs, "train/phase_augmentation": float(PHASE_TARGET),
                       "synthetic/kept": float(len(self.synthetic))}
        return report

    def _ensure_target(self) -> Variant:
        if self.target is None:  # the budget ended before phase (c): an untrained target
            self._finish_sampling()
        return self.target

    def sample(self, n: int, temperature: float, seed: int) -> list[str]:
        return self._ensure_target().sample(n, temperature, seed)

    def token_nll(self, sentences: list[list[str]], temperature: float = 1.0
                  ) -> NLLResult | None:
        return self._ensure_target().token_nll(sentences, temperature=temperature)

    def token_nll_temperatures(self, sentences: list[list[str]], temperatures
                               ) -> list[NLLResult] | None:
        return self._ensure_target().token_nll_temperatures(sentences, temperatures)

    def state_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "source": self.source.state_dict(),
                "generated": list(self.generated), "scores": list(self.scores),
                "synthetic": list(self.synthetic), "target_started_at": self.target_started_at,
                "target": self.target.state_dict() if self.target is not None else None,
                "config": config_to_dict(self.config)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.phase = int(state["phase"])
        self.source.load_state_dict(state["source"])
        self.generated, self.scores = list(state["generated"]), list(state["scores"])
        self.synthetic = list(state["synthetic"])
        self.target_started_at = float(state["target_started_at"])
        if state["target"] is not None:
            self._build_target()
            self.target.load_state_dict(state["target"])

    def save_artifacts(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "synthetic.txt").write_text("".join(s + "\n" for s in self.synthetic),
                                                 encoding="utf-8")
        if self.target is not None:
            self.target.save_artifacts(directory / "target")


VARIANT = SyntheticAugmentation
