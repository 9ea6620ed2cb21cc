"""No compute on padding: the trimmed, counted-positions-only computations equal the plain
full-width ones (losses, logits and gradients, up to float rounding)."""

import pytest
import torch
import torch.nn.functional as F

from baselines.primitives.discriminators import CNNDiscriminator, LSTMDiscriminator
from baselines.primitives.lstm import LSTMGenerator
from baselines.primitives.sequences import trim_padding
from bench.text import BOS, EOS, PAD


def padded_batch(lengths: list[int], width: int, vocab: int, seed: int = 0):
    """(inputs, targets) [N, width] in the encode() layout for sentences of these lengths."""
    rng = torch.Generator().manual_seed(seed)
    inputs = torch.full((len(lengths), width), PAD)
    targets = torch.full((len(lengths), width), PAD)
    for row, length in enumerate(lengths):
        ids = torch.randint(4, vocab, (length,), generator=rng)
        inputs[row, 0] = BOS
        inputs[row, 1 : length + 1] = ids
        targets[row, :length] = ids
        targets[row, length] = EOS
    return inputs, targets


def full_width_nll(generator: LSTMGenerator, inputs, targets):
    """The plain computation: logits at every position, padding ignored by the loss."""
    logits, _ = generator(inputs)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD)


def gradients(module, loss):
    module.zero_grad()
    loss.backward()
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


