"""Issue 11, items 5-7: budgets count construction, sampling FLOPs and the updates of each
network; estimator fixes (sequential discriminator loss, sampled actions only, log-probs of the
distribution sampled from, the real vocabulary of the mixed corpus); divergence by loss bound."""

import json
import math
import time
from dataclasses import dataclass

import pytest
import torch

from baselines.primitives import estimators as est
from baselines.primitives import hf_policy as policy
from bench.budget import Budget, BudgetClock
from bench.config import build_config
from bench.divergence import nll_divergence
from bench.text import EOS, PAD
from bench.variant import StepReport, Variant

LSTM_TINY = {"embedding_dim": 8, "hidden_dim": 8, "batch_size": 8, "d_embedding_dim": 8,
             "d_hidden_dim": 8}


# -- item 5: what the budget counts ----------------------------------------------------------


@dataclass
class NoFields:
    """A config with nothing to set (the runner writes configs into checkpoints)."""


class SlowToBuild(Variant):
    """Takes 0.4 s to build, 0.02 s a step."""

    name = "slow_to_build"
    Config = NoFields

    def __init__(self, config, corpus, device, seed):
        super().__init__(config, corpus, device, seed)
        time.sleep(0.4)

    def train_step(self, progress):
        time.sleep(0.02)
        return StepReport(tokens=1, generator_updates=0, discriminator_updates=3)

    def sample(self, n, temperature, seed):
        return ["a"] * n

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def run_slow(tmp_path, tiny_corpus, budget):
    from bench.evaluation import EvalConfig
    from bench.runner import PreparedRun, RunOptions, RunSpec, _build_variant, _resume

    spec = RunSpec("slow_to_build", "coco_tiny", budget)
    run = PreparedRun(spec, SlowToBuild, NoFields(), EvalConfig(), Budget.parse(budget),
                      tiny_corpus, torch.device("cpu"), tmp_path / "run")
    run.run_dir.mkdir()
    variant, construction = _build_variant(run)
    clock, _ = _resume(run, RunOptions(tmp_path), variant, construction, no_selection())
    return run, variant, clock


def no_selection():
    from bench.selection import Selection

    return Selection("last", 0)


def test_construction_counts_in_seconds_budgets(tmp_path, tiny_corpus):
    from bench.runner import RunOptions, _train

    run, variant, clock = run_slow(tmp_path, tiny_corpus, "1s")
    _train(run, RunOptions(tmp_path, quiet=True), variant, clock, no_selection())
    summary = clock.summary()
    assert 0.4 <= summary["construction_seconds"] < 0.6
    # 1 s in all: ~0.6 s of 0.02 s steps are left after building (~30 steps, not ~50).
    assert 1.0 <= summary["seconds"] < 1.1
    assert 20 <= summary["steps"] <= 32
    # The updates of each network are counted apart, from the step reports.
    assert summary["generator_updates"] == 0
    assert summary["discriminator_updates"] == 3 * summary["steps"]


def test_construction_is_recorded_but_not_charged_to_steps(tmp_path, tiny_corpus):
    _, _, clock = run_slow(tmp_path, tiny_corpus, "5steps")
    assert clock.construction_seconds >= 0.4 and clock.progress() == 0.0


def test_clock_state_round_trips_the_new_counters():
    clock = BudgetClock(Budget.parse("9s"), torch.device("cpu"))
    clock.charge_construction(1.5)
    clock.record_step(4, 2.0, generator_updates=1, discriminator_updates=2)
    again = BudgetClock(Budget.parse("9s"), torch.device("cpu"), **clock.state())
    assert again.summary() == clock.summary()
    assert again.summary()["seconds"] == 1.5 and again.discriminator_updates == 2


def test_lstm_gan_counts_generator_and_discriminator_updates(tiny_corpus):
    from baselines.lstm_gan import LSTMGAN

    config = build_config(LSTMGAN.Config, {**LSTM_TINY, "mle_fraction": 0.5,
                                           "disc_pretrain_fraction": 0.1, "d_epochs": 2})
    variant = LSTMGAN(config, tiny_corpus, torch.device("cpu"), 0)
    clock = BudgetClock(Budget.parse("10steps"), torch.device("cpu"))
    while not clock.exhausted():
        report = variant.train_step(clock.progress())
        clock.record_step(report.tokens, report.flops, report.generator_updates,
                          report.discriminator_updates)
    # By hand: progress 0.0-0.4 MLE (5 generator updates), 0.5 discriminator pretraining (one
    # round of d_epochs = 2 updates), 0.6-0.9 four adversarial rounds (1 generator update and
    # one discriminator round of 2 updates each): 5 + 4 = 9 and 2 + 8 = 10.
    assert (clock.generator_updates, clock.discriminator_updates) == (9, 10)


