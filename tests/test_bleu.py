"""BLEU and Self-BLEU equal nltk's sentence_bleu (method1, cumulative weights) for every sentence.

nltk is the definition (METRICS.md): every test compares each sentence's score with nltk's to
1e-12, on random small-vocabulary corpora (where repeated n-grams, ties and degenerate lengths are
common) and on samples of the real corpora.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from bench.metrics.bleu import ReferenceTable, bleu, corpus_mean, self_bleu

ORDERS = (2, 3, 4, 5)
TOLERANCE = 1e-12
METHOD1 = SmoothingFunction().method1
# Small vocabularies make shared and repeated n-grams, equal lengths and full matches frequent.
TOKENS = st.sampled_from(["a", "b", "c", "d"])
SENTENCE = st.lists(TOKENS, min_size=0, max_size=9)
PROPERTY_SETTINGS = settings(max_examples=250, deadline=None, database=None)


def tokenize(line: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", line)


def read_tokenized(path, count: int) -> list[list[str]]:
    with open(path) as lines:
        return [tokenize(line) for _, line in zip(range(count), lines)]


def nltk_bleu(references, hypothesis, order: int) -> float:
    return sentence_bleu(references, hypothesis, weights=(1 / order,) * order,
                         smoothing_function=METHOD1)


def nltk_bleu_all_orders(references, hypothesis) -> dict[int, float]:
    # One nltk call with a list of weights counts the n-grams once; each score is the same
    # computation as a single-weights call (zip(weight, p_n) keeps the first n precisions).
    scores = sentence_bleu(references, hypothesis, weights=[(1 / n,) * n for n in ORDERS],
                           smoothing_function=METHOD1)
    return dict(zip(ORDERS, scores))


def assert_bleu_matches_nltk(hypotheses, references, scores, all_orders_at_once=False):
    for index, hypothesis in enumerate(hypotheses):
        if all_orders_at_once:
            expected = nltk_bleu_all_orders(references, hypothesis)
        else:
            expected = {n: nltk_bleu(references, hypothesis, n) for n in ORDERS}
        for order in ORDERS:
            assert abs(scores[order][index] - expected[order]) <= TOLERANCE, (
                f"BLEU-{order} of hypothesis {index} {hypothesis}: "
                f"{scores[order][index]!r} != nltk {expected[order]!r}")


def assert_self_bleu_matches_nltk(sentences, scores, all_orders_at_once=False):
    for index, hypothesis in enumerate(sentences):
        others = sentences[:index] + sentences[index + 1:]
        if all_orders_at_once:
            expected = nltk_bleu_all_orders(others, hypothesis)
        else:
            expected = {n: nltk_bleu(others, hypothesis, n) for n in ORDERS}
        for order in ORDERS:
            assert abs(scores[order][index] - expected[order]) <= TOLERANCE, (
                f"Self-BLEU-{order} of sentence {index} {hypothesis}: "
                f"{scores[order][index]!r} != nltk {expected[order]!r}")


@PROPERTY_SETTINGS
@given(hypotheses=st.lists(SENTENCE, max_size=6), references=st.lists(SENTENCE, min_size=1,
                                                                        max_size=6))
def test_bleu_equals_nltk_on_random_corpora(hypotheses, references):
    scores = bleu(hypotheses, references)
    assert sorted(scores) == list(ORDERS)
    assert all(values.shape == (len(hypotheses),) for values in scores.values())
    assert_bleu_matches_nltk(hypotheses, references, scores)


@PROPERTY_SETTINGS
@given(sentences=st.lists(SENTENCE, min_size=2, max_size=7), data=st.data())
def test_self_bleu_equals_nltk_on_random_corpora_with_duplicates(sentences, data):
    # Duplicates decide who holds an n-gram's top count, the case the top-two counts handle.
    copies = data.draw(st.lists(st.integers(0, len(sentences) - 1), max_size=3))
    sentences = sentences + [list(sentences[index]) for index in copies]
    assert_self_bleu_matches_nltk(sentences, self_bleu(sentences))


@PROPERTY_SETTINGS
@given(pair=st.lists(SENTENCE, min_size=2, max_size=2))
def test_self_bleu_of_two_sentences_scores_each_against_the_other(pair):
    scores = self_bleu(pair)
    assert_self_bleu_matches_nltk(pair, scores)
    for order in ORDERS:
        assert scores[order][0] == bleu([pair[0]], [pair[1]])[order][0]


def test_degenerate_hypotheses():
    references = [["a", "b", "c"], ["a", "b", "c", "d", "e"], ["b", "b"]]
    hypotheses = [
        [],  # empty: 0
        ["z", "y"],  # no unigram in any reference: 0
        ["a"],  # shorter than every order: method1's 0.1 / 1 for each missing order
        ["a", "b", "c", "d", "e", "a", "b", "c", "d", "e", "b"],  # longer than every reference
        ["b", "b", "b", "b"],  # a repeated n-gram, clipped at 2 (its count in ["b", "b"])
        ["a", "b", "c", "d"],  # length 4 between 3 and 5: the closer tie goes to 3
        ["a", "z", "c"],  # a token unknown to the references inside the sentence
    ]
    scores = bleu(hypotheses, references)
    assert_bleu_matches_nltk(hypotheses, references, scores)
    for order in ORDERS:
        assert scores[order][0] == 0.0 and scores[order][1] == 0.0


def test_identical_hypothesis_scores_one_and_all_references_empty_scores_zero():
    sentence = ["the", "cat", "sat", "on", "the", "mat"]
    assert all(values[0] == pytest.approx(1.0, abs=TOLERANCE)
               for values in bleu([sentence], [sentence, ["x"]]).values())
    scores = bleu([sentence, []], [[], []])
    assert_bleu_matches_nltk([sentence, []], [[], []], scores)
    assert all(not values.any() for values in scores.values())


def test_tokens_may_be_any_hashable():
    references = [[1, 2, 3, 4], [2, 3, 4, 5, 6]]
    hypotheses = [[1, 2, 3, 4, 5], [6, 5, 4]]
    assert_bleu_matches_nltk(hypotheses, references, bleu(hypotheses, references))
    assert_self_bleu_matches_nltk(references + hypotheses, self_bleu(references + hypotheses))


def test_self_bleu_of_fewer_than_two_sentences_is_an_error():
    # nltk fails on a hypothesis with no references; a lone sentence has no Self-BLEU.
    for sentences in ([], [["a", "b"]]):
        with pytest.raises(ValueError, match="at least two sentences"):
            self_bleu(sentences)


def test_bad_arguments():
    with pytest.raises(ValueError, match="reference"):
        bleu([["a"]], [])
    with pytest.raises(ValueError, match="orders"):
        bleu([["a"]], [["a"]], orders=())
    with pytest.raises(ValueError, match="orders"):
        bleu([["a"]], [["a"]], max_order=4, orders=(2, 5))
    with pytest.raises(ValueError, match="orders"):
        self_bleu([["a"], ["b"]], orders=(0, 2))


def test_no_hypotheses_gives_empty_scores():
    scores = bleu([], [["a", "b"]])
    assert sorted(scores) == list(ORDERS)
    assert all(values.shape == (0,) for values in scores.values())


def test_other_orders_and_a_reused_reference_table():
    references = [list("abcabcab"), list("bcaab"), list("ccc")]
    hypotheses = [list("abca"), list("cab"), list("ccccc"), list("b")]
    table = ReferenceTable(references, max_order=6)
    for order in (1, 3, 6):
        expected = [nltk_bleu(references, hypothesis, order) for hypothesis in hypotheses]
        got = table.score(hypotheses, orders=(order,))[order]
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    first = table.score(hypotheses)
    again = table.score(hypotheses)  # the table is not changed by scoring (unknown tokens)
    assert all(np.array_equal(first[n], again[n]) for n in ORDERS)
    assert corpus_mean(first) == {n: float(np.mean(first[n])) for n in ORDERS}


def test_coco_sample_equals_nltk_sentence_by_sentence(data_dir):
    hypotheses = read_tokenized(data_dir / "coco" / "train.txt", 300)
    references = read_tokenized(data_dir / "coco" / "test.txt", 300)
    assert_bleu_matches_nltk(hypotheses, references, bleu(hypotheses, references),
                             all_orders_at_once=True)
    sentences = hypotheses[:200]
    assert_self_bleu_matches_nltk(sentences, self_bleu(sentences), all_orders_at_once=True)


def test_news_sample_equals_nltk_sentence_by_sentence(data_dir):
    # news lines carry trailing blanks and long sentences: BP is rarely 1, 5-grams rarely match.
    hypotheses = read_tokenized(data_dir / "news" / "train.txt", 60)
    references = read_tokenized(data_dir / "news" / "test.txt", 300)
    assert_bleu_matches_nltk(hypotheses, references, bleu(hypotheses, references),
                             all_orders_at_once=True)
    sentences = references[:120]
    assert_self_bleu_matches_nltk(sentences, self_bleu(sentences), all_orders_at_once=True)
