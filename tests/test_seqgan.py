"""SeqGAN with tiny models: phases, rollout-driven generator updates, the rollout network,
checkpoints, divergence, and a run through the real CLI."""

import copy
import json
import math

import pytest
import torch

from bench.checkpoint import load_state, save_state
from bench.config import build_config
from bench.errors import GanbenchError, StepAbandoned
from bench.text import PAD

TINY = {"embedding_dim": 16, "hidden_dim": 16, "batch_size": 8, "num_rollouts": 2,
        "d_embedding_dim": 16, "d_filter_sizes": "2,3", "d_num_filters": "8,8",
        "d_steps": 1, "d_epochs": 2}
LOGGED = ("train/g_loss", "train/g_entropy", "train/d_loss", "train/d_acc", "train/phase")


def make(corpus, seed=0, **overrides):
    from baselines.seqgan import SeqGAN

    torch.manual_seed(seed)
    return SeqGAN(build_config(SeqGAN.Config, {**TINY, **overrides}), corpus,
                  torch.device("cpu"), seed)


def snapshot(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed(before, module):
    return any(not torch.equal(before[name], p) for name, p in module.named_parameters())


def test_phases_and_adversarial_updates(tiny_corpus):
    variant = make(tiny_corpus, mle_fraction=0.5, disc_pretrain_fraction=0.25)
    phases, generator_before, discriminator_before = [], None, None
    for i in range(8):
        progress = i / 8
        if progress >= 0.5 and discriminator_before is None:
            discriminator_before = snapshot(variant.discriminator)
        if progress >= 0.75 and generator_before is None:
            generator_before = snapshot(variant.generator)
        report = variant.train_step(progress)
        phases.append(report.logs["train/phase"])
        assert report.tokens > 0 and report.flops > 0
    assert phases == [0.0] * 4 + [1.0] * 2 + [2.0] * 2
    assert changed(discriminator_before, variant.discriminator)
    assert changed(generator_before, variant.generator)
    for name in LOGGED:
        assert math.isfinite(report.logs[name]), name
    # Tokens: the sampled batch and every rollout token.
    rollout_tokens = report.logs["train/rollout_tokens"]
    assert 0 < rollout_tokens < report.tokens
    assert len(variant.sample(5, 1.0, 0)) == 5
    assert variant.token_nll(tiny_corpus.test[:5]).num_tokens > 0


def test_rollout_network_lags_the_generator(tiny_corpus):
    variant = make(tiny_corpus, mle_fraction=0.5, disc_pretrain_fraction=0.0)
    variant.train_step(0.0)  # MLE
    variant.train_step(0.5)  # adversarial: the rollout network is made, then moved once
    before = snapshot(variant.rollout_network)
    variant.generator_update()
    rate = variant.config.rollout_update_rate
    for (name, lagged), current in zip(variant.rollout_network.named_parameters(),
                                       variant.generator.parameters()):
        if name.startswith("embedding"):  # copied outright, as the SeqGAN code
            assert torch.equal(lagged, current)
        else:
            assert torch.allclose(lagged, rate * before[name] + (1 - rate) * current)


def test_the_reward_is_what_moves_the_generator(tiny_corpus):
    # A discriminator that scores everything 0.5: every reward equal, so after the batch-mean
    # baseline every advantage is 0 and the update leaves the generator as it was; without a
    # baseline the same rewards move it.
    for baseline, should_move in (("batch_mean", False), ("none", True)):
        variant = make(tiny_corpus, mle_fraction=0.0, disc_pretrain_fraction=0.0,
                       baseline=baseline)
        variant.end_mle_phase()
        variant.probability_real = lambda tokens: torch.full((len(tokens),), 0.5)
        variant.completion_probability_real = (  # the rollouts' completions score 0.5 too
            lambda scorer: lambda completions, *_: torch.full((len(completions),), 0.5))
        before = snapshot(variant.generator)
        report = variant.generator_update()
        assert changed(before, variant.generator) == should_move, baseline
        assert report.logs["train/reward_mean"] == pytest.approx(0.5)


def test_checkpoint_resumes_the_same_run(tiny_corpus, tmp_path):
    overrides = {"mle_fraction": 0.0, "disc_pretrain_fraction": 0.0, "baseline": "moving"}
    variant = make(tiny_corpus, seed=3, **overrides)
    torch.manual_seed(0)
    variant.train_step(0.5)
    save_state(tmp_path / "state.safetensors", {"variant": variant.state_dict()})
    resumed = make(tiny_corpus, seed=3, **overrides)
    resumed.load_state_dict(load_state(tmp_path / "state.safetensors")["variant"])
    assert resumed.moving_baseline is not None and resumed.rollout_network is not None
    for _ in range(2):
        torch.manual_seed(1)  # the discriminator's dropout draws from the global RNG
        expected = variant.train_step(0.6)
        torch.manual_seed(1)
        got = resumed.train_step(0.6)
        assert got.logs == expected.logs and got.tokens == expected.tokens
    assert not changed(snapshot(variant.generator), resumed.generator)
    assert variant.sample(5, 1.0, 1) == resumed.sample(5, 1.0, 1)


def test_divergence_ends_the_run(tiny_corpus, divergence):
    variant = make(tiny_corpus, mle_fraction=0.0, disc_pretrain_fraction=0.0, min_entropy=100)
    assert "entropy (nats per token) fell to" in divergence(variant.train_step(0.5))
    variant = make(tiny_corpus, mle_fraction=0.0, disc_pretrain_fraction=0.0)
    assert divergence(variant.train_step(0.5)) is None
    with torch.no_grad():
        variant.discriminator.output.weight.fill_(float("nan"))
    assert divergence(variant.train_step(0.5)).startswith("non-finite ")
    variant = make(tiny_corpus)
    with torch.no_grad():
        variant.generator.output.bias.fill_(float("inf"))
    assert divergence(variant.train_step(0.0)) == "train/g_loss is nan"


def test_config_is_validated():
    from baselines.seqgan import SeqGAN

    with pytest.raises(GanbenchError, match="sum below 1"):
        build_config(SeqGAN.Config, {"mle_fraction": 0.6, "disc_pretrain_fraction": 0.4})
    with pytest.raises(GanbenchError, match="as long"):
        build_config(SeqGAN.Config, {"d_filter_sizes": "2,3", "d_num_filters": "8"})
    with pytest.raises(GanbenchError, match="baseline"):
        build_config(SeqGAN.Config, {"baseline": "learned"})
    config = build_config(SeqGAN.Config)
    # The literature's defaults (SeqGAN paper and code).
    assert (config.num_rollouts, config.batch_size, config.d_steps, config.d_epochs) == (
        16, 64, 5, 3)
    assert config.d_filter_sizes[-1] == 20 and sum(config.d_num_filters) == 1720


def test_oracle_defaults_are_the_papers():
    from baselines.seqgan import SeqGAN

    class OracleLike:
        is_oracle = True

    defaults = SeqGAN.corpus_defaults(OracleLike())
    assert defaults == {"embedding_dim": 32, "hidden_dim": 32}


def test_run_through_the_real_cli(tmp_path, tiny_text_dir, run_record):
    record = run_record("seqgan", tiny_text_dir, "6steps", tmp_path,
                        {**TINY, "mle_fraction": 0.5, "disc_pretrain_fraction": 0.2})
    assert record["status"] == "ok" and record["budget"]["steps"] == 6
    assert record["last_train_logs"]["train/phase"] == 2.0
    assert record["metrics"]["nll_test"] > 0 and record["metrics"]["train_tokens_per_s"] > 0
    # The rollouts' tokens are counted: far more than the 6 steps' batches of 8 sentences.
    assert record["budget"]["tokens"] > 6 * 8 * 20
    log = [json.loads(line) for line in
           (tmp_path / record["run"] / "train_log.jsonl").read_text().splitlines()]
    training = [row for row in log if "valid/nll" not in row]
    assert all(row["train/phase"] in (0.0, 1.0, 2.0) for row in training)
    assert [row["valid/phase"] for row in log if "valid/nll" in row][-1] == "adversarial"


def test_padding_never_gets_a_reward_gradient(tiny_corpus):
    # Whatever the rewards at padded positions, the update is the same.
    variant = make(tiny_corpus, mle_fraction=0.0, disc_pretrain_fraction=0.0, baseline="none")
    samples = torch.tensor([[5, 6, 2, PAD, PAD], [7, 2, PAD, PAD, PAD]])
    rewards = torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0, 0.0]])
    state = {k: v.clone() for k, v in variant.generator.state_dict().items()}
    optimizer_state = copy.deepcopy(variant.g_optimizer.state_dict())
    variant.policy_gradient_step(samples, rewards)
    after = snapshot(variant.generator)
    variant.generator.load_state_dict(state)
    variant.g_optimizer.load_state_dict(optimizer_state)
    noisy = rewards.clone()
    noisy[samples == PAD] = 1e6
    variant.policy_gradient_step(samples, noisy)
    assert not changed(after, variant.generator)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_adversarial_rounds_on_cuda(tiny_corpus):
    from baselines.seqgan import SeqGAN

    config = build_config(SeqGAN.Config, {**TINY, "mle_fraction": 0.3,
                                          "disc_pretrain_fraction": 0.2})
    variant = SeqGAN(config, tiny_corpus, torch.device("cuda"), 0)
    for i in range(6):
        report = variant.train_step(i / 6)
    assert report.logs["train/phase"] == 2.0 and math.isfinite(report.logs["train/g_loss"])
    assert len(variant.sample(8, 1.0, 0)) == 8


