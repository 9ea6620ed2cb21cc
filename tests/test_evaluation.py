"""evaluate_variant: OOV rate and in-vocabulary NLL per word on hand-worked numbers; the curve
on the table's N, reusing the T = 1 samples; progress lines."""

import io

import pytest

from bench.corpora import Corpus
from bench.evaluation import EvalConfig, evaluate_variant, nll_metrics, status_lines
from bench.text import Tokenization
from bench.variant import NLLResult

TOKENS = Tokenization(lowercase=True)
TRAIN = [["a", "b"], ["b", "c"]]
# 7 test tokens, of which "d" and "e" are out of the training vocabulary: oov_rate 2 / 7.
TEST = [["a", "b"], ["a", "d"], ["c"], ["e", "b"]]


class PricedTokens:
    """A fake variant: each in-vocabulary token and each EOS costs 1 nat, an unknown one 10;
    at temperature T every cost is multiplied by T (enough to tell temperatures apart)."""

    def __init__(self, vocab):
        self.vocab, self.sampled = vocab, []

    def token_nll(self, sentences, temperature=1.0):
        nats = sum(1 + sum(1 if t in self.vocab.index else 10 for t in s) for s in sentences)
        tokens = sum(len(s) + 1 for s in sentences)
        return NLLResult(temperature * nats, tokens, tokens)

    def token_nll_temperatures(self, sentences, temperatures):
        return [self.token_nll(sentences, t) for t in temperatures]

    def sample(self, n, temperature, seed):
        self.sampled.append((n, temperature))
        return [" ".join(TRAIN[i % 2]) for i in range(n)]


def test_oov_rate_and_in_vocabulary_nll_per_word_by_hand():
    corpus = Corpus("hand", TRAIN, TEST, TOKENS)
    metrics, by_temperature = nll_metrics(PricedTokens(corpus.vocab), corpus, (0.5,))
    assert metrics["oov_rate"] == pytest.approx(2 / 7)
    # All test sentences: nats 3 + 12 + 2 + 12 = 29 over 3 + 3 + 2 + 3 = 11 tokens.
    assert metrics["nll_test"] == pytest.approx(29 / 11)
    assert metrics["nll_test_per_word"] == pytest.approx(29 / 11)
    # In-vocabulary sentences "a b" and "c": 3 + 2 nats over 3 + 2 words (EOS included).
    assert metrics["nll_test_iv_per_word"] == pytest.approx(1.0)
    assert by_temperature == {1.0: pytest.approx(29 / 11), 0.5: pytest.approx(29 / 22)}


def test_oov_rate_without_likelihoods():
    class NoLikelihood(PricedTokens):
        def token_nll_temperatures(self, sentences, temperatures):
            return None

    corpus = Corpus("hand", TRAIN, TEST, TOKENS)
    metrics, by_temperature = nll_metrics(NoLikelihood(corpus.vocab), corpus, ())
    assert metrics == {"oov_rate": pytest.approx(2 / 7)} and by_temperature == {}


def test_curve_uses_the_table_n_and_reuses_its_samples():
    corpus = Corpus("hand", TRAIN * 10, TEST * 5, TOKENS)
    variant = PricedTokens(corpus.vocab)
    settings = EvalConfig(num_samples=12, temperatures=(0.5, 1.0), disc_acc=False,
                          reference_metrics=False,
                          embedding_metrics=False)
    lines = io.StringIO()
    metrics, curve, _, _ = evaluate_variant(variant, corpus, settings, seed=0,
                                            progress=status_lines(lines))
    assert variant.sampled == [(12, 1.0), (12, 0.5)]  # T = 1 is never sampled twice
    assert [point["num_samples"] for point in curve] == [12, 12]
    assert curve[1]["self_bleu_5"] == metrics["self_bleu_5"]
    assert "nll_test" not in curve[1]  # only the oracle's curve plots nll_test
    assert metrics["oov_rate"] == pytest.approx(2 / 7)
    phases = [line.split(": ", 1)[1] for line in lines.getvalue().splitlines()]
    assert phases == ["sampling", "BLEU / Self-BLEU", "NLL", "curve T=0.5", "curve T=1"]


