"""Reference metrics against the test split: sacreBLEU corpus BLEU and ROUGE-L.

Generated sentences are unconditional, so no test sentence is "the" reference of a sample. The
text-GAN convention (Texygen's BLEU, METRICS.md) compares every hypothesis with the whole test
split; both metrics here keep that convention exactly instead of inventing a pairing:

- ``sacrebleu_score`` is sacreBLEU's corpus BLEU with every test sentence a reference of every
  hypothesis, i.e. exactly ``sacrebleu.corpus_bleu(samples, [[ref] * N for ref in references],
  tokenize="none")`` (M aligned reference streams, each repeating one test sentence). sacreBLEU
  would build that in O(N * M); the same sufficient statistics are computed here in O(N + M),
  vectorised over integer n-gram keys (``clipped_ngram_matches``): n-gram counts are clipped by
  their largest count in any one test sentence (as sacreBLEU merges multiple references) and the
  reference length is the closest test length (ties: the shorter).
  The score itself comes from sacreBLEU's ``BLEU.compute_bleu``; tests check equality with
  ``corpus_bleu`` on small inputs.
- ``rouge_l`` is the mean over samples of the best ROUGE-L F-measure against any test sentence,
  as rouge-score's ``RougeScorer(["rougeL"]).score_multi`` defines it. The N * M LCS tables that
  rouge-score would fill take minutes at 5k x 10k; here each LCS length is computed exactly by the
  bit-vector algorithm of Crochemore, Iliopoulos, Pinzon and Reid (2001, "A fast and practical
  bit-vector algorithm for the longest common subsequence problem"), vectorised over all
  references at once, so the whole test split is used in seconds. The masks are built with
  array operations, and one-word vectors (references up to 64 tokens) are stepped in place.

Inputs are text in the evaluation tokenization (tokens joined by blanks, as
``Tokenization.detokenize`` writes them), so tokens are split on whitespace only: sacreBLEU's
``tokenize="none"``, and no rouge-score default tokenizer, which would lower-case and drop every
non-ASCII token (all of chinese_poems).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

import numpy as np

from bench.errors import GanbenchError

SACREBLEU_MAX_ORDER = 4  # sacreBLEU's BLEU-4 (its default max_ngram_order)
WORD_BITS = 64
# A token found in more than this share of the references gets a dense mask row per reference;
# rarer ones are updated only on the references that contain them.
DENSE_TOKEN_SHARE = 1 / 4  # measured on news 2k x 10k: 10% faster than 1/16, 1/2 or all dense


def _check_inputs(samples: Sequence[str], references: Sequence[str]) -> None:
    if not samples:
        raise GanbenchError("no samples to score against the test split")
    if not references:
        raise GanbenchError("no reference sentences to score against")


# ---------------------------------------------------------------------------------------------
# sacreBLEU


def _closest_length(length: int, sorted_lengths: list[int]) -> int:
    """The reference length closest to `length`, the shorter one on a tie (as sacreBLEU)."""
    at = bisect.bisect_left(sorted_lengths, length)
    candidates = sorted_lengths[max(at - 1, 0) : at + 1]
    return min(candidates, key=lambda ref_length: (abs(ref_length - length), ref_length))


def _counts_per_sentence(sentence: np.ndarray, key: np.ndarray, num_sentences: int
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(n-gram key, its count in one sentence) for every distinct (sentence, key) pair, in
    increasing key order."""
    # Keys stay below (distinct (n-1)-grams) * vocabulary, so key * sentences fits in int64.
    pairs, counts = np.unique(key * num_sentences + sentence, return_counts=True)
    return pairs // num_sentences, counts


def clipped_ngram_matches(hypotheses: Sequence[Sequence[str]],
                          references: Sequence[Sequence[str]], max_order: int
                          ) -> tuple[list[int], list[int]]:
    """(correct, total) per order 1..max_order: hypothesis n-grams, each clipped by its largest
    count in any ONE reference (sacreBLEU's multi-reference clipping), and all hypothesis
    n-grams. Exact integer counts, vectorised: tokens are interned as integers and an n-gram's
    key is the (n-1)-gram's dense id times the vocabulary size plus its last token."""
    sentences = [*references, *hypotheses]
    flat = list(itertools.chain.from_iterable(sentences))
    ids = {token: i for i, token in enumerate(dict.fromkeys(flat))}
    tokens = np.fromiter(map(ids.__getitem__, flat), dtype=np.int64, count=len(flat))
    lengths = np.array([len(s) for s in sentences], dtype=np.int64)
    sentence = np.repeat(np.arange(len(sentences)), lengths)
    end = np.repeat(np.cumsum(lengths), lengths)  # one past each token's sentence's last token
    is_hypothesis = sentence >= len(references)
    base = max(len(ids), 1)
    start = np.arange(len(tokens))  # n-grams starting here that fit in their sentence
    key = tokens.copy()
    correct, total = [], []
    for n in range(1, max_order + 1):
        if n > 1:
            fits = start + n <= end[start]
            start, key = start[fits], key[fits]
            key = np.unique(key, return_inverse=True)[1].reshape(-1) * base + tokens[start + n - 1]
        hypothesis = is_hypothesis[start]
        ref_keys, ref_counts = _counts_per_sentence(sentence[start][~hypothesis],
                                                    key[~hypothesis], len(sentences))
        first = np.flatnonzero(np.r_[True, ref_keys[1:] != ref_keys[:-1]]) if len(ref_keys) else []
        best_keys = ref_keys[first]
        best_counts = np.maximum.reduceat(ref_counts, first) if len(first) else ref_counts[:0]
        hyp_keys, hyp_counts = _counts_per_sentence(sentence[start][hypothesis],
                                                    key[hypothesis], len(sentences))
        at = np.minimum(np.searchsorted(best_keys, hyp_keys), max(len(best_keys) - 1, 0))
        found = (best_keys[at] == hyp_keys) if len(best_keys) else np.zeros(len(hyp_keys), bool)
        clip = np.where(found, best_counts[at] if len(best_keys) else 0, 0)
        correct.append(int(np.minimum(hyp_counts, clip).sum()))
        total.append(int(hyp_counts.sum()))
    return correct, total


