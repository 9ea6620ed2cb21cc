"""Hugging Face `evaluate` modules of the benchmark's text metrics, loadable offline.

    import evaluate
    from bench.evaluate_modules import module_path

    bleu = evaluate.load(module_path("ganbench_bleu"))
    bleu.compute(predictions=samples, reference_set=test_sentences)

Each module is a folder <name>/<name>.py; it computes with bench.metrics, so ganbench must be
importable where the module runs. Text is raw text: the modules tokenize it with the corpus's
evaluation tokenization (METRICS.md), never by splitting on blanks: ``dataset="coco"`` (any
named corpus) takes that corpus's tokenization; without it, ganbench_bleu infers it from the
reference set as `ganbench score --refs` does (lower-cased where the references are), and the
others split words and punctuation without changing case.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.text import Tokenization

MODULE_NAMES = ("ganbench_bleu", "ganbench_self_bleu", "ganbench_distinct")


def evaluation_tokenization(dataset: str | None = None,
                            reference_text: Sequence[str] | None = None) -> Tokenization:
    """The tokenization a module applies to its raw text (see the module docstring)."""
    if dataset is not None:
        from bench.corpora import load_corpus

        return load_corpus(dataset).tokenization
    if reference_text:
        return Tokenization.infer(reference_text)
    return Tokenization()


def module_path(name: str) -> str:
    """The local folder of an evaluate module, for `evaluate.load(module_path(name))`."""
    if name not in MODULE_NAMES:
        raise ValueError(f"unknown evaluate module {name!r}; known: {', '.join(MODULE_NAMES)}")
    return str(Path(__file__).resolve().parent / name)
