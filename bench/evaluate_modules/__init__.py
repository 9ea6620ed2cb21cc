"""Hugging Face `evaluate` modules of the benchmark's text metrics, loadable offline.

    import evaluate
    from bench.evaluate_modules import module_path

    bleu = evaluate.load(module_path("ganbench_bleu"))
    bleu.compute(predictions=samples, reference_set=test_sentences)

Each module is a folder <name>/<name>.py; it computes with bench.metrics, so ganbench must be
importable where the module runs. Text is in the evaluation tokenization (tokens joined by
blanks) and is split on whitespace.
"""

from __future__ import annotations

from pathlib import Path

MODULE_NAMES = ("ganbench_bleu", "ganbench_self_bleu", "ganbench_distinct")


def module_path(name: str) -> str:
    """The local folder of an evaluate module, for `evaluate.load(module_path(name))`."""
    if name not in MODULE_NAMES:
        raise ValueError(f"unknown evaluate module {name!r}; known: {', '.join(MODULE_NAMES)}")
    return str(Path(__file__).resolve().parent / name)