def sacrebleu_score(samples: Sequence[str], references: Sequence[str]) -> dict:
    """sacreBLEU corpus BLEU of the samples, each against all references (see module doc).

    Returns {"score": BLEU in 0..100, "signature": sacreBLEU's signature}; the signature's
    nrefs is the number of test sentences, each of which is a reference of every sample.
    """
    from sacrebleu.metrics.bleu import BLEU, BLEUSignature

    _check_inputs(samples, references)
    max_order = SACREBLEU_MAX_ORDER
    hypotheses = [sample.split() for sample in samples]
    reference_tokens = [reference.split() for reference in references]
    correct, total = clipped_ngram_matches(hypotheses, reference_tokens, max_order)
    sorted_lengths = sorted({len(tokens) for tokens in reference_tokens})
    hypothesis_length = sum(len(tokens) for tokens in hypotheses)
    reference_length = sum(_closest_length(len(tokens), sorted_lengths)
                           for tokens in hypotheses)

    metric = BLEU(tokenize="none", smooth_method="exp", max_ngram_order=max_order)
    score = BLEU.compute_bleu(correct, total, hypothesis_length, reference_length,
                              smooth_method=metric.smooth_method,
                              smooth_value=metric.smooth_value,
                              effective_order=metric.effective_order, max_ngram_order=max_order)
    signature = BLEUSignature({**vars(metric), "num_refs": len(references)}).format()
    return {"score": float(score.score), "signature": signature}


# ---------------------------------------------------------------------------------------------
# ROUGE-L