def test_realness_scores_are_the_discriminators(tiny_corpus):
    # What synthetic_augmentation filters by: D's probability of real, of the texts as read.
    variant = make(tiny_corpus)
    texts = tiny_corpus.train_text()[:3] + ["a man rides a zyzzyvas bike"]
    scores = variant.realness_scores(texts)
    variant.discriminator.eval()
    with torch.no_grad():
        expected = torch.sigmoid(variant.discriminator(variant.train_data.targets[:3]))
    assert len(scores) == 4 and all(0 < s < 1 for s in scores)
    assert scores[:3] == pytest.approx(expected.tolist(), abs=1e-6)


def test_a_budget_spent_inside_the_rollouts_abandons_the_step(tiny_corpus):
    # 40 rows = one sentence's 20 prefixes x 2 rollouts: 8 chunks, asked about before each.
    variant = make(tiny_corpus, mle_fraction=0.0, disc_pretrain_fraction=0.0,
                   rollout_max_rows=40)
    asked = []

    def spent_after_two_readings():  # the clock runs out while the rollouts are under way
        asked.append(1)
        return 1.0 if len(asked) > 2 else 0.5

    variant.progress_now = spent_after_two_readings
    generator, discriminator = snapshot(variant.generator), snapshot(variant.discriminator)
    with pytest.raises(StepAbandoned):
        variant.train_step(0.5)
    assert len(asked) == 3  # the rollouts asked before each chunk and stopped at once
    assert not changed(generator, variant.generator)  # nothing half-applied
    assert not changed(discriminator, variant.discriminator)
    variant.progress_now = lambda: 0.5
    report = variant.train_step(0.5)  # with time left, the same step completes
    assert report.logs["train/rollout_tokens"] > 0


def test_a_seconds_budget_holds_when_one_update_would_overrun_it(tmp_path, tiny_text_dir,
                                                                 run_record):
    # 256 completions of every prefix of 64 sentences: one generator update takes several
    # seconds, in 64 chunks of one sentence (about 0.1 s each).
    slow = {**TINY, "num_rollouts": 256, "rollout_max_rows": 2560, "batch_size": 64,
            "mle_fraction": 0.1, "disc_pretrain_fraction": 0.1}
    record = run_record("seqgan", tiny_text_dir, "2s", tmp_path, slow, num_samples=20)
    assert record["status"] == "ok"
    # Within 2% plus about one rollout chunk, not plus a whole update.
    assert 2.0 <= record["budget"]["seconds"] <= 2.0 * 1.02 + 0.5
