"""gpt2_bert_gan: the policy-gradient pieces against hand-worked numbers, the phases end to end
with tiny models, the reward reaching the generator's update, checkpoints, and the real CLI."""

import math

import pytest
import torch

from baselines.primitives import hf_policy as policy
from bench.checkpoint import load_state, save_state
from bench.config import build_config
from bench.corpora import Corpus
from bench.errors import GanbenchError

# Tiny models: generator and discriminator of 2 layers, width 64.
TINY = {"n_layer": 2, "n_embd": 64, "n_head": 2, "bpe_vocab_size": 400, "batch_size": 32,
        "warmup_steps": 0, "learning_rate": 3e-3, "d_layers": 2, "d_hidden": 64, "d_heads": 2,
        "d_intermediate": 128, "d_vocab_size": 400, "num_groups": 4, "group_size": 4,
        "max_new_tokens": 12, "g_learning_rate": 1e-3, "d_learning_rate": 1e-3}
LN2 = math.log(2.0)


# -- the pure pieces, by hand ------------------------------------------------------------------


def test_masked_token_log_probs_by_hand():
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)], [5.0, 0.0]]])
    targets = torch.tensor([[1, 0, 1]])
    mask = torch.tensor([[True, True, False]])
    # softmax([0, ln 3]) = [1/4, 3/4]: log p(1) = ln(3/4), log p(0) = ln(1/4); masked -> 0.
    got = policy.masked_token_log_probs(logits, targets, mask)
    assert torch.allclose(got, torch.tensor([[math.log(0.75), math.log(0.25), 0.0]]))
    # Temperature 2: softmax([0, ln 3 / 2]) = [1, sqrt 3] / (1 + sqrt 3).
    hot = policy.masked_token_log_probs(logits, targets, mask, temperature=2.0)
    assert hot[0, 0].item() == pytest.approx(math.log(math.sqrt(3) / (1 + math.sqrt(3))))
    assert policy.sequence_log_probs(got, mask).item() == pytest.approx(math.log(3 / 16))


def test_group_relative_advantages_by_hand():
    # Groups [1, 3] (mean 2, std 1) and [5, 5] (std 0 -> the floor 0.5, advantages 0).
    got = policy.group_relative_advantages(torch.tensor([1.0, 3.0, 5.0, 5.0]), 2, 0.5)
    assert torch.allclose(got, torch.tensor([-1.0, 1.0, 0.0, 0.0]))
    # [0, 0.2]: mean 0.1, std 0.1 < floor 0.5 -> +-0.1 / 0.5, not +-1 (noise is not amplified).
    got = policy.group_relative_advantages(torch.tensor([0.0, 0.2]), 2, 0.5)
    assert torch.allclose(got, torch.tensor([-0.2, 0.2]))
    # [2, 4, 6, 8]: mean 5, population std sqrt((9 + 1 + 1 + 9) / 4) = sqrt 5.
    got = policy.group_relative_advantages(torch.tensor([2.0, 4.0, 6.0, 8.0]), 4, 0.5)
    assert torch.allclose(got, torch.tensor([-3.0, -1.0, 1.0, 3.0]) / math.sqrt(5))
    with pytest.raises(ValueError):
        policy.group_relative_advantages(torch.zeros(5), 2, 0.5)


def test_moving_baseline_by_hand():
    rewards = torch.tensor([1.0, 3.0])  # mean 2, population std 1
    assert torch.allclose(policy.moving_baseline_advantages(rewards, torch.tensor(0.0), 0.5),
                          torch.tensor([1.0, 3.0]))
    assert torch.allclose(policy.moving_baseline_advantages(rewards, None, 0.5),
                          torch.tensor([-1.0, 1.0]))
    assert torch.allclose(policy.moving_baseline_advantages(rewards, torch.tensor(0.0), 4.0),
                          torch.tensor([0.25, 0.75]))  # std 1 < floor 4


