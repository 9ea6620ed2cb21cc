"""Evaluation of a trained variant: every metric of METRICS.md, computed the same for all.

Evaluation time is never charged to the training budget; it is timed separately.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.config import field
from bench.corpora import Corpus
from bench.errors import GanbenchError
from bench.text import Tokenization, one_line
from bench.variant import Variant

BLEU_ORDERS = (2, 3, 4, 5)


@dataclass
class EvalConfig:
    num_samples: int = field(5000, "sentences sampled at temperature 1 (capped at the test size)")
    temperatures: tuple[float, ...] = field(
        (0.5, 0.75, 1.0, 1.25, 1.5),
        "temperature grid of the quality-diversity curve (empty: none)")
    curve_samples: int = field(1000, "sentences sampled per curve temperature")
    disc_acc: bool = field(True, "train the fresh held-out classifier (disc_acc)")
    disc_acc_encoder: str = field("cnn", "disc_acc classifier: cnn, or minilm when installed")
    reference_metrics: bool = field(True, "also sacrebleu and ROUGE-L against the test split")
    embedding_metrics: bool = field(False, "also Frechet distance (and MAUVE when mauve-text "
                                           "is installed) on MiniLM embeddings; needs the "
                                           "minilm extra")

    def validate(self) -> None:
        if self.num_samples < 2:
            raise ValueError("num_samples must be at least 2 (Self-BLEU needs two sentences)")
        if self.curve_samples < 2:
            raise ValueError("curve_samples must be at least 2")
        if any(t <= 0 for t in self.temperatures):
            raise ValueError("temperatures must be positive")


def _oracle_ids(tokenized: list[list[str]]) -> list[list[int]]:
    try:
        return [[int(token) for token in sentence] for sentence in tokenized]
    except ValueError:
        raise GanbenchError("samples on the oracle must be token ids (integers)") from None


def text_metrics(tokenized: list[list[str]], corpus: Corpus) -> dict[str, float]:
    """BLEU-2..5 against the whole test split and leave-one-out Self-BLEU-2..5 (means)."""
    from bench.metrics.bleu import bleu, self_bleu

    metrics: dict[str, float] = {}
    for order, scores in bleu(tokenized, corpus.test, orders=BLEU_ORDERS).items():
        metrics[f"bleu_{order}"] = float(np.mean(scores))
    for order, scores in self_bleu(tokenized, orders=BLEU_ORDERS).items():
        metrics[f"self_bleu_{order}"] = float(np.mean(scores))
    return metrics


def evaluate_variant(variant: Variant, corpus: Corpus, settings: EvalConfig, seed: int,
                     progress: Callable[[str], None] | None = None
                     ) -> tuple[dict[str, Any], list[dict[str, float]], list[str], dict]:
    """(metrics, curve, samples, timings) for a trained variant."""
    from bench.metrics.diversity import copy_rate, distinct_n

    note = progress or (lambda _: None)
    timings: dict[str, float] = {}
    eval_seed = 1_000_003 * (seed + 1)  # sampling RNG apart from training's
    num_samples = min(settings.num_samples, len(corpus.test))

    note("sampling")
    started = time.perf_counter()
    samples = [one_line(s) for s in variant.sample(num_samples, 1.0, eval_seed)]
    timings["sample_seconds"] = time.perf_counter() - started
    tokenized = corpus.tokenization.tokenize_all(samples)
    generated_tokens = sum(len(s) + 1 for s in tokenized)  # + EOS, as in training
    metrics: dict[str, Any] = {
        "num_samples": num_samples,
        "sample_tokens_per_s": generated_tokens / max(timings["sample_seconds"], 1e-9),
        "mean_length": float(np.mean([len(s) for s in tokenized])),
    }

    note("BLEU / Self-BLEU")
    started = time.perf_counter()
    metrics.update(text_metrics(tokenized, corpus))
    timings["bleu_seconds"] = time.perf_counter() - started

    for n in (1, 2, 3, 4):
        metrics[f"distinct_{n}"] = distinct_n(tokenized, n)
    metrics["copy_rate"] = copy_rate(tokenized, corpus.train)

    note("NLL")
    started = time.perf_counter()
    nll = variant.token_nll(corpus.test)
    if nll is not None:
        metrics["nll_test"] = nll.per_token
        metrics["nll_test_per_word"] = nll.per_word
    if corpus.oracle is not None:
        metrics["nll_oracle"] = corpus.oracle.nll(_oracle_ids(tokenized))
    timings["nll_seconds"] = time.perf_counter() - started

    if settings.reference_metrics:
        from bench.metrics.reference import rouge_l, sacrebleu_score

        note("sacrebleu / ROUGE-L")
        started = time.perf_counter()
        # Both split on blanks: give them evaluation-tokenized text on both sides.
        sample_text = [Tokenization.detokenize(s) for s in tokenized]
        sacre = sacrebleu_score(sample_text, corpus.test_text())
        metrics["sacrebleu"] = sacre["score"]
        metrics["sacrebleu_signature"] = sacre["signature"]
        metrics["rouge_l"] = rouge_l(sample_text, corpus.test_text())
        timings["reference_metrics_seconds"] = time.perf_counter() - started

    if settings.disc_acc:
        from bench.metrics.disc_acc import DiscAccSettings, disc_acc

        note("disc_acc")
        started = time.perf_counter()
        result = disc_acc(corpus.train, corpus.test, tokenized, seed=seed,
                          settings=DiscAccSettings(encoder=settings.disc_acc_encoder))
        metrics.update(result)
        timings["disc_acc_seconds"] = time.perf_counter() - started

    if settings.embedding_metrics:
        from bench.metrics.embeddings import embedding_metrics

        note("MiniLM embeddings")
        started = time.perf_counter()
        metrics.update(embedding_metrics(samples, corpus.test_text(), seed=seed))
        timings["embedding_metrics_seconds"] = time.perf_counter() - started

    curve = []
    started = time.perf_counter()
    for temperature in settings.temperatures:
        note(f"curve T={temperature:g}")
        n = min(settings.curve_samples, len(corpus.test))
        curve_tokens = corpus.tokenization.tokenize_all(
            variant.sample(n, temperature, eval_seed + 1))
        point = {"temperature": float(temperature)}
        text = text_metrics(curve_tokens, corpus)
        point["bleu_5"], point["self_bleu_5"] = text["bleu_5"], text["self_bleu_5"]
        if corpus.oracle is not None:  # METRICS.md: the (nll_oracle, nll_test) curve
            point["nll_oracle"] = corpus.oracle.nll(_oracle_ids(curve_tokens))
            curve_nll = variant.token_nll(corpus.test, temperature=temperature)
            if curve_nll is not None:
                point["nll_test"] = curve_nll.per_token
        curve.append(point)
    timings["curve_seconds"] = time.perf_counter() - started
    # The signature is a string: keep it out of the numeric metrics table.
    signature = metrics.pop("sacrebleu_signature", None)
    if signature is not None:
        timings["sacrebleu_signature"] = signature
    return metrics, curve, samples, timings
