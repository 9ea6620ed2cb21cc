import torch

from bench.oracle import ORACLE_SEED, Oracle

# Pinned: a changed oracle would silently change every oracle number in every table.
WEIGHTS_SHA256 = "ebca9a5c0f7d686155851b06f22a10f6e35f3134ff24fde1930292e02be7841f"
FIRST_TRAIN_SEQUENCES = [
    [3333, 321, 2666, 1906, 4794, 2069, 4392, 205, 285, 3324, 3270, 1366, 4755, 663, 4723, 4192,
     644, 2368, 4794, 1367],
    [733, 678, 4283, 4097, 407, 200, 4015, 3697, 1212, 952, 985, 17, 4827, 3342, 2601, 1666,
     4692, 4653, 3697, 2246],
]


def reference_cell(oracle: Oracle) -> torch.nn.LSTMCell:
    """torch's own LSTM cell (the same gate order i, f, g, o) holding the oracle's weights."""
    w = oracle.weights
    cell = torch.nn.LSTMCell(w.weight_ih.shape[1], w.weight_hh.shape[1]).double()
    with torch.no_grad():
        cell.weight_ih.copy_(w.weight_ih)
        cell.weight_hh.copy_(w.weight_hh)
        cell.bias_ih.copy_(w.bias)
        cell.bias_hh.zero_()
    return cell


def test_oracle_weights_and_sequences_are_pinned():
    oracle = Oracle()
    assert oracle.checksum() == WEIGHTS_SHA256
    # Sampled afresh (not read from the cache): the same on every machine.
    fresh = oracle.sample(2, seed=ORACLE_SEED + 1)
    assert fresh.tolist() == FIRST_TRAIN_SEQUENCES


def test_oracle_splits_sizes_and_cache(oracle_corpus, tmp_path):
    assert len(oracle_corpus.train) == 10_000 and len(oracle_corpus.test) == 5_000
    assert [int(t) for t in oracle_corpus.train[0]] == FIRST_TRAIN_SEQUENCES[0]
    assert all(len(s) == 20 for s in oracle_corpus.train[:100])


def test_nll_oracle_prefers_its_own_samples():
    oracle = Oracle()
    own = oracle.sample(200, seed=7).tolist()
    uniform = torch.randint(0, 5000, (200, 20), generator=torch.Generator().manual_seed(0))
    assert oracle.nll(own) < oracle.nll(uniform.tolist())
    # The definition against an independent reference: torch's own LSTM cell (same gate order
    # i, f, g, o) loaded with the oracle's weights, started from the start symbol's embedding
    # row (the last one), -log p of each of the 20 tokens, averaged over all tokens.
    w = oracle.weights
    cell = reference_cell(oracle)
    with torch.no_grad():
        total, count = 0.0, 0
        for sequence in own[:2]:
            state, previous = None, w.embedding.shape[0] - 1
            for token in sequence:
                state = cell(w.embedding[previous].unsqueeze(0), state)
                logits = state[0] @ w.weight_out.T + w.bias_out
                total -= torch.log_softmax(logits, dim=-1)[0, token].item()
                count += 1
                previous = token
    assert count == 40
    assert abs(oracle.nll(own[:2]) - total / count) < 1e-9


def test_nll_oracle_over_many_sequences_of_mixed_lengths_equals_a_step_by_step_reference():
    """More sequences than one head chunk, of lengths 1..20: nll averages -log p over every
    counted token, against torch's LSTMCell run in a batch with a whole log-softmax a step."""
    oracle = Oracle()
    lengths = [1 + i % 20 for i in range(300)]
    sequences = [s[:n] for s, n in zip(oracle.sample(300, seed=3).tolist(), lengths)]
    w = oracle.weights
    cell = reference_cell(oracle)
    with torch.no_grad():
        padded = torch.tensor([s + [0] * (20 - len(s)) for s in sequences])
        previous = torch.full((300,), w.embedding.shape[0] - 1)
        state, total = None, 0.0
        for t in range(20):
            state = cell(w.embedding[previous], state)
            log_probs = torch.log_softmax(state[0] @ w.weight_out.T + w.bias_out, dim=-1)
            counted = torch.tensor([t < n for n in lengths])
            total -= float(log_probs.gather(1, padded[:, t, None]).squeeze(1)[counted].sum())
            previous = padded[:, t]
    assert sum(lengths) > oracle.NLL_CHUNK_ROWS
    assert abs(oracle.nll(sequences) - total / sum(lengths)) < 1e-9