def test_curve_with_its_own_n_labels_its_points():
    corpus = Corpus("hand", TRAIN * 10, TEST * 5, TOKENS)
    variant = PricedTokens(corpus.vocab)
    settings = EvalConfig(num_samples=12, curve_samples=6, temperatures=(1.0,),
                          disc_acc=False, reference_metrics=False,
                          embedding_metrics=False)
    _, curve, _, _ = evaluate_variant(variant, corpus, settings, seed=0)
    assert variant.sampled == [(12, 1.0), (6, 1.0)]
    assert curve[0]["num_samples"] == 6


def reference_lstm_nll(generator, corpus, sentences, temperatures):
    """{T: (nats per token, mean T = 1 probability of PAD/BOS/UNK)} by stepping an LSTMCell."""
    import torch

    from bench.text import BOS, EOS, PAD, UNK

    lstm = generator.lstm
    cell = torch.nn.LSTMCell(lstm.input_size, lstm.hidden_size).double()
    with torch.no_grad():
        cell.weight_ih.copy_(lstm.weight_ih_l0)
        cell.weight_hh.copy_(lstm.weight_hh_l0)
        cell.bias_ih.copy_(lstm.bias_ih_l0)
        cell.bias_hh.copy_(lstm.bias_hh_l0)
    embedding = generator.embedding.weight.double()
    out_w, out_b = generator.output.weight.double(), generator.output.bias.double()
    totals, masked, count = dict.fromkeys(temperatures, 0.0), 0.0, 0
    with torch.no_grad():
        for sentence in sentences:
            ids = corpus.vocab.encode(sentence)
            h = c = torch.zeros(1, lstm.hidden_size, dtype=torch.float64)
            for x, y in zip([BOS, *ids], [*ids, EOS]):
                h, c = cell(embedding[x].unsqueeze(0), (h, c))
                logits = (h @ out_w.T + out_b)[0]
                for t in temperatures:
                    totals[t] -= float(torch.log_softmax(logits / t, dim=0)[y])
                masked += float(torch.softmax(logits, dim=0)[[PAD, BOS, UNK]].sum())
                count += 1
    return {t: (totals[t] / count, masked / count) for t in temperatures}


def test_oracle_curve_nll_per_temperature_from_the_nll_phase(oracle_corpus):
    import torch

    from baselines.mle_lstm import MLELSTM, MLELSTMConfig

    corpus = Corpus("oracle_small", oracle_corpus.train[:200], oracle_corpus.test[:100],
                    Tokenization(), oracle=oracle_corpus.oracle)
    variant = MLELSTM(MLELSTMConfig(embedding_dim=8, hidden_dim=8), corpus,
                      torch.device("cpu"), seed=0)
    settings = EvalConfig(num_samples=20, temperatures=(0.5, 1.0), disc_acc=False,
                          reference_metrics=False,
                          embedding_metrics=False)
    metrics, curve, _, _ = evaluate_variant(variant, corpus, settings, seed=0)
    # Against an independent reference: the same weights stepped sentence by sentence in
    # float64 through torch's own LSTMCell, a whole log-softmax of logits / T per position.
    reference = reference_lstm_nll(variant.generator, corpus, corpus.test, (0.5, 1.0))
    assert curve[0]["nll_test"] == pytest.approx(reference[0.5][0], rel=1e-6)
    assert curve[1]["nll_test"] == metrics["nll_test"]
    assert metrics["nll_test"] == pytest.approx(reference[1.0][0], rel=1e-6)
    # The mass the sampler removes (PAD, BOS, UNK) at T = 1, per test position.
    assert metrics["nll_test_masked_mass"] == pytest.approx(reference[1.0][1], rel=1e-5)
    seen = {token for sentence in corpus.train for token in sentence}
    test_tokens = [token for sentence in corpus.test for token in sentence]
    unseen = sum(token not in seen for token in test_tokens)  # 200 training rows: many
    assert metrics["oov_rate"] == pytest.approx(unseen / len(test_tokens))
    assert curve[1]["nll_oracle"] == metrics["nll_oracle"]
