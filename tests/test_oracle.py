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
    cell = torch.nn.LSTMCell(w.weight_ih.shape[1], w.weight_hh.shape[1]).double()
    with torch.no_grad():
        cell.weight_ih.copy_(w.weight_ih)
        cell.weight_hh.copy_(w.weight_hh)
        cell.bias_ih.copy_(w.bias)
        cell.bias_hh.zero_()
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