class _ReferenceGroup:
    """References of one width (64-bit words per bit vector), indexed for the LCS bit algorithm.

    For a token t, the match mask of reference r has bit j set where reference r's token j is t.
    A frequent token keeps a dense [R, W] mask array; a rare one keeps only the rows (references)
    that contain it, with their masks.
    """

    def __init__(self, rows: list[list[int]], words: int):
        self.words = words
        self.size = len(rows)
        self.lengths = np.array([len(row) for row in rows], dtype=np.int64)
        # Every (token, reference) pair once, with its mask: bits OR-ed over the positions.
        tokens = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64,
                             count=int(self.lengths.sum()))
        row_of = np.repeat(np.arange(self.size), self.lengths)
        position = np.arange(len(tokens)) - np.repeat(np.cumsum(self.lengths) - self.lengths,
                                                      self.lengths)
        pair = tokens * self.size + row_of
        order = np.argsort(pair, kind="stable")
        pair, position = pair[order], position[order]
        bits = np.zeros((len(pair), words), dtype=np.uint64)
        bits[np.arange(len(pair)), position // WORD_BITS] = (
            np.uint64(1) << (position % WORD_BITS).astype(np.uint64))
        first = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
        pair_masks = np.bitwise_or.reduceat(bits, first, axis=0)
        pair_token, pair_row = pair[first] // self.size, pair[first] % self.size
        # pair_token is sorted: each token's references are one slice.
        starts = np.flatnonzero(np.r_[True, pair_token[1:] != pair_token[:-1]])
        ends = np.r_[starts[1:], len(pair_token)]
        self.dense: dict[int, np.ndarray] = {}
        self.sparse: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for token, begin, end in zip(pair_token[starts].tolist(), starts, ends):
            row_index, row_masks = pair_row[begin:end], pair_masks[begin:end]
            if end - begin > DENSE_TOKEN_SHARE * self.size:
                dense = np.zeros((self.size, words), dtype=np.uint64)
                dense[row_index] = row_masks
                self.dense[token] = dense
            else:
                self.sparse[token] = (row_index, row_masks)
        # Bits past a reference's length are never read: this mask keeps its first n bits.
        bit_index = np.arange(words * WORD_BITS).reshape(words, WORD_BITS)
        inside = bit_index[None, :, :] < self.lengths[:, None, None]
        weights = np.uint64(1) << np.arange(WORD_BITS, dtype=np.uint64)
        self.length_masks = (inside.astype(np.uint64) * weights).sum(axis=2, dtype=np.uint64)

    @staticmethod
    def _step(vectors: np.ndarray, matches: np.ndarray) -> np.ndarray:
        """One hypothesis token: V' = (V + U) | (V - U) with U = V & M, over multi-word V."""
        selected = vectors & matches
        # U is a subset of V's bits, so V - U never borrows; V + U carries across words.
        difference = vectors - selected
        out = np.empty_like(vectors)
        carry = np.zeros(vectors.shape[0], dtype=np.uint64)
        for w in range(vectors.shape[1]):
            partial = vectors[:, w] + selected[:, w]
            overflow = partial < vectors[:, w]
            summed = partial + carry
            carry = (overflow | (summed < partial)).astype(np.uint64)
            out[:, w] = summed
        return out | difference

    @staticmethod
    def _step_one_word(vectors: np.ndarray, matches: np.ndarray, scratch: np.ndarray) -> None:
        """_step for one-word vectors [R, 1], in place: no carry crosses words, and uint64
        arithmetic wraps exactly as the multi-word step drops the top word's carry."""
        size = len(vectors)
        selected, difference = scratch[:size], scratch[size : 2 * size]
        np.bitwise_and(vectors, matches, out=selected)
        np.subtract(vectors, selected, out=difference)
        np.add(vectors, selected, out=vectors)
        np.bitwise_or(vectors, difference, out=vectors)

    def lcs_lengths(self, hypothesis: list[int]) -> np.ndarray:
        """LCS length of the hypothesis with each reference of the group."""
        vectors = np.full((self.size, self.words), np.iinfo(np.uint64).max, dtype=np.uint64)
        if self.words == 1:  # most sentences: the fast in-place path
            scratch = np.empty((2 * self.size, 1), dtype=np.uint64)
            for token in hypothesis:
                if token in self.dense:
                    self._step_one_word(vectors, self.dense[token], scratch)
                elif token in self.sparse:
                    rows, masks = self.sparse[token]
                    part = vectors[rows]
                    self._step_one_word(part, masks, scratch)
                    vectors[rows] = part
            return self.lengths - _popcount(vectors & self.length_masks)
        for token in hypothesis:
            if token in self.dense:
                vectors = self._step(vectors, self.dense[token])
            elif token in self.sparse:
                rows, masks = self.sparse[token]
                vectors[rows] = self._step(vectors[rows], masks)
            # a token in no reference matches nothing and leaves every vector as it is
        # The LCS length is the number of zero bits among a reference's first n bits.
        ones = _popcount(vectors & self.length_masks)
        return self.lengths - ones


_BYTE_POPCOUNT = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.int64)


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per row of a [R, W] uint64 array (a byte table on numpy 1.x)."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(words).sum(axis=1, dtype=np.int64)
    as_bytes = np.ascontiguousarray(words).view(np.uint8).reshape(words.shape[0], -1)
    return _BYTE_POPCOUNT[as_bytes].sum(axis=1)


def rouge_l_scores(samples: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Per sample, the best ROUGE-L F-measure against any reference (rouge-score's formula).

    F = 2PR / (P + R) with P = LCS / len(sample), R = LCS / len(reference); 0 when the sample or
    the reference is empty or they share no token, as in rouge-score.
    """
    _check_inputs(samples, references)
    ids: dict[str, int] = {}
    reference_rows = [[ids.setdefault(token, len(ids)) for token in reference.split()]
                      for reference in references]
    by_words: dict[int, list[list[int]]] = {}
    for row in reference_rows:
        if row:  # an empty reference scores 0 with every sample, never the best
            by_words.setdefault(-(-len(row) // WORD_BITS), []).append(row)
    groups = [_ReferenceGroup(rows, words) for words, rows in sorted(by_words.items())]

    best = np.zeros(len(samples), dtype=np.float64)
    for i, sample in enumerate(samples):
        tokens = sample.split()
        if not tokens:
            continue
        # Tokens absent from every reference still count in the sample's length.
        hypothesis = [ids.get(token, -1) for token in tokens]
        for group in groups:
            lcs = group.lcs_lengths(hypothesis).astype(np.float64)
            precision = lcs / len(tokens)
            recall = lcs / group.lengths
            denominator = precision + recall
            with np.errstate(invalid="ignore", divide="ignore"):
                fmeasure = np.where(denominator > 0,
                                    2 * precision * recall / denominator, 0.0)
            best[i] = max(best[i], float(fmeasure.max()))
    return best


def rouge_l(samples: Sequence[str], references: Sequence[str]) -> float:
    """Mean over samples of the best ROUGE-L F-measure against the whole reference set."""
    return float(np.mean(rouge_l_scores(samples, references)))
