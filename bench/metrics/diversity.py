"""Diversity and memorisation of generated text, on evaluation tokens.

- ``distinct_n``: distinct-n of Li et al. 2016 ("A Diversity-Promoting Objective Function for
  Neural Conversation Models"), pooled over the whole sample set: unique n-grams / all n-grams.
- ``copy_rate``: the share of generated sentences that occur verbatim in the training split, a
  direct measure of memorisation that BLEU against the test split rewards rather than catches.
"""

from __future__ import annotations

from collections.abc import Sequence


def distinct_n(token_lists: Sequence[Sequence[str]], n: int) -> float:
    """Unique n-grams / total n-grams over all sentences (n-grams never cross sentences).

    Sentences shorter than n contribute no n-gram. With no n-gram at all (no samples, or all
    shorter than n) the result is 0.0: there is nothing diverse to count.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    unique: set[tuple[str, ...]] = set()
    total = 0
    for tokens in token_lists:
        count = len(tokens) - n + 1
        if count <= 0:
            continue
        total += count
        unique.update(tuple(tokens[i : i + n]) for i in range(count))
    return len(unique) / total if total else 0.0


def copy_rate(samples_tokens: Sequence[Sequence[str]],
              train_tokens: Sequence[Sequence[str]]) -> float:
    """Share of generated sentences whose token sequence is a training sentence (0.0 if none).

    Every generated sentence counts, duplicates included: ten copies of one training sentence
    are ten copied samples.
    """
    if not samples_tokens:
        return 0.0
    training = {tuple(tokens) for tokens in train_tokens}
    copied = sum(tuple(tokens) in training for tokens in samples_tokens)
    return copied / len(samples_tokens)