def test_augmentation_sampling_counts_its_flops(tiny_corpus):
    from baselines.synthetic_augmentation import (
        PHASE_SAMPLE,
        SyntheticAugmentation,
        SyntheticAugmentationConfig,
    )

    config = build_config(SyntheticAugmentationConfig, {
        "source": "mle_lstm", "target": "mle_lstm", "source_share": 0.5, "sample_chunk": 30,
        "source_set": "embedding_dim=8;hidden_dim=8", "target_set": "embedding_dim=8"})
    variant = SyntheticAugmentation(config, tiny_corpus, torch.device("cpu"), seed=0)
    variant.phase = PHASE_SAMPLE
    report = variant.train_step(0.6)
    assert len(variant.generated) == 30
    assert (report.generator_updates, report.discriminator_updates) == (0, 0)
    # By hand: vocabulary V = |vocab|, embedding 8, hidden 8. Non-embedding weights: the LSTM
    # (4 gates x (8 x 8 input + 8 x 8 recurrent + 2 x 8 biases)) and the output layer
    # (V x 8 + V); 2 FLOPs per multiply-add, one forward per sampled token (EOS included).
    vocab = len(tiny_corpus.vocab)
    per_token = 2 * (4 * (64 + 64 + 16) + 8 * vocab + vocab)
    tokens = sum(len(tiny_corpus.tokenization.tokenize(t)) + 1 for t in variant.generated)
    assert report.tokens == tokens and report.flops == pytest.approx(tokens * per_token)


def test_gpt2_bert_gan_warmup_and_adversarial_count_sampling_alike(coco):
    """Both phases charge each sampled token one generator forward: the warm-up step's FLOPs
    are its samples' forwards plus the discriminator's update; the adversarial step's are the
    same forwards, the reference's and the training pass (3x) over those tokens, the reward
    pass and the discriminator's update. Counted here from what the steps really drew."""
    from baselines.gpt2_bert_gan import GPT2BertGAN
    from bench.corpora import Corpus

    corpus = Corpus("coco_tiny", coco.train[:300], coco.test[:100], coco.tokenization)
    tiny = {"n_layer": 1, "n_embd": 32, "n_head": 2, "bpe_vocab_size": 300, "d_vocab_size": 300,
            "d_layers": 1, "d_hidden": 32, "d_heads": 2, "d_intermediate": 64,
            "num_groups": 2, "group_size": 2, "max_new_tokens": 8, "batch_size": 4}
    config = build_config(GPT2BertGAN.Config, {**tiny, "mle_fraction": 0.0,
                                               "d_warmup_fraction": 0.5})
    variant = GPT2BertGAN(config, corpus, torch.device("cpu"), 0)
    drawn, d_pieces = [], []
    sample_fakes, d_step = variant._sample_fakes, variant.discriminator_step

    def counting_sample():
        samples, fakes = sample_fakes()
        drawn.append((samples.num_tokens(), int(fakes.attention_mask.sum())))
        return samples, fakes

    def counting_d_step(fakes):
        logs, pieces = d_step(fakes)
        d_pieces.append(pieces)
        return logs, pieces

    variant._sample_fakes, variant.discriminator_step = counting_sample, counting_d_step
    g, d = variant.generator_flops_per_token(), variant.discriminator_flops_per_token()
    warmup = variant.train_step(0.25)
    assert warmup.discriminator_updates == 1 and warmup.generator_updates == 0
    (tokens, _), = drawn
    assert warmup.tokens == tokens > 0
    assert warmup.flops == pytest.approx(tokens * g + 3 * d_pieces[0] * d)
    drawn.clear(), d_pieces.clear()
    adversarial = variant.train_step(0.75)
    assert adversarial.generator_updates == 1 and adversarial.discriminator_updates == 1
    (tokens, fake_pieces), = drawn
    forwards = 1 + (variant.reference is not None)  # the sampling and the reference's pass
    assert adversarial.tokens == tokens > 0
    assert adversarial.flops == pytest.approx(
        tokens * g * (3 + forwards) + fake_pieces * d + 3 * d_pieces[0] * d)


# -- item 6: estimator fixes ---------------------------------------------------------------


def test_sequential_discriminator_loss_by_hand():
    real = torch.tensor([[0.0, math.log(3.0)]])  # sigmoid: 1/2, 3/4
    fake = torch.tensor([[0.0, 0.0]])
    real_mask = torch.tensor([[True, True]])
    fake_mask = torch.tensor([[True, False]])
    # Real: mean(-log 1/2, -log 3/4); fake: -log(1 - 1/2) at its one counted position.
    by_hand = 0.5 * (0.5 * (math.log(2) + math.log(4 / 3)) + math.log(2))
    assert est.sequential_bce_loss(real, real_mask, fake, fake_mask).item() == pytest.approx(
        by_hand)


