"""Speed of BLEU and Self-BLEU against nltk (the definition) and fast-bleu (C++).

Each group times ours and a reference on the same input; ``extra_info`` names the pair and role
so that ``python -m bench.regression`` tracks the ratio ours / reference. nltk costs O(N * M)
(about 0.2 s per news hypothesis against 2,000 references), so it gets a small subset and few
rounds (three: the regression check takes each side's fastest round, and a single round of the
reference would carry whatever else the machine was doing into the ratio). fast-bleu is timed
on the full 10k x 10k news input, marked slow, and only when installed.
"""

from __future__ import annotations

import re
import time

import pytest

from bench.metrics.bleu import DEFAULT_ORDERS, bleu, self_bleu

NLTK_HYPOTHESES = 50  # x NLTK_REFERENCES: about 5 s of nltk
NLTK_REFERENCES = 2_000
NLTK_SELF_BLEU_SENTENCES = 150  # about 2.5 s of nltk
FULL_SIZE = 10_000
NLTK_ROUNDS = 3


def read_tokenized(path, count: int) -> list[list[str]]:
    with open(path) as lines:
        return [re.findall(r"\w+|[^\w\s]", line) for _, line in zip(range(count), lines)]


@pytest.fixture(scope="module")
def news_hypotheses(data_dir):
    return read_tokenized(data_dir / "news" / "train.txt", FULL_SIZE)


@pytest.fixture(scope="module")
def news_references(data_dir):
    return read_tokenized(data_dir / "news" / "test.txt", FULL_SIZE)


def nltk_all_orders(hypotheses, references_of):
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    weights = [(1 / n,) * n for n in DEFAULT_ORDERS]  # one call counts n-grams once, as ours
    smoothing = SmoothingFunction().method1
    return [sentence_bleu(references_of(index), hypothesis, weights=weights,
                          smoothing_function=smoothing)
            for index, hypothesis in enumerate(hypotheses)]


def record_ratio(benchmark, pair: str, ours) -> None:
    """The reference's test also times ours once more, so one test shows the ratio."""
    benchmark.extra_info.update({"pair": pair, "role": "ref"})
    if benchmark.stats is None:  # benchmarks disabled (e.g. under xdist): nothing to compare
        return
    started = time.perf_counter()
    ours()
    ours_seconds = time.perf_counter() - started
    benchmark.extra_info["ours_seconds"] = ours_seconds
    benchmark.extra_info["ours_over_ref"] = ours_seconds / benchmark.stats.stats.median


@pytest.mark.benchmark(group="bleu-vs-nltk")
def test_bleu_ours_on_nltk_subset(benchmark, news_hypotheses, news_references):
    hypotheses = news_hypotheses[:NLTK_HYPOTHESES]
    references = news_references[:NLTK_REFERENCES]
    benchmark.extra_info.update({"pair": "bleu_vs_nltk", "role": "ours"})
    scores = benchmark(bleu, hypotheses, references)
    assert scores[5].shape == (NLTK_HYPOTHESES,)


@pytest.mark.benchmark(group="bleu-vs-nltk")
def test_bleu_nltk_on_subset(benchmark, news_hypotheses, news_references):
    pytest.importorskip("nltk")
    hypotheses = news_hypotheses[:NLTK_HYPOTHESES]
    references = news_references[:NLTK_REFERENCES]
    benchmark.pedantic(nltk_all_orders, args=(hypotheses, lambda _: references),
                       rounds=NLTK_ROUNDS, iterations=1)
    record_ratio(benchmark, "bleu_vs_nltk", lambda: bleu(hypotheses, references))


@pytest.mark.benchmark(group="self-bleu-vs-nltk")
def test_self_bleu_ours_on_nltk_subset(benchmark, news_hypotheses):
    sentences = news_hypotheses[:NLTK_SELF_BLEU_SENTENCES]
    benchmark.extra_info.update({"pair": "self_bleu_vs_nltk", "role": "ours"})
    scores = benchmark(self_bleu, sentences)
    assert scores[5].shape == (NLTK_SELF_BLEU_SENTENCES,)


@pytest.mark.benchmark(group="self-bleu-vs-nltk")
def test_self_bleu_nltk_on_subset(benchmark, news_hypotheses):
    pytest.importorskip("nltk")
    sentences = news_hypotheses[:NLTK_SELF_BLEU_SENTENCES]

    def others(index):
        return sentences[:index] + sentences[index + 1:]

    benchmark.pedantic(nltk_all_orders, args=(sentences, others), rounds=NLTK_ROUNDS,
                       iterations=1)
    record_ratio(benchmark, "self_bleu_vs_nltk", lambda: self_bleu(sentences))


@pytest.mark.slow
@pytest.mark.benchmark(group="bleu-10k-vs-fast-bleu")
def test_bleu_ours_full_news(benchmark, news_hypotheses, news_references):
    benchmark.extra_info.update({"pair": "bleu_vs_fast_bleu", "role": "ours"})
    scores = benchmark.pedantic(bleu, args=(news_hypotheses, news_references), rounds=3)
    assert scores[5].shape == (FULL_SIZE,)


@pytest.mark.slow
@pytest.mark.benchmark(group="bleu-10k-vs-fast-bleu")
def test_bleu_fast_bleu_full_news(benchmark, news_hypotheses, news_references):
    fast_bleu = pytest.importorskip("fast_bleu")
    weights = {n: (1 / n,) * n for n in DEFAULT_ORDERS}

    def run():
        return fast_bleu.BLEU(news_references, weights).get_score(news_hypotheses)

    benchmark.pedantic(run, rounds=1, iterations=1)
    record_ratio(benchmark, "bleu_vs_fast_bleu", lambda: bleu(news_hypotheses, news_references))


@pytest.mark.slow
@pytest.mark.benchmark(group="self-bleu-10k-vs-fast-bleu")
def test_self_bleu_ours_full_news(benchmark, news_hypotheses):
    benchmark.extra_info.update({"pair": "self_bleu_vs_fast_bleu", "role": "ours"})
    scores = benchmark.pedantic(self_bleu, args=(news_hypotheses,), rounds=3)
    assert scores[5].shape == (FULL_SIZE,)


@pytest.mark.slow
@pytest.mark.benchmark(group="self-bleu-10k-vs-fast-bleu")
def test_self_bleu_fast_bleu_full_news(benchmark, news_hypotheses):
    fast_bleu = pytest.importorskip("fast_bleu")
    weights = {n: (1 / n,) * n for n in DEFAULT_ORDERS}

    def run():
        return fast_bleu.SelfBLEU(news_hypotheses, weights).get_score()

    benchmark.pedantic(run, rounds=1, iterations=1)
    record_ratio(benchmark, "self_bleu_vs_fast_bleu", lambda: self_bleu(news_hypotheses))