def test_clipped_surrogate_by_hand():
    # Ratios 1.5 and 0.5 in both sequences (a third, masked token has ratio 10).
    old = torch.zeros(2, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 10.0], [1.5, 0.5, 10.0]]))
    mask = torch.tensor([[True, True, False], [True, True, False]])
    advantages = torch.tensor([1.0, -1.0])
    # A = +1: min(1.5, 1.2) = 1.2 (clipped), min(0.5, 0.8) = 0.5.
    # A = -1: min(-1.5, -1.2) = -1.5, min(-0.5, -0.8) = -0.8 (clipped).
    # loss = -(1.2 + 0.5 - 1.5 - 0.8) / 4 = 0.15; clipped share 2 / 4.
    loss, clipped = policy.clipped_surrogate_loss(new, old, advantages, mask, clip=0.2)
    assert loss.item() == pytest.approx(0.15)
    assert clipped.item() == pytest.approx(0.5)
    # No clipping, A = (2, 1): -(3 + 1 + 1.5 + 0.5) / 4 = -1.5.
    loss, clipped = policy.clipped_surrogate_loss(new, old, torch.tensor([2.0, 1.0]), mask, 0.0)
    assert loss.item() == pytest.approx(-1.5) and clipped.item() == 0.0


def test_on_policy_surrogate_gradient_is_reinforce():
    # At old = new.detach() the ratio is 1 and d loss / d log p_t = -A / (counted tokens):
    # A = (2, -1) over 4 tokens -> -1/2 on the first sequence, +1/4 on the second.
    log_probs = torch.zeros(2, 2, requires_grad=True)
    mask = torch.ones(2, 2, dtype=torch.bool)
    loss, _ = policy.clipped_surrogate_loss(log_probs, log_probs.detach(),
                                            torch.tensor([2.0, -1.0]), mask, clip=0.2)
    loss.backward()
    assert torch.allclose(log_probs.grad, torch.tensor([[-0.5, -0.5], [0.25, 0.25]]))


def test_kl_penalty_by_hand():
    # d = ref - policy: ln 2 -> 2 - ln 2 - 1 = 0.30685; -ln 2 -> 1/2 + ln 2 - 1 = 0.19315;
    # mean 0.25; the masked third token (d = 5) does not count.
    policy_lp = torch.log(torch.tensor([[0.25, 0.5, 0.01]]))
    reference = policy_lp + torch.tensor([[LN2, -LN2, 5.0]])
    mask = torch.tensor([[True, True, False]])
    assert policy.kl_penalty(policy_lp, reference, mask).item() == pytest.approx(0.25)
    assert policy.kl_penalty(policy_lp, policy_lp, mask).item() == 0.0


# -- the variant with tiny models --------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(coco):
    return Corpus("coco_tiny", coco.train[:300], coco.test[:100], coco.tokenization)


def make(corpus, seed=0, **overrides):
    from baselines.gpt2_bert_gan import GPT2BertGAN

    config = build_config(GPT2BertGAN.Config, {**TINY, **overrides})
    return GPT2BertGAN(config, corpus, torch.device("cpu"), seed)


