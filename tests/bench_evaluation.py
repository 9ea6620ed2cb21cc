"""Evaluation time against training time, per variant, at the standard suite's settings.

Issue 12's goal: at the default N of bench/suites/standard.toml, evaluating a run takes at
most its 30 s training budget. Training for the full budget per variant would take minutes, so
each variant here trains a fixed few steps (TRAIN_STEPS; an undertrained generator writes long,
noisy sentences, which makes sampling and the metrics slower than on a trained one: a
conservative case), then ``evaluate_variant`` runs once at the suite's evaluation settings on
each of the suite's corpora (the oracle, coco, news). The record (``extra_info``) gives

- ``eval_seconds`` and each phase's seconds (as the run record has them);
- ``eval_over_budget``: eval_seconds / 30 s, the goal being <= 1;
- ``eval_in_train_steps``: eval_seconds over the seconds per training step measured in the
  same process just before, so that a loaded machine, which slows both alike, moves it less.

One round each (an evaluation takes seconds to tens of seconds): timings on the shared 2-core
machine are noisy; read the ratio, not the absolute seconds.

    OMP_NUM_THREADS=1 python -m pytest -p no:xdist tests/bench_evaluation.py --benchmark-only
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from bench.config import build_config
from bench.evaluation import EvalConfig, evaluate_variant
from bench.registry import get_variant
from bench.suite import load_suite

SUITE = Path(__file__).resolve().parent.parent / "bench" / "suites" / "standard.toml"
BUDGET_SECONDS = 30.0
TRAIN_STEPS = 20


def standard_settings() -> tuple[list[str], EvalConfig]:
    suite = load_suite(str(SUITE))
    variants = list(dict.fromkeys(spec.variant for spec in suite.runs))
    return variants, build_config(EvalConfig, suite.runs[0].evaluation)


VARIANTS, SETTINGS = standard_settings()
# The standard suite's corpora, each by the session fixture (tests/conftest.py) that loads it.
CORPUS_FIXTURES = {"oracle": "oracle_corpus", "coco": "coco", "news": "news"}


@pytest.mark.parametrize("dataset", CORPUS_FIXTURES)
@pytest.mark.parametrize("name", VARIANTS)
def test_evaluation_against_training(benchmark, name, dataset, request):
    if benchmark.disabled:  # under pytest-xdist or --benchmark-disable: a timing, nothing else
        pytest.skip("a timing at the standard settings (minutes): run it with -p no:xdist "
                    "--benchmark-only")
    corpus = request.getfixturevalue(CORPUS_FIXTURES[dataset])
    torch.manual_seed(0)
    variant_class = get_variant(name)
    config = build_config(variant_class.Config, {}, base=variant_class.corpus_defaults(corpus))
    variant = variant_class(config, corpus, torch.device("cpu"), seed=0)
    started = time.perf_counter()
    for step in range(TRAIN_STEPS):
        variant.train_step(step / TRAIN_STEPS)
    seconds_per_step = (time.perf_counter() - started) / TRAIN_STEPS

    result = benchmark.pedantic(evaluate_variant, args=(variant, corpus, SETTINGS, 0),
                                rounds=1, iterations=1)
    timings = result[3]
    eval_seconds = benchmark.stats.stats.median if benchmark.stats else float("nan")
    benchmark.extra_info.update({
        "variant": name, "dataset": dataset, "num_samples": SETTINGS.num_samples,
        "eval_seconds": eval_seconds, "eval_over_budget": eval_seconds / BUDGET_SECONDS,
        "eval_in_train_steps": eval_seconds / seconds_per_step,
        **{k: v for k, v in timings.items() if k.endswith("_seconds")}})
    assert result[0]["num_samples"] == SETTINGS.num_samples
