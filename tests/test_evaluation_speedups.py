"""Evaluation made cheaper computes what the straightforward version computed.

Each reference below is the code as it was before the speed-ups (decoding every row until the
longest ends, one NLL pass per temperature), kept here to compare against.
"""

import pytest
import torch

from baselines.mle_lstm import generator_nll
from baselines.primitives import generation, hf
from baselines.primitives.kv_decoding import ModelCacheStepper
from baselines.primitives.lstm import LSTMGenerator
from baselines.primitives.sampling import draw_categorical
from baselines.primitives.sequences import encode
from bench.text import BOS, EOS, PAD, UNK


@torch.no_grad()
def lstm_sample_reference(model, n, max_length, temperature, generator):
    """Every row decoded until all have ended (finished rows fed PAD and kept)."""
    tokens = torch.full((n, 1), BOS, dtype=torch.long)
    out = torch.full((n, max_length + 1), PAD, dtype=torch.long)
    finished = torch.zeros(n, dtype=torch.bool)
    state = None
    for t in range(max_length + 1):
        logits, state = model(tokens, state)
        logits = logits[:, -1].float()
        logits[:, [PAD, BOS, UNK]] = -float("inf")
        if t == max_length:
            next_token = torch.full((n,), EOS, dtype=torch.long)
        else:
            next_token = draw_categorical(torch.softmax(logits / temperature, dim=-1),
                                          generator)
        next_token = torch.where(finished, torch.full_like(next_token, PAD), next_token)
        out[:, t] = next_token
        finished |= next_token == EOS
        if bool(finished.all()):
            break
        tokens = next_token.unsqueeze(1)
    return out


@pytest.mark.parametrize("fixed_rows", [False, True])
@pytest.mark.parametrize("temperature,max_length,eos_bias", [
    (0.7, 8, 1.5), (1.0, 8, 1.5), (1.5, 8, 1.5), (1.0, 40, 3.0)])
def test_lstm_sampling_draws_what_full_batch_decoding_drew(temperature, max_length, eos_bias,
                                                           fixed_rows):
    """Both decoders (ended rows dropped; every row to the end, with a device check every 8
    tokens) against the reference. With the strong EOS every row ends long before the cap, so
    the fixed-row decoder stops at a check."""
    torch.manual_seed(0)
    model = LSTMGenerator(12, 8, 16).eval()
    with torch.no_grad():  # a likely EOS, so that rows end at many different steps
        model.output.bias[EOS] += eos_bias
    expected = lstm_sample_reference(model, 300, max_length, temperature,
                                     torch.Generator().manual_seed(4))
    got = model.sample(300, max_length, temperature, torch.Generator().manual_seed(4),
                       fixed_rows=fixed_rows)
    lengths = (expected != PAD).sum(dim=1)
    assert lengths.min() < 4  # short rows
    assert (lengths.max() == max_length + 1) == (max_length == 8)  # rows at the cap, or none
    assert torch.equal(got, expected)


@torch.no_grad()
def gpt2_sample_reference(model, prompts, max_new_tokens, eos_id, temperature, generator):
    """Every row fed through the model's own cache until all have ended."""
    n = prompts.shape[0]
    tokens = torch.full((n, max_new_tokens + 1), eos_id, dtype=torch.long)
    finished = torch.zeros(n, dtype=torch.bool)
    lengths = torch.full((n,), max_new_tokens + 1, dtype=torch.long)
    from baselines.primitives.kv_decoding import cache_argument

    argument = cache_argument(model)  # transformers' own name for its cache, old or new
    step_input, cache = prompts, None
    for step in range(max_new_tokens + 1):
        if step == max_new_tokens:
            next_token = torch.full((n,), eos_id, dtype=torch.long)
        else:
            output = model(input_ids=step_input, use_cache=True, **{argument: cache})
            cache = getattr(output, argument)
            probs = torch.softmax(output.logits[:, -1].float() / temperature, dim=-1)
            next_token = draw_categorical(probs, generator)
        next_token = next_token.masked_fill(finished, eos_id)
        tokens[:, step] = next_token
        just_ended = (next_token == eos_id) & ~finished
        lengths = torch.where(just_ended, torch.full_like(lengths, step + 1), lengths)
        finished |= just_ended
        if bool(finished.all()):
            break
        step_input = next_token.unsqueeze(1)
    width = int(lengths.max())
    return tokens[:, :width], torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)