def test_dense_rewards_train_the_discriminator_at_every_prefix(tiny_corpus):
    from baselines.lstm_gan import LSTMGAN

    config = build_config(LSTMGAN.Config, {**LSTM_TINY, "dense_rewards": True})
    variant = LSTMGAN(config, tiny_corpus, torch.device("cpu"), 0)
    outputs = []

    def keep(module, inputs, output):
        output.retain_grad()
        outputs.append(output)

    variant.discriminator.register_forward_hook(keep)
    real = variant.train_data.targets[:4]
    fake = variant.train_data.targets[4:8]
    loss, _ = variant.discriminator_loss(real, fake)
    loss.backward()
    for output, tokens in zip(outputs, (real, fake)):
        counted = tokens != PAD
        # Every counted prefix's logit gets a gradient (not only the last one), padding none.
        assert bool((output.grad[counted] != 0).all())
        assert bool((output.grad[~counted] == 0).all())


def test_sampled_action_mask_by_hand():
    tokens = torch.tensor([[5, 6, EOS], [5, EOS, PAD], [EOS, PAD, PAD]])
    # The last position's EOS is forced at the cap: no action; a drawn EOS is one.
    expected = torch.tensor([[True, True, False], [True, True, False], [True, False, False]])
    assert torch.equal(est.sampled_action_mask(tokens, PAD), expected)


def test_sampling_log_probs_by_hand():
    # Vocabulary of 4; id 0 is never sampled. logits [ln 8, 0, ln 3, 0]: over ids 1..3 the
    # sampler draws from [1, 3, 1] / 5.
    logits = torch.tensor([[[math.log(8.0), 0.0, math.log(3.0), 0.0]] * 2])
    tokens = torch.tensor([[2, 0]])
    got = est.sampling_log_probs(logits, tokens, never_sampled=(0,))
    assert got[0, 0].item() == pytest.approx(math.log(3 / 5))
    assert got[0, 1].item() == 0.0  # a never-sampled id (padding) is no action
    # At temperature 2 the weights are [1, sqrt 3, 1].
    hot = est.sampling_log_probs(logits, tokens, never_sampled=(0,), temperature=2.0)
    assert hot[0, 0].item() == pytest.approx(math.log(math.sqrt(3) / (2 + math.sqrt(3))))


def test_policy_gradient_ignores_the_forced_eos(tiny_corpus):
    from baselines.lstm_gan import LSTMGAN

    config = build_config(LSTMGAN.Config, {**LSTM_TINY, "baseline": "none",
                                           "min_entropy": 0.0})
    width = tiny_corpus.max_length + 1
    samples = torch.full((2, width), 7)
    samples[:, -1] = EOS  # both ran to the cap: the EOS is forced
    grads = []
    for last_reward in (0.0, 1000.0):
        torch.manual_seed(0)  # the same weights in both
        variant = LSTMGAN(config, tiny_corpus, torch.device("cpu"), 0)
        rewards = torch.ones(2, width)
        rewards[:, -1] = last_reward
        variant.g_optimizer.step = lambda: None  # keep the weights, read the gradient
        torch.manual_seed(1)  # the same dropout masks in both
        variant.policy_gradient_step(samples, rewards)
        grads.append(variant.generator.output.bias.grad.clone())
    assert torch.allclose(grads[0], grads[1])


def test_gpt2_log_probs_exclude_banned_ids_and_forced_eos():
    from baselines.primitives.generation import Samples

    logits = torch.tensor([[[math.log(8.0), 0.0, math.log(3.0)]]])
    got = policy.masked_token_log_probs(logits, torch.tensor([[2]]), torch.tensor([[True]]),
                                        banned_ids=[0])
    assert got.item() == pytest.approx(math.log(3 / 4))  # [1, 3] / 4 without id 0
    # Prompt BOS + 1 given token; max_new_tokens = 2: position 2 of tokens is the forced EOS.
    eos = 9
    samples = Samples(torch.tensor([[1, 4], [1, 4]]), torch.tensor([[5, 6, eos], [5, eos, eos]]),
                      torch.tensor([[True, True, True], [True, True, False]]))
    batch = samples.action_batch(max_new_tokens=2)
    assert batch.mask.tolist() == [[False, True, True, False], [False, True, True, False]]
    assert samples.as_batch().mask[0, 3]  # as_batch itself still counts it (for the NLL)
    # With the lengths on the host (as sample_tokens returns them) the counts come from them,
    # by hand: 3 + 2 counted, 4 actions (row 0's forced EOS is not one).
    counted = Samples(samples.prompts, samples.tokens, samples.mask, torch.tensor([3, 2]))
    assert counted.num_tokens() == 5 and counted.as_batch().counted == 5
    assert counted.action_batch(max_new_tokens=2).counted == 4 == int(batch.mask.sum())