def test_recurrence_matches_a_step_worked_by_hand():
    """SeqGAN's row-vector recurrence on tiny weights, one step computed with plain numbers."""
    import math

    from bench.oracle import Oracle, weights_from_seqgan

    e, h = 1, 1  # one-dimensional embedding and state: every gate is a scalar (values exact in
    # float32, which the weight files hold)
    params = {
        "embedding": torch.tensor([[0.5], [-1.0], [2.0]]),  # 3 tokens; token 0 is the start
        "wi": torch.tensor([[1.0]]), "ui": torch.tensor([[0.0]]), "bi": torch.tensor([0.0]),
        "wf": torch.tensor([[2.0]]), "uf": torch.tensor([[0.0]]), "bf": torch.tensor([1.0]),
        "wog": torch.tensor([[-1.0]]), "uog": torch.tensor([[0.0]]), "bog": torch.tensor([0.5]),
        "wc": torch.tensor([[3.0]]), "uc": torch.tensor([[0.0]]), "bc": torch.tensor([0.0]),
        "wo": torch.tensor([[1.0, -2.0, 0.5]]), "bo": torch.tensor([0.0, 0.125, 0.25]),
    }
    assert params["wi"].shape == (e, h)
    oracle = Oracle(weights=weights_from_seqgan(params), start_index=0, sequence_length=1)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    x = 0.5  # embedding[0], the start input; h_0 = c_0 = 0
    i, f, o, cand = sig(1.0 * x), sig(2.0 * x + 1.0), sig(-1.0 * x + 0.5), math.tanh(3.0 * x)
    c = f * 0.0 + i * cand
    hidden = o * math.tanh(c)
    logits = [hidden * 1.0 + 0.0, hidden * -2.0 + 0.125, hidden * 0.5 + 0.25]
    log_z = math.log(sum(math.exp(v) for v in logits))
    for token in range(3):
        assert abs(oracle.nll([[token]]) - (log_z - logits[token])) < 1e-12


def test_seqgan_oracle_scores_its_samples_as_published(data_dir):
    """SeqGAN's oracle: about 5.74 nats per token on its own samples (../shared/data/README.md),
    about 11.4 on uniformly random tokens; splits of 10,000 and 10,000 sequences of 20 tokens."""
    from bench.corpora import load_corpus

    corpus = load_corpus("seqgan_oracle", data_dir)
    assert len(corpus.train) == 10_000 and len(corpus.test) == 10_000
    assert all(len(s) == 20 for s in corpus.train[:200] + corpus.test[:200])
    own = [[int(t) for t in s] for s in corpus.test[:2000]]
    assert abs(corpus.oracle.nll(own) - 5.74) < 0.05
    uniform = torch.randint(0, 5000, (2000, 20), generator=torch.Generator().manual_seed(0))
    assert abs(corpus.oracle.nll(uniform.tolist()) - 11.4) < 0.2
    # Fixed splits: train and test are different draws.
    assert corpus.train[0] != corpus.test[0]


def test_seqgan_oracle_refuses_a_tampered_weight_file(data_dir, tmp_path):
    import shutil

    import pytest

    from bench.corpora import load_corpus
    from bench.errors import GanbenchError

    folder = tmp_path / "seqgan_oracle"
    shutil.copytree(data_dir / "seqgan_oracle", folder)
    raw = bytearray((folder / "bo.npz").read_bytes())
    raw[-1] ^= 0xFF
    (folder / "bo.npz").write_bytes(bytes(raw))
    with pytest.raises(GanbenchError, match="sha256"):
        load_corpus("seqgan_oracle", tmp_path, download=False)