def snapshot(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed(before, module):
    return any(not torch.equal(before[name], p) for name, p in module.named_parameters())


def test_phases_end_to_end_update_both_models(corpus):
    variant = make(corpus, mle_fraction=0.5, d_warmup_fraction=0.25)
    steps = 8
    phases, logs = [], []
    generator_before = discriminator_before = None
    for i in range(steps):
        progress = i / steps
        if progress >= 0.5 and discriminator_before is None:
            discriminator_before = snapshot(variant.discriminator)
        if progress >= 0.75 and generator_before is None:
            generator_before = snapshot(variant.generator)
        report = variant.train_step(progress)
        phases.append(report.logs["train/phase"])
        logs.append(report.logs)
        assert report.tokens > 0 and report.flops > 0
    assert phases == [0.0] * 4 + [1.0] * 2 + [2.0] * 2
    assert changed(generator_before, variant.generator)
    assert changed(discriminator_before, variant.discriminator)
    last = logs[-1]
    for name in ("train/g_pg_loss", "train/kl", "train/clip_fraction", "train/reward_mean",
                 "train/d_loss", "train/d_acc"):
        assert math.isfinite(last[name]), name
    # The reference is the MLE-warmed generator, frozen since the MLE phase ended.
    assert changed(snapshot(variant.reference), variant.generator)
    texts = variant.sample(10, 1.0, 0)
    assert len(texts) == 10 and variant.token_nll(corpus.test[:10]).num_words > 0


def adversarial_variant(corpus, **overrides):
    return make(corpus, mle_fraction=0.0, d_warmup_fraction=0.0, **overrides)


def generator_gradient(variant, rollout):
    variant.generator_policy_step(rollout)
    return torch.cat([p.grad.flatten() for p in variant.generator.parameters()
                      if p.grad is not None])


def test_the_reward_is_what_drives_the_generator(corpus):
    from types import SimpleNamespace

    from baselines.primitives import generation

    class PieceCounter(torch.nn.Module):
        """A stand-in discriminator: logits (fake, real) = (1, word pieces of the sentence)."""

        def forward(self, input_ids, attention_mask):
            pieces = attention_mask.sum(dim=1).float()
            return SimpleNamespace(logits=torch.stack([torch.ones_like(pieces), pieces], 1))

    variant = adversarial_variant(corpus, kl_coef=0.0, ppo_clip=0.0, grad_clip=0.0)
    variant.discriminator = PieceCounter()
    rollout = variant._new_rollout()
    # The rewards are the discriminator's log-odds (real - fake) of the rollout's own
    # sentences, read as word pieces: here pieces - 1, counted independently from the texts.
    texts = generation.decode_samples(variant.tokenizer, rollout.samples)
    pieces = [len(variant.d_tokenizer(text)["input_ids"]) for text in texts]
    assert rollout.rewards.tolist() == [float(n - 1) for n in pieces]
    # Zero advantages (all rewards equal) and no KL: no gradient at all.
    state = {k: v.clone() for k, v in variant.generator.state_dict().items()}
    rollout.advantages = torch.zeros_like(rollout.advantages)
    rollout.old_log_probs = None
    assert torch.count_nonzero(generator_gradient(variant, rollout)) == 0
    # Twice the advantages: twice the policy gradient (same samples, same weights).
    variant.generator.load_state_dict(state)
    rollout.advantages = torch.linspace(-1.0, 1.0, len(rollout.advantages))
    rollout.old_log_probs = None
    single = generator_gradient(variant, rollout)
    variant.generator.load_state_dict(state)
    rollout.advantages = 2 * rollout.advantages
    rollout.old_log_probs = None
    double = generator_gradient(variant, rollout)
    assert torch.count_nonzero(single) > 0
    assert torch.allclose(double, 2 * single, atol=1e-6)


def test_ppo_epochs_reuse_a_rollout_and_checkpoint_it(corpus, tmp_path):
    variant = adversarial_variant(corpus, ppo_epochs=2, baseline="moving", seed=4)
    variant.train_step(0.5)  # a fresh rollout, one of its two updates used
    assert variant.rollout.updates_left == 1 and variant.rollout.old_log_probs is not None
    assert variant.moving_baseline is not None
    save_state(tmp_path / "state.safetensors", {"variant": variant.state_dict()})
    resumed = adversarial_variant(corpus, ppo_epochs=2, baseline="moving", seed=4)
    resumed.load_state_dict(load_state(tmp_path / "state.safetensors")["variant"])
    for _ in range(2):  # the stored rollout's second update, then a fresh rollout
        torch.manual_seed(0)
        expected = variant.train_step(0.6).logs
        torch.manual_seed(0)
        assert resumed.train_step(0.6).logs == expected
    assert variant.sample(5, 1.0, 1) == resumed.sample(5, 1.0, 1)


def test_prompted_groups_share_their_prompt(corpus):
    variant = adversarial_variant(corpus, prompt_tokens=2)
    rollout = variant._new_rollout()
    prompts = rollout.samples.prompts
    assert prompts.shape == (16, 3) and torch.all(prompts[:, 0] == variant.bos_id)
    groups = prompts.view(4, 4, 3)
    assert torch.all(groups == groups[:, :1])  # one prompt per group
    batch = rollout.samples.as_batch()
    assert not batch.mask[:, :2].any()  # the given prompt tokens are not trained on
    report = variant.train_step(0.5)
    assert math.isfinite(report.logs["train/g_pg_loss"])


def test_config_is_validated():
    from baselines.gpt2_bert_gan import GPT2BertGAN

    with pytest.raises(GanbenchError, match="sum below 1"):
        build_config(GPT2BertGAN.Config, {"mle_fraction": 0.7, "d_warmup_fraction": 0.3})
    with pytest.raises(GanbenchError, match="group_size"):
        build_config(GPT2BertGAN.Config, {"group_size": 1})
    with pytest.raises(GanbenchError, match="baseline"):
        build_config(GPT2BertGAN.Config, {"baseline": "learned"})
    assert build_config(GPT2BertGAN.Config, {"kl_coef": 0}).kl_coef == 0


def test_run_through_the_real_cli(tmp_path, tiny_text_dir, run_record):
    record = run_record("gpt2_bert_gan", tiny_text_dir, "8steps", tmp_path,
                        {**TINY, "mle_fraction": 0.5, "d_warmup_fraction": 0.125})
    assert record["status"] == "ok" and record["budget"]["steps"] == 8
    metrics = record["metrics"]
    assert metrics["nll_test"] > 0 and metrics["nll_test_per_word"] > metrics["nll_test"] * 0.5
    assert metrics["train_tokens_per_s"] > 0 and "bleu_5" in metrics
    assert record["last_train_logs"]["train/phase"] == 2.0
    artifacts = tmp_path / record["run"] / "artifacts"
    for folder in ("generator", "tokenizer", "discriminator", "discriminator_tokenizer"):
        assert (artifacts / folder).is_dir(), folder
    assert (artifacts / "generator" / "model.safetensors").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_adversarial_steps_on_cuda(corpus):
    from baselines.gpt2_bert_gan import GPT2BertGAN

    config = build_config(GPT2BertGAN.Config, {**TINY, "mle_fraction": 0.3,
                                               "d_warmup_fraction": 0.2})
    variant = GPT2BertGAN(config, corpus, torch.device("cuda"), 0)
    for i in range(6):
        report = variant.train_step(i / 6)
    assert report.logs["train/phase"] == 2.0
    assert math.isfinite(report.logs["train/g_pg_loss"])
    assert len(variant.sample(8, 1.0, 0)) == 8


def test_a_step_whose_rollout_outlasts_the_budget_is_dropped_before_any_update(corpus):
    """Issue 21: a long adversarial step read the clock only between steps (32.5 s of a 30 s
    budget). Now the budget is read after the rollout, before any weight changes."""
    from bench.errors import StepAbandoned

    variant = adversarial_variant(corpus)
    variant.train_step(0.5)  # a normal adversarial step first
    generator, discriminator = snapshot(variant.generator), snapshot(variant.discriminator)
    sampled = []
    original = variant._sample_fakes

    def sample_then_run_out():
        sampled.append(True)
        variant.progress_now = lambda: 1.0  # the budget ran out while sampling
        return original()

    variant._sample_fakes = sample_then_run_out
    variant.rollout = None  # the next step draws a fresh rollout
    with pytest.raises(StepAbandoned):
        variant.train_step(0.9)
    assert sampled and variant.rollout is None
    assert not changed(generator, variant.generator)
    assert not changed(discriminator, variant.discriminator)
    # The discriminator warm-up step likewise.
    warm = make(corpus, mle_fraction=0.0, d_warmup_fraction=0.9)
    before = snapshot(warm.discriminator)
    warm.progress_now = lambda: 1.0
    with pytest.raises(StepAbandoned):
        warm.train_step(0.5)
    assert not changed(before, warm.discriminator)