def test_mixed_corpus_keeps_the_real_vocabulary(tiny_corpus):
    from baselines.synthetic_augmentation import SyntheticAugmentation, SyntheticAugmentationConfig

    config = build_config(SyntheticAugmentationConfig, {
        "source": "mle_lstm", "target": "mle_lstm", "source_set": "embedding_dim=8",
        "target_set": "embedding_dim=8"})
    variant = SyntheticAugmentation(config, tiny_corpus, torch.device("cpu"), seed=0)
    variant.synthetic = ["a zzyzxword on the table ."]
    variant._build_target()
    vocab = variant.target.corpus.vocab
    assert "zzyzxword" not in vocab.index and len(vocab) == len(tiny_corpus.vocab)


# -- item 7: divergence -------------------------------------------------------------------------


def test_nll_divergence_bound_by_hand():
    # |V| = 100: bound 3 ln 100 = 13.8; checked after 10 warm-up steps; non-finite at once.
    assert nll_divergence(13.0, 100, 11) is None
    assert "above" in nll_divergence(14.0, 100, 11)
    assert nll_divergence(1e9, 100, 10) is None
    assert "nan" in nll_divergence(float("nan"), 100, 1)
    assert nll_divergence(None, 100, 50) is None


def test_mle_lstm_at_a_huge_learning_rate_ends_diverged(tmp_path, tiny_text_dir, capsys):
    from bench.cli import main

    main(["run", "--variant", "mle_lstm", "--dataset", str(tiny_text_dir), "--budget",
          "40steps", "--out", str(tmp_path), "--quiet", "--set", "learning_rate=1e8",
          "--set", "embedding_dim=16", "--set", "hidden_dim=16", "--eval", "num_samples=20",
          "--eval", "disc_acc=false", "--eval", "reference_metrics=false"])
    record = json.loads(next(tmp_path.rglob("record.json")).read_text())
    assert record["status"] == "diverged" and "MLE loss" in record["reason"]
    assert 10 < record["failed_at_step"] < 40 and record["metrics"] == {}


def test_a_data_parallel_seconds_budget_charges_device_seconds():
    """Issue 21: N ranks for W wall seconds used N x W device-seconds of a seconds budget."""
    cpu = torch.device("cpu")
    clock = BudgetClock(Budget.parse("10s"), cpu, world_size=4, seconds=2.4)
    assert clock.used() == pytest.approx(9.6) and not clock.exhausted()
    assert clock.progress() == pytest.approx(0.96)
    clock = BudgetClock(Budget.parse("10s"), cpu, world_size=4, seconds=2.6)
    assert clock.exhausted()
    summary = clock.summary()
    assert summary["seconds"] == pytest.approx(2.6)  # wall
    assert summary["device_seconds"] == pytest.approx(10.4) and summary["world_size"] == 4
    # One process: device-seconds are wall seconds; steps budgets are not scaled.
    assert BudgetClock(Budget.parse("10s"), cpu, seconds=2.6).used() == pytest.approx(2.6)
    steps = BudgetClock(Budget.parse("8steps"), cpu, world_size=4, steps=4)
    assert steps.progress() == 0.5


FIRST_AND_SECOND_BUILD = """
import json, sys
import torch
from bench.budget import Budget
from bench.config import build_config
from bench.corpora import load_corpus
from bench.evaluation import EvalConfig
from bench.registry import get_variant
from bench.runner import PreparedRun, RunSpec, _build_variant

corpus = load_corpus("coco", sys.argv[1])
corpus = corpus.subsample_train(300, seed=0)
variant_class = get_variant("gpt2_mle")
config = build_config(variant_class.Config, {"n_layer": 1, "n_embd": 32, "n_head": 2,
                                             "bpe_vocab_size": 300})
run = PreparedRun(RunSpec("gpt2_mle", "coco", "5s"), variant_class, config, EvalConfig(),
                  Budget.parse("5s"), corpus, torch.device("cpu"), None)
charged = [_build_variant(run)[1] for _ in range(3)]
print(json.dumps({"charged": charged, "transformers": "transformers" in sys.modules}))
"""


def test_a_processs_first_gpt2_build_is_not_charged_the_transformers_import(data_dir):
    """Issue 21: gpt2_mle imported transformers inside its construction, so the first GPT-2
    run of a process was charged the import (4.61 s against 0.75 and 0.53 s). Built in a
    fresh process, the first build is now charged about what the later ones are."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", FIRST_AND_SECOND_BUILD, str(data_dir)],
                            capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    first, *later = out["charged"]
    assert out["transformers"]
    # Building a 300-sentence BPE and a tiny GPT-2 takes well under a second; the import
    # alone took 2.5 s warm.
    assert first < 2 * max(later) + 0.3, out["charged"]
