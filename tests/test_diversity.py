import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.metrics.diversity import copy_rate, distinct_n


def test_distinct_n_counts_unique_over_all_ngrams_pooled_across_sentences():
    sentences = [["a", "dog", "runs"], ["a", "dog", "sits"]]
    assert distinct_n(sentences, 1) == 4 / 6  # a, dog, runs, sits
    assert distinct_n(sentences, 2) == 3 / 4  # (a, dog) twice
    assert distinct_n(sentences, 3) == 2 / 2


def test_distinct_n_never_joins_sentences_and_skips_short_ones():
    # ("b", "c") would be a bigram only if sentences were concatenated.
    assert distinct_n([["a", "b"], ["c"]], 2) == 1.0
    assert distinct_n([["a"], ["b"]], 2) == 0.0  # no bigram at all: defined as 0.0
    assert distinct_n([], 1) == 0.0
    with pytest.raises(ValueError):
        distinct_n([["a"]], 0)


@given(st.lists(st.lists(st.sampled_from("abc"), max_size=6), max_size=8),
       st.integers(min_value=1, max_value=4))
def test_distinct_n_is_a_share(sentences, n):
    value = distinct_n(sentences, n)
    assert 0.0 <= value <= 1.0
    if any(len(s) >= n for s in sentences):
        assert value > 0.0


def test_copy_rate_counts_verbatim_training_sentences_with_duplicates():
    train = [["a", "dog", "."], ["a", "cat", "."]]
    samples = [["a", "dog", "."], ["a", "dog", "."], ["a", "dog"], ["a", "bird", "."]]
    assert copy_rate(samples, train) == 2 / 4
    assert copy_rate([], train) == 0.0
    # A prefix or an extension of a training sentence is no copy; case counts.
    assert copy_rate([["a", "dog"], ["a", "dog", ".", "."], ["A", "dog", "."]], train) == 0.0


def test_copy_rate_on_coco_against_brute_force(coco):
    # 50 training sentences, 50 of them reversed, 100 test sentences (some of which coco's
    # train split holds too): the reference compares every sample with every training
    # sentence, list against list.
    samples = coco.train[:50] + [s[::-1] for s in coco.train[50:100]] + coco.test[:100]
    copied = sum(any(sample == sentence for sentence in coco.train) for sample in samples)
    assert copied >= 50
    assert copy_rate(samples, coco.train) == copied / len(samples)
