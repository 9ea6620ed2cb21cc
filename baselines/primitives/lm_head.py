"""GPT-2's vocabulary projection for evaluation, with the vocabulary padded for sgemm.

On the CPUs this project runs on, a projection onto a vocabulary that is not a multiple of 16
runs at about half speed: 16,384 hidden states of width 256 onto the oracle's 4,969 word ids
took 800 ms (25 G multiply-adds/s) against 450 ms for 4,976 ids (45 G/s), one thread, MKL's
sgemm. The oracle's word tokenizer (4,969 ids) is such a vocabulary, and its head is a third of
every evaluation forward. ``aligned_head`` projects onto the vocabulary rounded up to
``ALIGN`` ids; the extra ids get a logit of -inf, so that a softmax, a log-softmax or a
cross-entropy over the padded logits equals the one over the real ones (exp(-inf) = 0) and a
sampler can never draw them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

ALIGN = 16

Head = Callable[[torch.Tensor], torch.Tensor]  # hidden [N, E] -> logits [N, V padded]


def aligned_head(lm_head: torch.nn.Linear) -> Head:
    """For no-grad evaluation: ``lm_head`` itself when its vocabulary is already a multiple of
    ALIGN, else a projection onto the padded vocabulary whose extra logits are -inf. The
    padded weight is a copy: build the head after the last weight update."""
    weight = lm_head.weight
    vocab = weight.shape[0]
    padded = ALIGN * -(-vocab // ALIGN)
    if padded == vocab:
        return lm_head
    with torch.no_grad():
        padded_weight = weight.new_zeros((padded, weight.shape[1]))
        padded_weight[:vocab] = weight
        bias = None
        if lm_head.bias is not None:
            bias = weight.new_zeros(padded)
            bias[:vocab] = lm_head.bias

    def head(hidden: torch.Tensor) -> torch.Tensor:
        # The -inf go in after the product: a bias holding them would be copied into the
        # whole output first (an extra pass over the logits, 0.5 s of the oracle's NLL).
        logits = F.linear(hidden, padded_weight, bias)
        logits[:, vocab:] = -float("inf")
        return logits

    return head
