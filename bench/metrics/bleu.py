"""Sentence BLEU-n against a reference set, and leave-one-out Self-BLEU-n (METRICS.md).

Both are exactly nltk's ``sentence_bleu(references, hypothesis, weights=(1/n,) * n,
smoothing_function=SmoothingFunction().method1)`` for every hypothesis, computed for all
hypotheses at once instead of one nltk call per hypothesis (which re-counts every reference's
n-grams for every hypothesis: O(N * M)). What nltk computes, and what is reproduced here:

- p_k (k = 1..n), the modified precision: the hypothesis's k-gram counts, each clipped at its
  largest count in any one reference, summed, over max(1, number of hypothesis k-grams).
- method1 smoothing: a p_k with a zero numerator becomes 0.1 / denominator (so a hypothesis
  shorter than k has p_k = 0.1 / 1).
- A hypothesis with no unigram found in any reference (the empty one included) scores 0.
- Brevity penalty against the closest reference length, ties going to the shorter reference:
  1 when the hypothesis is longer, else exp(1 - r / c).
- BLEU-n = BP * exp(sum_k (1/n) * log(p_k)). nltk sums with ``math.fsum``; the sum here is a
  plain one of at most five terms, so the two differ by a few ulp at most (tested to 1e-12).

How it is made fast: tokens are interned as integers; the k-grams are interned order by order as
(id of the (k-1)-gram prefix, last token) pairs packed into one int64, so every order costs one
sort of the corpus's positions. Reference k-grams are kept as sorted key arrays with their
largest count per reference, and a hypothesis's k-grams are looked up with ``searchsorted``.
Self-BLEU needs, for sentence i, the largest count of each k-gram over all sentences but i: that
is the largest count overall unless sentence i alone holds it, and then the runner-up count, so
only the top-two counts per k-gram are needed. The closest reference length comes from the sorted
distinct reference lengths (with, for Self-BLEU, one copy of the sentence's own length removed).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_ORDERS = (2, 3, 4, 5)
DEFAULT_MAX_ORDER = 5
# nltk's SmoothingFunction().method1 default: the count given to a zero n-gram match numerator.
SMOOTHING_EPSILON = 0.1

Sentence = Sequence[Hashable]


@dataclass
class _FlatSentences:
    """Sentences as one array of token ids, with each token's sentence and position in it."""

    token_ids: np.ndarray  # int64; -1 for a token the vocabulary lacks (hypotheses only)
    sentence_of_token: np.ndarray  # int64
    position_in_sentence: np.ndarray  # int64
    lengths: np.ndarray  # int64, one per sentence

    @property
    def num_sentences(self) -> int:
        return len(self.lengths)

    def ends_of_ngrams(self, order: int) -> np.ndarray:
        """Indices of the tokens that end an n-gram of this order within their sentence."""
        return np.flatnonzero(self.position_in_sentence >= order - 1)

    def ngram_counts(self, order: int) -> np.ndarray:
        """How many n-grams of this order each sentence has (nltk's denominator before max(1,))."""
        return np.maximum(self.lengths - (order - 1), 0)


def _flatten(sentences: Sequence[Sentence], vocabulary: dict, extend_vocabulary: bool
             ) -> _FlatSentences:
    lengths = np.fromiter((len(sentence) for sentence in sentences), dtype=np.int64,
                          count=len(sentences))
    if extend_vocabulary:
        # setdefault evaluates len() before inserting, so a new token gets the next free id.
        ids = [vocabulary.setdefault(token, len(vocabulary))
               for sentence in sentences for token in sentence]
    else:
        ids = [vocabulary.get(token, -1) for sentence in sentences for token in sentence]
    token_ids = np.array(ids, dtype=np.int64)
    sentence_of_token = np.repeat(np.arange(len(sentences), dtype=np.int64), lengths)
    sentence_starts = np.cumsum(lengths) - lengths
    position_in_sentence = (np.arange(len(token_ids), dtype=np.int64)
                            - np.repeat(sentence_starts, lengths))
    return _FlatSentences(token_ids, sentence_of_token, position_in_sentence, lengths)


def _ngram_keys(prefix_ids: np.ndarray, last_token_ids: np.ndarray, vocabulary_size: int
                ) -> np.ndarray:
    # Unique per (prefix n-gram, last token): prefix ids < number of positions and token ids <
    # vocabulary size, so the product stays far below 2**63 for any corpus that fits in memory.
    return prefix_ids * vocabulary_size + last_token_ids


