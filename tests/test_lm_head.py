"""The vocabulary-padded head used by evaluation gives the model's own logits on the real ids
and logits of -inf (probability 0) on the padding."""

import torch

from baselines.primitives.lm_head import ALIGN, aligned_head


def linear(vocab: int, bias: bool) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(24, vocab, bias=bias)


def test_a_vocabulary_already_aligned_keeps_the_models_own_head():
    head = linear(4 * ALIGN, bias=False)
    assert aligned_head(head) is head


def test_padded_head_equals_the_head_on_real_ids_and_is_minus_infinity_beyond():
    hidden = torch.randn(37, 24)
    for vocab, bias in ((4969, False), (30, True)):  # the oracle word tokenizer's 4,969 ids
        lm_head = linear(vocab, bias)
        with torch.no_grad():
            expected = hidden.double() @ lm_head.weight.double().T
            if bias:
                expected += lm_head.bias.double()
            got = aligned_head(lm_head)(hidden)
        padded = -(-vocab // ALIGN) * ALIGN
        assert got.shape == (37, padded) and padded > vocab
        torch.testing.assert_close(got[:, :vocab].double(), expected, atol=1e-5, rtol=1e-5)
        assert torch.isneginf(got[:, vocab:]).all()
        # A log-softmax over the padded logits is the one over the real ids.
        torch.testing.assert_close(torch.log_softmax(got.double(), -1)[:, :vocab],
                                   torch.log_softmax(expected, -1), atol=1e-5, rtol=1e-5)