# host_lengths: each row's counted targets given from the host (as the training steps do,
# reading nothing from the device), or found from the targets.
@pytest.mark.parametrize("host_lengths", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
def test_lstm_nll_loss_and_gradients_equal_the_full_width_computation(layers, host_lengths):
    torch.manual_seed(0)
    generator = LSTMGenerator(60, 8, 12, num_layers=layers)
    # Width 15 (a corpus cap) while the longest sentence of the batch has 6 tokens: 3 + 6 + 1
    # + 5 + 2 tokens and an EOS each.
    inputs, targets = padded_batch([3, 6, 1, 5, 2], width=15, vocab=60)
    lengths = torch.tensor([4, 7, 2, 6, 3]) if host_lengths else None
    expected = full_width_nll(generator, inputs, targets)
    expected_grads = gradients(generator, expected)
    loss = generator.nll_loss(inputs, targets, lengths)
    grads = gradients(generator, loss)
    assert torch.allclose(loss, expected, atol=1e-6, rtol=1e-6)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        assert torch.allclose(grad, expected_grads[name], atol=1e-6, rtol=1e-5), name
    # Only the counted positions were projected: 3 + 6 + 1 + 5 + 2 tokens and 5 EOS.
    logits, counted = generator.counted_logits(inputs, targets, lengths)
    assert logits.shape == (22, 60) and torch.equal(counted, targets[targets != PAD])


def full_width_cnn(discriminator: CNNDiscriminator, tokens):
    """SeqGAN's CNN written plainly: pad to the widest filter, every window, max over time."""
    shortfall = max(discriminator.filter_sizes) - tokens.shape[1]
    if shortfall > 0:
        tokens = F.pad(tokens, (0, shortfall), value=PAD)
    embedded = discriminator.embedding(tokens).transpose(1, 2)
    pooled = torch.cat([torch.relu(conv(embedded)).amax(dim=2)
                        for conv in discriminator.convolutions], dim=1)
    return discriminator.output(discriminator.highway(pooled)).squeeze(1)


def cnn_discriminator(vocab: int = 40) -> CNNDiscriminator:
    torch.manual_seed(3)
    discriminator = CNNDiscriminator(vocab, 6, [1, 2, 4], [5, 4, 3], dropout=0.0)
    with torch.no_grad():  # biases of both signs: padding windows win some maxima, not all
        for conv in discriminator.convolutions:
            conv.bias.copy_(torch.linspace(-0.3, 0.6, conv.out_channels))
    return discriminator


@pytest.mark.parametrize("width, lengths", [(12, [2, 5, 1, 3]), (3, [1, 2, 0]),
                                            (7, [6, 6, 6])])
def test_cnn_logits_and_gradients_equal_the_full_width_computation(width, lengths):
    discriminator = cnn_discriminator()
    _, tokens = padded_batch(lengths, width, 40, seed=1)
    expected = full_width_cnn(discriminator, tokens)
    weights = torch.linspace(-1, 1, len(lengths))
    expected_grads = gradients(discriminator, (expected * weights).sum())
    logits = discriminator(tokens)
    grads = gradients(discriminator, (logits * weights).sum())
    assert torch.allclose(logits, expected, atol=1e-6)
    for name, grad in expected_grads.items():
        assert torch.allclose(grads[name], grad, atol=1e-6), name
    # The padding windows are in play: cutting the batch to its longest member (without the
    # padding window standing for the cut windows) gives other logits.
    if width > max(lengths) + 4:
        assert not torch.allclose(full_width_cnn(discriminator, tokens[:, : max(lengths) + 1]),
                                  expected, atol=1e-4)


def test_completion_scorer_equals_the_forward_pass_on_every_completion():
    discriminator = cnn_discriminator().eval()
    width = 9
    _, sequences = padded_batch([8, 8, 5], width, 40, seed=2)
    scorer = discriminator.completion_scorer(sequences)
    rng = torch.Generator().manual_seed(4)
    for prefix_length in range(1, 6):
        sentence = torch.tensor([0, 0, 1, 2, 1])
        completions = torch.full((5, width), PAD)
        completions[:, :prefix_length] = sequences[sentence, :prefix_length]
        for row, end in enumerate([prefix_length, width - 1, prefix_length + 1, 7, width - 1]):
            completions[row, prefix_length:end] = torch.randint(4, 40, (end - prefix_length,),
                                                                generator=rng)
            completions[row, end] = EOS
        expected = full_width_cnn(discriminator, completions)
        assert torch.allclose(scorer(completions, sentence, prefix_length), expected,
                              atol=1e-6), prefix_length
    assert scorer.multiply_adds > 0


def test_lstm_discriminator_scores_unchanged_by_trimming():
    torch.manual_seed(0)
    discriminator = LSTMDiscriminator(40, 6, 8)
    _, tokens = padded_batch([2, 5, 1], 12, 40)
    trimmed = trim_padding(tokens)
    assert trimmed.shape == (3, 6)
    assert torch.allclose(LSTMDiscriminator.sequence_logits(discriminator(trimmed), trimmed),
                          LSTMDiscriminator.sequence_logits(discriminator(tokens), tokens),
                          atol=1e-6)


def test_gpt2_token_log_probs_and_gradients_equal_the_full_vocabulary_projection():
    from baselines.primitives import hf, hf_models
    from baselines.primitives.hf_policy import masked_token_log_probs

    torch.manual_seed(0)
    model = hf_models.build_gpt2(50, n_layer=1, n_embd=16, n_head=2, n_positions=16, dropout=0.0,
                                 end_of_text_id=0)
    inputs = torch.randint(1, 50, (3, 7))
    targets = torch.randint(1, 50, (3, 7))
    mask = torch.arange(7).unsqueeze(0) <= torch.tensor([[2], [6], [0]])
    batch = hf.TokenBatch(inputs, targets, mask)
    expected = masked_token_log_probs(model(input_ids=inputs).logits, targets, mask, 0.7)
    expected_grads = gradients(model, expected.sum())
    log_probs = hf.token_log_probs(model, batch, temperature=0.7)
    grads = gradients(model, log_probs.sum())
    assert torch.allclose(log_probs, expected, atol=1e-5)
    assert torch.all(log_probs[~mask] == 0)
    for name, grad in expected_grads.items():
        assert torch.allclose(grads[name], grad, atol=1e-5), name


def test_in_place_cross_entropy_equals_torch_cross_entropy():
    from baselines.primitives.lstm import cross_entropy_consuming_logits

    torch.manual_seed(0)
    weight = torch.randn(30, 8, requires_grad=True)
    hidden = torch.randn(11, 8)
    targets = torch.randint(0, 30, (11,))
    expected = F.cross_entropy(hidden @ weight.t(), targets)
    (expected_grad,) = torch.autograd.grad(expected, weight)
    loss = cross_entropy_consuming_logits(hidden @ weight.t(), targets)
    (grad,) = torch.autograd.grad(loss, weight)
    assert torch.allclose(loss, expected, atol=1e-6)
    assert torch.allclose(grad, expected_grad, atol=1e-6)


def test_gpt2_token_log_probs_from_a_host_count_equal_the_full_projection():
    """A batch selected with host-side lengths carries its count (counted by hand here: the
    lengths clamped to the limit), gathers the counted positions with nonzero_static, and
    gives the full projection's log-probs and gradients."""
    from baselines.primitives import hf, hf_models
    from baselines.primitives.hf_policy import masked_token_log_probs

    torch.manual_seed(0)
    model = hf_models.build_gpt2(50, n_layer=1, n_embd=16, n_head=2, n_positions=16, dropout=0.0,
                                 end_of_text_id=0)
    lengths = torch.tensor([3, 7, 1, 6])
    data = hf.TokenBatch(torch.randint(1, 50, (4, 9)), torch.randint(1, 50, (4, 9)),
                         torch.arange(9).unsqueeze(0) < lengths.unsqueeze(1))
    index = torch.tensor([2, 1, 0])
    batch = data.select(index, lengths[index], limit=5)
    assert batch.counted == 1 + 5 + 3 and batch.inputs.shape == (3, 5)
    assert batch.num_tokens() == int(batch.mask.sum())
    expected = masked_token_log_probs(model(input_ids=batch.inputs).logits, batch.targets,
                                      batch.mask, 1.0)
    expected_grads = gradients(model, expected.sum())
    log_probs = hf.token_log_probs(model, batch)
    grads = gradients(model, log_probs.sum())
    assert torch.allclose(log_probs, expected, atol=1e-5)
    assert torch.all(log_probs[~batch.mask] == 0)
    for name, grad in expected_grads.items():
        assert torch.allclose(grads[name], grad, atol=1e-5), name


def test_discriminator_batches_are_cut_and_counted_from_host_lengths():
    """A discriminator batch that knows its rows' word pieces on the host (as the tokenizer
    bridge makes them) selects, cuts and counts as the attention mask says: rows of 3, 1, 5
    and 2 pieces, padded to 8."""
    from baselines.primitives.hf import ClassifierBatch
    from baselines.primitives.scorer import encode_for_scorer

    mask = (torch.arange(8) < torch.tensor([[3], [1], [5], [2]])).long()
    ids = torch.randint(5, 50, (4, 8)) * mask
    known = ClassifierBatch(ids, mask, torch.tensor([3, 1, 5, 2]))
    for index in (torch.tensor([0, 3]), torch.tensor([2, 1, 0])):
        batch = known.select(index)
        # Cut to the longest selected row (3, then 5 pieces), counted by hand: 5, then 9.
        width, pieces = (3, 5) if len(index) == 2 else (5, 9)
        assert batch.input_ids.shape == (len(index), width)
        assert torch.equal(batch.input_ids, ids[index, :width])
        assert batch.num_pieces() == pieces == int(batch.attention_mask.sum())
    # Without host lengths the same batch comes from the mask.
    unknown = ClassifierBatch(ids, mask).select(torch.tensor([2, 1, 0]))
    assert unknown.input_ids.shape == (3, 5) and unknown.num_pieces() == 9

    class Words:  # a tokenizer stand-in: one id per word, as encode_texts reads it
        pad_token_id = 0

        def __call__(self, texts, **_):
            rows = [[10 + len(w) for w in t.split()] for t in texts]
            width = max(map(len, rows))
            return {"input_ids": torch.tensor([r + [0] * (width - len(r)) for r in rows]),
                    "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r))
                                                    for r in rows])}

    scored = encode_for_scorer(Words(), ["a bb ccc", "dd"], 1, 2, 16)
    # BOS + words + EOS: 5 and 3 positions.
    assert scored.lengths.tolist() == [5, 3] == scored.attention_mask.sum(dim=1).tolist()