@pytest.mark.parametrize("stepper", ["static", "model_cache", "fixed_shape"])
def test_gpt2_sampling_draws_what_full_batch_decoding_drew(stepper, monkeypatch):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    eos = 0
    model = GPT2LMHeadModel(GPT2Config(vocab_size=20, n_positions=32, n_embd=16, n_layer=2,
                                       n_head=2, bos_token_id=eos, eos_token_id=eos)).eval()
    with torch.no_grad():
        model.lm_head.weight[eos] += 0.3  # rows end at many different steps
    if stepper == "model_cache":
        monkeypatch.setattr(generation, "next_token_stepper",
                            lambda m, n, length, fixed_shape: ModelCacheStepper(m))
    prompts = torch.tensor([[eos, 5]] * 64)
    expected_tokens, expected_mask = gpt2_sample_reference(
        model, prompts, 20, eos, 1.0, torch.Generator().manual_seed(2))
    got = generation.sample_tokens(model, prompts, 20, eos, 1.0, torch.Generator().manual_seed(2),
                                   fixed_shape=stepper == "fixed_shape")
    lengths = expected_mask.sum(dim=1)
    assert lengths.min() < 5 and lengths.max() > 12
    assert torch.equal(got.tokens, expected_tokens)
    assert torch.equal(got.mask, expected_mask)


def test_lstm_nll_at_every_temperature_from_one_pass_equals_one_pass_each(coco):
    from bench.corpora import Corpus

    corpus = Corpus("tiny", coco.train[:200], coco.test[:150], coco.tokenization)
    torch.manual_seed(0)
    model = LSTMGenerator(len(corpus.vocab), 8, 16).eval()
    temperatures = (1.0, 0.7, 1.3)
    got = generator_nll(model, corpus, corpus.test, temperatures)
    for temperature, result in zip(temperatures, got):
        # Reference: all test sentences in one batch, at this temperature alone.
        longest = max(len(s) for s in corpus.test)
        batch = encode(corpus.vocab, corpus.test, longest)
        with torch.no_grad():
            logits, _ = model(batch.inputs)
            log_probs = torch.log_softmax(logits.double() / temperature, dim=-1)
            picked = log_probs.gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1)
        expected = -float((picked * (batch.targets != PAD)).sum())
        assert result.total_nats == pytest.approx(expected, rel=1e-5)
        assert result.num_tokens == sum(len(s) + 1 for s in corpus.test)


def test_gpt2_nll_at_every_temperature_from_one_pass_equals_the_full_forward(monkeypatch):
    """nll_sums (one transformer pass, the head in chunks of a vocabulary padded to 32 ids)
    against log-softmax of the model's own forward in float64 at each temperature; with
    windows shorter than the batch, against windowed_token_log_probs at each temperature."""
    monkeypatch.setattr(hf, "NLL_HEAD_CHUNK_ROWS", 16)  # several chunks, a partial one last
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=30, n_positions=32, n_embd=16, n_layer=2,
                                       n_head=2, bos_token_id=0, eos_token_id=0)).eval()
    inputs = torch.randint(1, 30, (6, 14))
    targets = torch.randint(1, 30, (6, 14))
    mask = torch.arange(14).unsqueeze(0) < torch.tensor([[14], [3], [9], [1], [12], [7]])
    batch = hf.TokenBatch(inputs, targets, mask)
    temperatures = (1.0, 0.7, 1.3)
    with torch.no_grad():
        logits = model(input_ids=inputs).logits.double()
    for temperature, got in zip(temperatures, map(float, hf.nll_sums(model, batch, 32,
                                                                     temperatures))):
        picked = torch.log_softmax(logits / temperature, -1).gather(
            -1, targets.unsqueeze(-1)).squeeze(-1)
        assert got == pytest.approx(-float(picked[mask].sum()), rel=1e-6)
    for temperature, got in zip(temperatures, map(float, hf.nll_sums(model, batch, 6,
                                                                     temperatures))):
        expected = -float(hf.windowed_token_log_probs(model, batch, 6, temperature).sum())
        assert got == pytest.approx(expected, rel=1e-6)
