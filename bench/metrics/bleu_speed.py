"""Time BLEU-2..5 and Self-BLEU-2..5 at the benchmark's sizes: ours, fast-bleu, nltk.

    python -m bench.metrics.bleu_speed [--corpus news] [--samples 10000] [--nltk-sentences 5]

Hypotheses are the corpus's first N training lines, references its first N test lines, Self-BLEU
is over the N hypotheses; tokens are words and punctuation (``\\w+|[^\\w\\s]``). fast-bleu (a
C++ package, ``pip install fast-bleu``) is timed when importable; it runs one thread per core.
nltk would take hours at these sizes, so it is timed on a few sentences against the full
reference set and scaled to N (its cost is linear in the number of hypotheses).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.metrics.bleu import DEFAULT_ORDERS, bleu, self_bleu

TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")


def read_tokenized(path: Path, count: int) -> list[list[str]]:
    with open(path, encoding="utf-8") as lines:
        return [TOKEN_PATTERN.findall(line) for _, line in zip(range(count), lines)]


def best_seconds(work: Callable[[], object], repeat: int) -> float:
    """The fastest of `repeat` runs: the least disturbed by other work on a shared machine."""
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def nltk_seconds_per_sentence(hypotheses: list[list[str]], references: list[list[str]],
                              sentences: int, leave_one_out: bool) -> float:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    weights = [(1 / n,) * n for n in DEFAULT_ORDERS]  # all orders in one call, as ours does
    smoothing = SmoothingFunction().method1
    started = time.perf_counter()
    for index in range(sentences):
        others = hypotheses[:index] + hypotheses[index + 1:] if leave_one_out else references
        sentence_bleu(others, hypotheses[index], weights=weights, smoothing_function=smoothing)
    return (time.perf_counter() - started) / sentences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics.bleu_speed",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder with CORPUS/train.txt and CORPUS/test.txt "
                             "(default: $GANBENCH_DATA, else ../shared/data)")
    parser.add_argument("--corpus", default="news")
    parser.add_argument("--samples", type=int, default=10_000,
                        help="hypotheses (and references) N")
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours; the best counts")
    parser.add_argument("--nltk-sentences", type=int, default=5,
                        help="sentences nltk scores to extrapolate from (0: skip nltk)")
    parser.add_argument("--no-fast-bleu", action="store_true", help="skip fast-bleu")
    parser.add_argument("--one-core", action="store_true",
                        help="pin this process to one CPU core (fast-bleu's threads share it)")
    args = parser.parse_args(argv)

    if args.one_core:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if args.data_dir is None:
        from bench.corpora import default_data_dir

        args.data_dir = default_data_dir()
    folder = args.data_dir / args.corpus
    hypotheses = read_tokenized(folder / "train.txt", args.samples)
    references = read_tokenized(folder / "test.txt", args.samples)
    print(f"{args.corpus}: {len(hypotheses)} hypotheses x {len(references)} references, "
          f"orders {DEFAULT_ORDERS}, {len(os.sched_getaffinity(0))} core(s) available")

    ours_bleu = best_seconds(lambda: bleu(hypotheses, references), args.repeat)
    ours_self = best_seconds(lambda: self_bleu(hypotheses), args.repeat)
    print(f"ours       BLEU {ours_bleu:8.2f} s   Self-BLEU {ours_self:8.2f} s   "
          f"total {ours_bleu + ours_self:8.2f} s")

    if not args.no_fast_bleu:
        try:
            from fast_bleu import BLEU, SelfBLEU
        except ImportError:
            print("fast-bleu  not installed (pip install fast-bleu)")
        else:
            weights = {n: (1 / n,) * n for n in DEFAULT_ORDERS}
            started = time.perf_counter()
            theirs_bleu = BLEU(references, weights).get_score(hypotheses)
            fast_bleu = time.perf_counter() - started
            started = time.perf_counter()
            theirs_self = SelfBLEU(hypotheses, weights).get_score()
            fast_self = time.perf_counter() - started
            print(f"fast-bleu  BLEU {fast_bleu:8.2f} s   Self-BLEU {fast_self:8.2f} s   "
                  f"total {fast_bleu + fast_self:8.2f} s   "
                  f"(ours is x{(fast_bleu + fast_self) / (ours_bleu + ours_self):.0f} faster)")
            ours_scores, ours_self_scores = bleu(hypotheses, references), self_bleu(hypotheses)
            gap = max(max(np.abs(np.asarray(theirs_bleu[n]) - ours_scores[n]).max(),
                          np.abs(np.asarray(theirs_self[n]) - ours_self_scores[n]).max())
                      for n in DEFAULT_ORDERS)
            print(f"           largest |fast-bleu - ours| over all sentences: {gap:.3g}")

    if args.nltk_sentences > 0:
        sentences = min(args.nltk_sentences, len(hypotheses))
        nltk_bleu = len(hypotheses) * nltk_seconds_per_sentence(
            hypotheses, references, sentences, leave_one_out=False)
        nltk_self = len(hypotheses) * nltk_seconds_per_sentence(
            hypotheses, references, sentences, leave_one_out=True)
        print(f"nltk       BLEU {nltk_bleu:8.0f} s   Self-BLEU {nltk_self:8.0f} s   "
              f"total {nltk_bleu + nltk_self:8.0f} s   (extrapolated from {sentences} "
              f"sentences; ours is x{(nltk_bleu + nltk_self) / (ours_bleu + ours_self):.0f} "
              "faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
