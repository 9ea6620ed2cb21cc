"""Synthetic augmentation: the budget split adds up, the mix and the filter do what they say."""

import pytest
import torch

from baselines.mle_lstm import MLELSTM
from baselines.synthetic_augmentation import (
    PHASE_SAMPLE,
    PHASE_SOURCE,
    PHASE_TARGET,
    SyntheticAugmentation,
    SyntheticAugmentationConfig,
    select_top,
)
from bench.budget import Budget, BudgetClock
from bench.config import build_config
from bench.errors import GanbenchError
from bench.suite import load_suite

TINY = "embedding_dim=8;hidden_dim=8;batch_size=16"


def train(variant, steps):
    clock = BudgetClock(Budget.parse(f"{steps}steps"), torch.device("cpu"))
    phases = []
    while not clock.exhausted():
        report = variant.train_step(clock.progress())
        clock.record_step(report.tokens, report.flops)
        phases.append(int(report.logs["train/phase_augmentation"]))
    return phases


def test_select_top_keeps_the_highest_scores_in_original_order():
    texts = ["a", "b", "c", "d"]
    assert select_top(texts, [0.1, 0.9, 0.5, 0.7], 2) == ["b", "d"]
    assert select_top(texts, None, 3) == ["a", "b", "c"]


def test_budget_split_and_mix_ratio(tiny_corpus):
    config = build_config(SyntheticAugmentationConfig, {
        "source": "mle_lstm", "target": "mle_lstm", "source_share": 0.4,
        "synthetic_ratio": 0.5, "sample_chunk": 40, "source_set": TINY, "target_set": TINY})
    variant = SyntheticAugmentation(config, tiny_corpus, torch.device("cpu"), seed=0)
    phases = train(variant, 30)
    # (a) exactly the first 40% of the steps; (b) 150 sentences in chunks of 40 = 4 steps;
    # (c) the rest. Together: the whole budget, nothing outside it.
    assert phases.count(PHASE_SOURCE) == 12
    assert phases.count(PHASE_SAMPLE) == 4
    assert phases.count(PHASE_TARGET) == 30 - 12 - 4
    assert len(variant.generated) == 150
    assert len(variant.synthetic) == round(0.5 * len(tiny_corpus.train)) == 150
    mixed = variant.target.corpus
    assert len(mixed.train) == len(tiny_corpus.train) + sum(
        1 for s in variant.synthetic if s.strip())
    assert mixed.test is tiny_corpus.test and mixed.max_length == tiny_corpus.max_length
    assert variant.sample(5, 1.0, seed=1)  # the target is what gets evaluated


class ScoredSource(MLELSTM):
    name = "scored"
    """A source whose 'discriminator' prefers short sentences: the filter must keep those."""

    def realness_scores(self, texts):
        return [-float(len(t.split())) for t in texts]


def test_filter_keeps_the_top_fraction_by_the_source_discriminator(tiny_corpus, monkeypatch):
    import bench.registry

    real_discover = bench.registry.discover
    monkeypatch.setattr(bench.registry, "discover",
                        lambda: {**real_discover(), "scored": ScoredSource})
    config = build_config(SyntheticAugmentationConfig, {
        "source": "scored", "target": "mle_lstm", "source_share": 0.2,
        "synthetic_ratio": 0.2, "keep_top": 0.25, "sample_chunk": 1000,
        "source_set": TINY, "target_set": TINY})
    variant = SyntheticAugmentation(config, tiny_corpus, torch.device("cpu"), seed=0)
    train(variant, 6)
    assert len(variant.generated) == 4 * 60 and len(variant.synthetic) == 60
    kept_lengths = sorted(len(s.split()) for s in variant.synthetic)
    all_lengths = sorted(len(s.split()) for s in variant.generated)
    assert max(kept_lengths) <= all_lengths[59]  # the shortest quarter (ties aside)


def test_filter_needs_a_discriminator(tiny_corpus):
    config = build_config(SyntheticAugmentationConfig, {
        "source": "mle_lstm", "keep_top": 0.5, "source_set": TINY, "target_set": TINY})
    with pytest.raises(GanbenchError, match="needs a source with a discriminator"):
        SyntheticAugmentation(config, tiny_corpus, torch.device("cpu"), seed=0)


def test_resume_mid_target_phase_gives_the_same_model(tiny_corpus):
    from bench.checkpoint import load_state, save_state

    config = build_config(SyntheticAugmentationConfig, {
        "source": "mle_lstm", "target": "mle_lstm", "source_share": 0.3,
        "synthetic_ratio": 0.3, "sample_chunk": 100, "source_set": TINY, "target_set": TINY})
    torch.manual_seed(0)  # as the harness does before building a variant
    straight = SyntheticAugmentation(config, tiny_corpus, torch.device("cpu"), seed=3)
    train(straight, 20)
    torch.manual_seed(0)
    first = SyntheticAugmentation(config, tiny_corpus, torch.device("cpu"), seed=3)
    clock = BudgetClock(Budget.parse("20steps"), torch.device("cpu"))
    for _ in range(12):
        clock.record_step(first.train_step(clock.progress()).tokens)
    assert first.phase == PHASE_TARGET
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        save_state(Path(folder) / "c.safetensors", first.state_dict())
        resumed = SyntheticAugmentation(config, tiny_corpus, torch.device("cpu"), seed=3)
        resumed.load_state_dict(load_state(Path(folder) / "c.safetensors"))
    while not clock.exhausted():
        clock.record_step(resumed.train_step(clock.progress()).tokens)
    for a, b in zip(straight.target.generator.parameters(),
                    resumed.target.generator.parameters()):
        assert torch.equal(a, b)


def test_every_augmentation_comparison_has_a_real_only_control():
    suite = load_suite("augmentation")
    controls = {(r.variant, r.dataset, r.budget, r.seed, r.train_subsample)
                for r in suite.runs if r.variant != "synthetic_augmentation"}
    augmented = [r for r in suite.runs if r.variant == "synthetic_augmentation"]
    assert augmented
    for run in augmented:
        target = run.overrides.get("target", "mle_lstm")
        assert (target, run.dataset, run.budget, run.seed, run.train_subsample) in controls


def test_a_source_step_cut_by_its_share_moves_on_to_sampling(tiny_corpus):
    source_set = ("embedding_dim=8;hidden_dim=8;batch_size=8;num_rollouts=2;d_embedding_dim=8;"
                  "d_filter_sizes=2;d_num_filters=4;mle_fraction=0.5;"
                  "disc_pretrain_fraction=0.1;rollout_max_rows=40")
    config = build_config(SyntheticAugmentationConfig, {
        "source": "seqgan", "target": "mle_lstm", "source_share": 0.5, "synthetic_ratio": 0.1,
        "source_set": source_set, "target_set": TINY})
    variant = SyntheticAugmentation(config, tiny_corpus, torch.device("cpu"), seed=0)
    variant.progress_now = lambda: 0.5  # the source's share is spent: its clock reads 1.0
    assert variant.source.budget_spent()
    before = {k: v.clone() for k, v in variant.source.generator.state_dict().items()}
    # Progress 0.45 puts the source (at 0.9 of its share) in an adversarial round, whose
    # rollouts find the share spent: the step is dropped and the run goes on to sampling.
    report = variant.train_step(0.45)
    assert report.tokens == 0 and report.logs["train/phase_augmentation"] == PHASE_SOURCE
    assert variant.phase == PHASE_SAMPLE
    after = variant.source.generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert variant.train_step(0.46).logs["train/phase_augmentation"] == PHASE_SAMPLE
