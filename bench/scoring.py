"""`ganbench score`: the metrics of any file of samples, ours or anybody's, the same way."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.corpora import Corpus, load_corpus, read_lines
from bench.errors import GanbenchError
from bench.evaluation import BLEU_ORDERS, distribution_metrics_apply, text_metrics
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


def score_real_text(dataset: str, num_samples: int, data_dir: Path | None = None,
                    with_disc_acc: bool = False, with_embeddings: bool = False, seed: int = 0,
                    disc_acc_replicates: int = 3) -> dict[str, Any]:
    """The real-text reference row (METRICS.md): the test split cut in two halves by a seeded
    permutation; ``num_samples`` sentences of one half scored as if a model had written them,
    with the other half as the references (BLEU), the classifier's real pool (disc_acc) and
    the distribution metrics' real side. What each metric gives for real text, at a table's N.
    """
    corpus = load_corpus(dataset, data_dir)
    order = np.random.default_rng(seed).permutation(len(corpus.test))
    half = len(order) // 2
    if num_samples < 2 or num_samples > half:
        raise GanbenchError(f"{dataset}: num_samples must be in 2..{half} (half the test split)")
    generated = [corpus.test[i] for i in order[:num_samples]]
    references = [corpus.test[i] for i in order[half:]]
    holder = Corpus(f"{corpus.name}_half", corpus.train, references, corpus.tokenization)
    result: dict[str, Any] = {"dataset": dataset, "samples": num_samples,
                              "references": len(references), "seed": seed,
                              "orders": list(BLEU_ORDERS)}
    result.update(text_metrics(generated, holder))
    if corpus.is_oracle:
        result["nll_oracle"] = float(corpus.oracle.nll([[int(t) for t in s] for s in generated]))
    if with_disc_acc:
        from bench.metrics.disc_acc import DiscAccSettings, disc_acc

        result.update(disc_acc(references, generated, seed=seed,
                               settings=DiscAccSettings(replicates=disc_acc_replicates)))
    if distribution_metrics_apply(with_embeddings, corpus):
        from bench.metrics.embeddings import embedding_metrics

        text = [Tokenization.detokenize(s) for s in generated]
        reference_text = [Tokenization.detokenize(r) for r in references[:num_samples]]
        result.update(embedding_metrics(text, reference_text, seed=seed))
    return result


def write_real_text_rows(runs: list[Any], out: Path, data_dir: Path | None = None) -> None:
    """The real-text reference row of each corpus of a suite's runs (score_real_text), at the
    first run's evaluation settings for that corpus: N (capped at half the test split),
    disc_acc, the distribution metrics. Written once to out/real_text/<dataset>.json and kept
    while the settings are the same (a re-run suite resumes)."""
    import json

    from bench.config import build_config
    from bench.evaluation import EvalConfig
    from bench.records import REAL_TEXT_FOLDER, write_json_atomic

    first: dict[str, Any] = {}
    for spec in runs:
        first.setdefault(spec.dataset, spec)
    for dataset, spec in first.items():
        settings = build_config(EvalConfig, spec.evaluation)
        corpus = load_corpus(dataset, data_dir)
        wanted = {"num_samples": min(settings.num_samples, len(corpus.test) // 2),
                  "disc_acc": settings.disc_acc,
                  "disc_acc_replicates": settings.disc_acc_replicates,
                  "embeddings": settings.embedding_metrics, "seed": 0}
        path = Path(out) / REAL_TEXT_FOLDER / f"{corpus.name.replace('/', '_')}.json"
        if path.exists() and json.loads(path.read_text()).get("settings") == wanted:
            continue
        # Seconds to a minute (disc_acc's classifiers, the encoder): said before, not after.
        print(f"real-text reference row of {corpus.name} (N = {wanted['num_samples']}): "
              f"{path}", file=sys.stderr, flush=True)
        metrics = score_real_text(dataset, wanted["num_samples"], data_dir,
                                  with_disc_acc=wanted["disc_acc"],
                                  with_embeddings=wanted["embeddings"], seed=0,
                                  disc_acc_replicates=wanted["disc_acc_replicates"])
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"dataset": corpus.name, "settings": wanted,
                                 "metrics": {k: v for k, v in metrics.items()
                                             if isinstance(v, (int, float))}})
