"""LSTM GAN with tiny models: every generator loss and baseline updates the generator, the
rewards are the discriminator's, the critic is clipped, checkpoints resume, divergence ends the
run, and a run through the real CLI."""

import json
import math

import pytest
import torch

from baselines.primitives import estimators as est
from bench.checkpoint import load_state, save_state
from bench.config import build_config
from bench.errors import GanbenchError
from bench.text import PAD

TINY = {"embedding_dim": 16, "hidden_dim": 16, "batch_size": 8, "d_embedding_dim": 16,
        "d_hidden_dim": 16}
LOGGED = ("train/g_loss", "train/g_entropy", "train/d_loss", "train/d_acc", "train/phase")
ADVERSARIAL_ONLY = {"mle_fraction": 0.0, "disc_pretrain_fraction": 0.0}


def make(corpus, seed=0, **overrides):
    from baselines.lstm_gan import LSTMGAN

    torch.manual_seed(seed)
    return LSTMGAN(build_config(LSTMGAN.Config, {**TINY, **overrides}), corpus,
                   torch.device("cpu"), seed)


def snapshot(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed(before, module):
    return any(not torch.equal(before[name], p) for name, p in module.named_parameters())


@pytest.mark.parametrize("overrides", [
    {"g_loss": "reinforce", "baseline": "moving"},
    {"g_loss": "reinforce", "baseline": "none"},
    {"g_loss": "reinforce", "baseline": "batch_mean", "dense_rewards": True},
    {"g_loss": "nonsaturating"},
    {"g_loss": "wasserstein"},
])
def test_phases_and_adversarial_updates(tiny_corpus, overrides):
    variant = make(tiny_corpus, mle_fraction=0.5, disc_pretrain_fraction=0.25, **overrides)
    phases = []
    for i in range(8):
        if i == 7:
            generator_before = snapshot(variant.generator)
        report = variant.train_step(i / 8)
        phases.append(report.logs["train/phase"])
        assert report.tokens > 0 and report.flops > 0
    assert phases == [0.0] * 4 + [1.0] * 2 + [2.0] * 2
    assert changed(generator_before, variant.generator)
    for name in LOGGED:
        assert math.isfinite(report.logs[name]), name
    if overrides["g_loss"] == "wasserstein":  # the critic's weights stay clipped
        clip = variant.config.critic_clip
        assert all(p.abs().max() <= clip for p in variant.discriminator.parameters())
    if overrides.get("baseline") == "moving":
        assert variant.moving_baseline is not None and variant.moving_baseline.dim() == 0


def capture_policy_gradient(variant):
    seen = {}
    original = variant.policy_gradient_step

    def spy(samples, rewards, *rest):
        seen["samples"], seen["rewards"] = samples, rewards
        return original(samples, rewards, *rest)

    variant.policy_gradient_step = spy
    return seen


class KnownLogits(torch.nn.Module):
    """A stand-in discriminator whose logit for prefix t of sequence n is 10 n + t."""

    def forward(self, tokens):
        rows, width = tokens.shape[:2]
        return (10.0 * torch.arange(rows).unsqueeze(1) + torch.arange(width)).float()

    def flops_per_token(self):
        return 0.0


def test_reinforce_rewards_are_the_discriminators_logits(tiny_corpus, monkeypatch):
    from bench.text import EOS

    variant = make(tiny_corpus, **ADVERSARIAL_ONLY)
    variant.discriminator = KnownLogits()
    samples = torch.full((2, variant.width), PAD)
    samples[0, :3] = torch.tensor([5, 6, EOS])
    samples[1, :2] = torch.tensor([7, EOS])
    monkeypatch.setattr("baselines.lstm_gan.sample_sequences",
                        lambda *args: (samples.clone(), 5))
    seen = capture_policy_gradient(variant)
    variant.generator_update()
    # One reward per sequence, the logit after its EOS, by hand: 10 x 0 + 2 and 10 x 1 + 1.
    assert seen["rewards"].tolist() == [2.0, 11.0]


def test_dense_rewards_are_discounted_prefix_logits(tiny_corpus):
    variant = make(tiny_corpus, dense_rewards=True, gamma=0.5, **ADVERSARIAL_ONLY)
    seen = capture_policy_gradient(variant)
    variant.generator_update()
    samples = seen["samples"]
    mask = samples != PAD
    with torch.no_grad():
        prefix_logits = variant.discriminator(samples)
    assert torch.allclose(seen["rewards"], est.discounted_returns(prefix_logits, mask, 0.5))
    # Spot check by hand, sentence 0: R_0 = sum_s 0.5^s r_s over its counted positions.
    length = int(mask[0].sum())
    by_hand = sum(0.5**s * prefix_logits[0, s].item() for s in range(length))
    assert seen["rewards"][0, 0].item() == pytest.approx(by_hand, rel=1e-5)


def test_equal_rewards_and_a_mean_baseline_leave_the_generator(tiny_corpus):
    # A discriminator with a zero output layer scores every sequence the same.
    for baseline, should_move in (("batch_mean", False), ("none", True)):
        variant = make(tiny_corpus, baseline=baseline, **ADVERSARIAL_ONLY)
        with torch.no_grad():
            variant.discriminator.output.weight.zero_()
            variant.discriminator.output.bias.fill_(0.5)  # exact: the mean is too
        before = snapshot(variant.generator)
        variant.generator_update()
        assert changed(before, variant.generator) == should_move, baseline


@pytest.mark.parametrize("g_loss", ["nonsaturating", "wasserstein"])
def test_gumbel_update_trains_the_generator_through_the_discriminator(tiny_corpus, g_loss):
    variant = make(tiny_corpus, g_loss=g_loss, **ADVERSARIAL_ONLY)
    one_hots, ids, _ = variant.gumbel_samples()
    # Exact one-hots of the ids, PAD after EOS, and a gradient path back to the generator.
    assert torch.equal(one_hots.argmax(dim=-1), ids)
    assert torch.all(one_hots.detach().sum(dim=-1) == 1) and one_hots.requires_grad
    generator_before = snapshot(variant.generator)
    discriminator_before = snapshot(variant.discriminator)
    variant.generator_update()
    assert changed(generator_before, variant.generator)
    assert not changed(discriminator_before, variant.discriminator)


def test_checkpoint_resumes_the_same_run(tiny_corpus, tmp_path):
    variant = make(tiny_corpus, seed=2, baseline="moving", **ADVERSARIAL_ONLY)
    variant.train_step(0.5)
    save_state(tmp_path / "state.safetensors", {"variant": variant.state_dict()})
    resumed = make(tiny_corpus, seed=2, baseline="moving", **ADVERSARIAL_ONLY)
    resumed.load_state_dict(load_state(tmp_path / "state.safetensors")["variant"])
    assert torch.equal(resumed.moving_baseline, variant.moving_baseline)
    for _ in range(2):
        assert resumed.train_step(0.6).logs == variant.train_step(0.6).logs
    assert not changed(snapshot(variant.generator), resumed.generator)
    assert not changed(snapshot(variant.discriminator), resumed.discriminator)


def test_divergence_ends_the_run(tiny_corpus, divergence):
    # A tiny generator's entropy is far below 100 nats per token: a collapse by that floor.
    for g_loss in ("reinforce", "nonsaturating"):
        variant = make(tiny_corpus, min_entropy=100, g_loss=g_loss, **ADVERSARIAL_ONLY)
        why = divergence(variant.train_step(0.5))
        assert why.startswith("generator entropy (nats per token) fell to ")
        assert why.endswith("below min_entropy 100")
        # ... and not by the default floor of 0.1: an untrained generator is nowhere near it.
        assert divergence(make(tiny_corpus, g_loss=g_loss, **ADVERSARIAL_ONLY)
                          .train_step(0.5)) is None
    # Entropy is only checked in the adversarial phase (MLE predictions may be confident).
    assert divergence(make(tiny_corpus, min_entropy=100).train_step(0.0)) is None
    variant = make(tiny_corpus, **ADVERSARIAL_ONLY)
    with torch.no_grad():
        variant.discriminator.output.bias.fill_(float("nan"))
    assert divergence(variant.train_step(0.5)).startswith("non-finite ")


def test_config_is_validated():
    from baselines.lstm_gan import LSTMGAN

    with pytest.raises(GanbenchError, match="dense_rewards"):
        build_config(LSTMGAN.Config, {"dense_rewards": True, "g_loss": "wasserstein"})
    with pytest.raises(GanbenchError, match="g_loss"):
        build_config(LSTMGAN.Config, {"g_loss": "hinge"})
    with pytest.raises(GanbenchError, match="gamma"):
        build_config(LSTMGAN.Config, {"gamma": 1.5})
    with pytest.raises(GanbenchError, match="d_epochs"):
        build_config(LSTMGAN.Config, {"d_epochs": 0})


@pytest.mark.parametrize("g_loss", ["reinforce", "nonsaturating"])
def test_run_through_the_real_cli(tmp_path, tiny_text_dir, run_record, g_loss):
    record = run_record("lstm_gan", tiny_text_dir, "6steps", tmp_path,
                        {**TINY, "g_loss": g_loss, "mle_fraction": 0.5,
                         "disc_pretrain_fraction": 0.2})
    assert record["status"] == "ok" and record["budget"]["steps"] == 6
    assert record["last_train_logs"]["train/phase"] == 2.0
    assert record["metrics"]["nll_test"] > 0 and len(record["samples"]) == 40


def test_divergence_is_recorded_by_the_cli(tmp_path, tiny_text_dir, capsys):
    from bench.cli import main

    sets = [arg for name, value in TINY.items() for arg in ("--set", f"{name}={value}")]
    main(["run", "--variant", "lstm_gan", "--dataset", str(tiny_text_dir), "--budget",
          "4steps", "--out", str(tmp_path), "--quiet", *sets, "--set", "min_entropy=100",
          "--set", "mle_fraction=0.5", "--set", "disc_pretrain_fraction=0",
          "--eval", "num_samples=40", "--eval", "disc_acc=false"])
    records = list(tmp_path.rglob("record.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["status"] == "diverged" and "entropy" in record["reason"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("g_loss", ["reinforce", "nonsaturating", "wasserstein"])
def test_adversarial_rounds_on_cuda(tiny_corpus, g_loss):
    from baselines.lstm_gan import LSTMGAN

    config = build_config(LSTMGAN.Config, {**TINY, "g_loss": g_loss, "mle_fraction": 0.3,
                                           "disc_pretrain_fraction": 0.2})
    variant = LSTMGAN(config, tiny_corpus, torch.device("cuda"), 0)
    for i in range(6):
        report = variant.train_step(i / 6)
    assert report.logs["train/phase"] == 2.0 and math.isfinite(report.logs["train/g_loss"])
    assert len(variant.sample(8, 1.0, 0)) == 8


def test_realness_scores_are_the_discriminators(tiny_corpus):
    variant = make(tiny_corpus)
    variant.discriminator = KnownLogits()
    # Read in the evaluation tokenization ("A dog." is a, dog, . then EOS at index 3), scored
    # at each sentence's EOS, by hand: 10 x 0 + 3, 10 x 1 + 5, 10 x 2 + 1 (an unknown word).
    scores = variant.realness_scores(["A dog.", "a cat runs fast .", "zzyzx"])
    assert scores == [3.0, 15.0, 21.0]
