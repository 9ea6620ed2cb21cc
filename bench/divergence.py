"""When a training loss says the run has diverged (METRICS.md; issue 11 item 7).

A maximum-likelihood loss starts near log|V| (a uniform softmax over V tokens) and only falls
from there while training works; a loss far above it, after a few warm-up steps, means the
weights have blown up (e.g. learning_rate=1e8), even while every number is still finite.
"""

from __future__ import annotations

import math

WARMUP_STEPS = 10  # the first steps may overshoot while Adam's moments settle
FACTOR = 3.0  # "far above": three times a uniform model's loss


def nll_bound(vocab_size: int) -> float:
    return FACTOR * math.log(max(vocab_size, 2))


def nll_divergence(nll: float | None, vocab_size: int, step: int) -> str | None:
    """Why the run diverged at ``step`` (1-based) given its MLE loss, or None if it has not."""
    if nll is None:
        return None
    if not math.isfinite(nll):
        return f"MLE loss is {nll}"
    if step > WARMUP_STEPS and vocab_size > 0 and nll > nll_bound(vocab_size):
        return (f"MLE loss {nll:.4g} nats per token is above {FACTOR:g} x log|V| = "
                f"{nll_bound(vocab_size):.4g} (|V| = {vocab_size}) after {WARMUP_STEPS} "
                "warm-up steps")
    return None
