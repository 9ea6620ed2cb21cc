"""`ganbench score`: the metrics of any file of samples, ours or anybody's, the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.corpora import Corpus, load_corpus, read_lines
from bench.errors import GanbenchError
from bench.evaluation import BLEU_ORDERS, text_metrics
from bench.text import Tokenization


def check_oracle_samples(tokenized: list[list[str]], path: Path) -> None:
    """Samples scored against the oracle must be its token ids: integers in 0..VOCAB_SIZE-1."""
    from bench.oracle import VOCAB_SIZE

    for line, tokens in enumerate(tokenized, start=1):
        for token in tokens:
            if not (token.isascii() and token.isdigit()) or int(token) >= VOCAB_SIZE:
                raise GanbenchError(f"{path}: sample {line} holds {token[:20]!r}, not an oracle "
                                    f"token id (0..{VOCAB_SIZE - 1})")


def score_file(samples_path: Path, dataset: str | None = None, refs: Path | None = None,
               data_dir: Path | None = None, with_disc_acc: bool = False, seed: int = 0
               ) -> dict[str, Any]:
    from bench.metrics.diversity import copy_rate, distinct_n
    from bench.metrics.reference import rouge_l, sacrebleu_score

    samples = read_lines(Path(samples_path))
    if len(samples) < 2:
        raise GanbenchError(f"{samples_path}: needs at least 2 samples (Self-BLEU)")
    corpus: Corpus | None = None
    if dataset is not None:
        corpus = load_corpus(dataset, data_dir)
        tokenization = corpus.tokenization
        references = corpus.test
        reference_text = corpus.test_text()
    else:
        reference_lines = read_lines(Path(refs))
        tokenization = Tokenization.infer(reference_lines)
        references = tokenization.tokenize_all(reference_lines)
        reference_text = [Tokenization.detokenize(r) for r in references]
    tokenized = tokenization.tokenize_all(samples)
    if corpus is not None and corpus.is_oracle:
        check_oracle_samples(tokenized, samples_path)
    holder = corpus or Corpus("refs", references, references, tokenization)
    result: dict[str, Any] = {"samples": len(samples), "references": len(references),
                              "orders": list(BLEU_ORDERS)}
    result.update(text_metrics(tokenized, holder))
    sacre = sacrebleu_score([Tokenization.detokenize(s) for s in tokenized], reference_text)
    result["sacrebleu"] = sacre["score"]
    result["sacrebleu_signature"] = sacre["signature"]
    result["rouge_l"] = rouge_l([Tokenization.detokenize(s) for s in tokenized], reference_text)
    for n in (1, 2, 3, 4):
        result[f"distinct_{n}"] = distinct_n(tokenized, n)
    if corpus is not None:
        result["copy_rate"] = copy_rate(tokenized, corpus.train)
        result["mean_length"] = float(np.mean([len(s) for s in tokenized]))
    if with_disc_acc:
        from bench.metrics.disc_acc import disc_acc

        # The real pool is the test split (or the references): METRICS.md.
        result.update(disc_acc(references, tokenized, seed=seed))
    return result