def _intern_next_order(flat: _FlatSentences, prefix_ngram_ids: np.ndarray, order: int,
                       vocabulary_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense ids of every n-gram of `order` (-1 where none ends) and the sorted distinct keys."""
    ends = flat.ends_of_ngrams(order)
    keys = _ngram_keys(prefix_ngram_ids[ends - 1], flat.token_ids[ends], vocabulary_size)
    distinct_keys, dense_ids = np.unique(keys, return_inverse=True)
    ngram_ids = np.full(len(flat.token_ids), -1, dtype=np.int64)
    ngram_ids[ends] = dense_ids
    return ngram_ids, distinct_keys


@dataclass
class _NgramSentenceCounts:
    """Count of each (n-gram, sentence) pair that occurs, sorted by n-gram then sentence."""

    ngram: np.ndarray
    sentence: np.ndarray
    count: np.ndarray

    @classmethod
    def of(cls, ngram_ids: np.ndarray, sentence_ids: np.ndarray, num_sentences: int
           ) -> _NgramSentenceCounts:
        pair_keys, count = np.unique(ngram_ids * num_sentences + sentence_ids,
                                     return_counts=True)
        return cls(pair_keys // num_sentences, pair_keys % num_sentences, count)

    def group_starts(self) -> np.ndarray:
        """Index of each n-gram's first pair (n-gram ids are dense, so group g starts at [g])."""
        return np.flatnonzero(np.diff(self.ngram, prepend=-1))


class ReferenceTable:
    """A reference set's n-gram clipping counts for orders 1..max_order, built once.

    Scoring many hypothesis sets against one test split (a temperature grid, say) reuses it.
    """

    def __init__(self, references: Sequence[Sentence], max_order: int = DEFAULT_MAX_ORDER):
        if len(references) == 0:
            raise ValueError("BLEU needs at least one reference sentence")
        if max_order < 1:
            raise ValueError(f"max_order must be at least 1, not {max_order}")
        self.max_order = max_order
        self._vocabulary: dict = {}
        flat = _flatten(references, self._vocabulary, extend_vocabulary=True)
        self._vocabulary_size = max(len(self._vocabulary), 1)
        self._distinct_lengths = np.unique(flat.lengths)
        # Per order: sorted distinct n-gram keys (None for unigrams, whose key is the token id)
        # and the largest count of each n-gram in any one reference, in the same order.
        self._keys: dict[int, np.ndarray | None] = {}
        self._max_counts: dict[int, np.ndarray] = {}
        ngram_ids = flat.token_ids
        for order in range(1, max_order + 1):
            if order == 1:
                self._keys[order] = None
            else:
                ngram_ids, self._keys[order] = _intern_next_order(
                    flat, ngram_ids, order, self._vocabulary_size)
            ends = flat.ends_of_ngrams(order)
            pairs = _NgramSentenceCounts.of(ngram_ids[ends], flat.sentence_of_token[ends],
                                            flat.num_sentences)
            if len(pairs.count):
                max_counts = np.maximum.reduceat(pairs.count, pairs.group_starts())
            else:
                max_counts = np.zeros(0, dtype=np.int64)
            self._max_counts[order] = max_counts

    def closest_lengths(self, hypothesis_lengths: np.ndarray) -> np.ndarray:
        """nltk's closest_ref_length for each hypothesis length (ties: the shorter)."""
        distinct = self._distinct_lengths
        above = np.searchsorted(distinct, hypothesis_lengths, side="left")
        has_longer_or_equal = above < len(distinct)
        has_shorter = above > 0
        longer_or_equal = distinct[np.minimum(above, len(distinct) - 1)]
        shorter = distinct[np.maximum(above - 1, 0)]
        take_longer = has_longer_or_equal & (
            ~has_shorter
            | (longer_or_equal - hypothesis_lengths < hypothesis_lengths - shorter))
        return np.where(take_longer, longer_or_equal, shorter)

    def clipped_matches(self, hypotheses: Sequence[Sentence], max_order: int
                        ) -> tuple[dict[int, np.ndarray], np.ndarray]:
        """Per order 1..max_order, each hypothesis's clipped match count; and their lengths."""
        if max_order > self.max_order:
            raise ValueError(f"the table counts n-grams up to order {self.max_order}, "
                             f"not {max_order}")
        flat = _flatten(hypotheses, self._vocabulary, extend_vocabulary=False)
        num_hypotheses = flat.num_sentences
        matches: dict[int, np.ndarray] = {}
        # Reference n-gram id of the n-gram ending at each position, -1 if no reference has it
        # (then no longer n-gram ending one later can be in a reference either).
        ngram_ids = flat.token_ids
        for order in range(1, max_order + 1):
            if order > 1:
                ngram_ids = self._lookup_next_order(flat, ngram_ids, order)
            found = np.flatnonzero(ngram_ids >= 0)
            max_counts = self._max_counts[order]
            pairs = _NgramSentenceCounts.of(ngram_ids[found], flat.sentence_of_token[found],
                                            num_hypotheses)
            clipped = np.minimum(pairs.count, max_counts[pairs.ngram])
            matches[order] = np.bincount(pairs.sentence, weights=clipped,
                                         minlength=num_hypotheses)
        return matches, flat.lengths

    def _lookup_next_order(self, flat: _FlatSentences, prefix_ngram_ids: np.ndarray,
                           order: int) -> np.ndarray:
        ends = flat.ends_of_ngrams(order)
        prefix_ids = prefix_ngram_ids[ends - 1]
        last_token_ids = flat.token_ids[ends]
        known = (prefix_ids >= 0) & (last_token_ids >= 0)
        ends = ends[known]
        keys = _ngram_keys(prefix_ids[known], last_token_ids[known], self._vocabulary_size)
        reference_keys = self._keys[order]
        ngram_ids = np.full(len(flat.token_ids), -1, dtype=np.int64)
        if len(reference_keys) == 0:
            return ngram_ids
        slots = np.minimum(np.searchsorted(reference_keys, keys), len(reference_keys) - 1)
        in_references = reference_keys[slots] == keys
        ngram_ids[ends[in_references]] = slots[in_references]
        return ngram_ids

    def score(self, hypotheses: Sequence[Sentence], orders: Iterable[int] = DEFAULT_ORDERS
              ) -> dict[int, np.ndarray]:
        """Sentence BLEU-n of each hypothesis against all references, for each n in orders."""
        orders = _check_orders(orders, self.max_order)
        matches, lengths = self.clipped_matches(hypotheses, max(orders))
        return _combine(matches, lengths, self.closest_lengths(lengths), orders)


def _check_orders(orders: Iterable[int], max_order: int | None) -> tuple[int, ...]:
    orders = tuple(int(order) for order in orders)
    if not orders:
        raise ValueError("no BLEU orders asked for")
    if min(orders) < 1 or (max_order is not None and max(orders) > max_order):
        raise ValueError(f"BLEU orders must lie in 1..{max_order or 'any'}, not {orders}")
    return orders


def _combine(matches: dict[int, np.ndarray], hypothesis_lengths: np.ndarray,
             closest_reference_lengths: np.ndarray, orders: tuple[int, ...]
             ) -> dict[int, np.ndarray]:
    """nltk's sentence_bleu from the clipped match counts: smoothing, BP, geometric mean."""
    lengths = hypothesis_lengths.astype(np.float64)
    log_precisions = []
    for order in range(1, max(orders) + 1):
        denominator = np.maximum(hypothesis_lengths - (order - 1), 1).astype(np.float64)
        numerator = np.where(matches[order] > 0, matches[order], SMOOTHING_EPSILON)
        log_precisions.append(np.log(numerator / denominator))
    # An empty hypothesis has no unigram match and scores 0 before BP's division by its length.
    safe_lengths = np.maximum(lengths, 1.0)
    brevity_penalty = np.where(
        hypothesis_lengths > closest_reference_lengths, 1.0,
        np.exp(1.0 - closest_reference_lengths / safe_lengths))
    has_unigram_match = matches[1] > 0
    scores: dict[int, np.ndarray] = {}
    for order in orders:
        weight = 1 / order  # the float nltk is given, (1/n,) * n
        log_mean = weight * log_precisions[0]
        for log_precision in log_precisions[1:order]:
            log_mean = log_mean + weight * log_precision
        scores[order] = np.where(has_unigram_match, brevity_penalty * np.exp(log_mean), 0.0)
    return scores


def bleu(hypotheses: Sequence[Sentence], references: Sequence[Sentence],
         max_order: int = DEFAULT_MAX_ORDER, orders: Iterable[int] = DEFAULT_ORDERS
         ) -> dict[int, np.ndarray]:
    """Sentence BLEU-n of every hypothesis against all the references, for each n in orders.

    ``bleu(hyps, refs)[n][i]`` equals nltk's ``sentence_bleu(refs, hyps[i],
    weights=(1/n,) * n, smoothing_function=SmoothingFunction().method1)``. Sentences are
    sequences of tokens (any hashable). orders must lie in 1..max_order; n-grams are counted up
    to max(orders) only, since no higher order changes any score asked for.
    """
    orders = _check_orders(orders, max_order)
    return ReferenceTable(references, max(orders)).score(hypotheses, orders)


def self_bleu(sentences: Sequence[Sentence], orders: Iterable[int] = DEFAULT_ORDERS
              ) -> dict[int, np.ndarray]:
    """Leave-one-out Self-BLEU-n of every sentence, for each n in orders.

    ``self_bleu(s)[n][i]`` equals nltk's ``sentence_bleu(s[:i] + s[i+1:], s[i], ...)`` with the
    weights and smoothing of :func:`bleu`. A sentence has no Self-BLEU on its own (nltk fails
    on an empty reference list), so fewer than two sentences raise ValueError.
    """
    orders = _check_orders(orders, None)
    if len(sentences) < 2:
        raise ValueError(f"Self-BLEU needs at least two sentences, got {len(sentences)}")
    vocabulary: dict = {}
    flat = _flatten(sentences, vocabulary, extend_vocabulary=True)
    vocabulary_size = max(len(vocabulary), 1)
    matches: dict[int, np.ndarray] = {}
    ngram_ids = flat.token_ids
    for order in range(1, max(orders) + 1):
        if order > 1:
            ngram_ids, _ = _intern_next_order(flat, ngram_ids, order, vocabulary_size)
        matches[order] = _leave_one_out_matches(flat, ngram_ids, order)
    return _combine(matches, flat.lengths, _leave_one_out_closest_lengths(flat.lengths), orders)


def _leave_one_out_matches(flat: _FlatSentences, ngram_ids: np.ndarray, order: int
                           ) -> np.ndarray:
    """Each sentence's clipped n-gram matches against all the other sentences.

    Clipped at the largest count among the others, a sentence's own count is kept whole unless
    it alone holds an n-gram's top count; then it is clipped to the runner-up count (0 if no
    other sentence has the n-gram), i.e. it loses (top - runner-up).
    """
    ends = flat.ends_of_ngrams(order)
    pairs = _NgramSentenceCounts.of(ngram_ids[ends], flat.sentence_of_token[ends],
                                    flat.num_sentences)
    own_counts = flat.ngram_counts(order).astype(np.float64)
    if len(pairs.count) == 0:
        return own_counts
    starts = pairs.group_starts()
    top_count = np.maximum.reduceat(pairs.count, starts)
    holds_top = pairs.count == top_count[pairs.ngram]
    top_holders = np.add.reduceat(holds_top.astype(np.int64), starts)
    # The runner-up among the others; only read where a single sentence holds the top count.
    runner_up = np.maximum.reduceat(np.where(holds_top, 0, pairs.count), starts)
    sole_holder = holds_top & (top_holders[pairs.ngram] == 1)
    lost = top_count[pairs.ngram[sole_holder]] - runner_up[pairs.ngram[sole_holder]]
    return own_counts - np.bincount(pairs.sentence[sole_holder], weights=lost,
                                    minlength=flat.num_sentences)


def _leave_one_out_closest_lengths(lengths: np.ndarray) -> np.ndarray:
    """nltk's closest_ref_length of sentence i's own length among the other sentences' lengths."""
    distinct, index, multiplicity = np.unique(lengths, return_inverse=True, return_counts=True)
    shared = multiplicity[index] >= 2  # another sentence has the same length: distance 0
    # Otherwise the neighbours of the sentence's length among the distinct lengths.
    has_shorter = index > 0
    has_longer = index < len(distinct) - 1
    shorter = distinct[np.maximum(index - 1, 0)]
    longer = distinct[np.minimum(index + 1, len(distinct) - 1)]
    take_longer = has_longer & (~has_shorter | (longer - lengths < lengths - shorter))
    return np.where(shared, lengths, np.where(take_longer, longer, shorter))


def corpus_mean(scores: dict[int, np.ndarray]) -> dict[int, float]:
    """The mean over sentences of each order's scores (the number METRICS.md reports)."""
    return {order: float(np.mean(values)) for order, values in scores.items()}
