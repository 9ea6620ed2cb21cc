"""gpt2_gad and gpt2_mixce (issue 26): their objectives against hand-worked numbers (values and
gradients), the generator-copy discriminator, the phases, and the real CLI end to end."""

import math

import pytest
import torch

from baselines.primitives import hf_policy as policy
from baselines.primitives import objectives
from bench.config import build_config
from bench.corpora import Corpus
from bench.errors import GanbenchError

TINY = {"n_layer": 2, "n_embd": 32, "n_head": 2, "bpe_vocab_size": 300, "batch_size": 16,
        "warmup_steps": 0, "learning_rate": 3e-3, "max_new_tokens": 12}
TINY_GAN = {**TINY, "num_groups": 2, "group_size": 4, "g_learning_rate": 1e-3,
            "d_learning_rate": 1e-3}


# -- MixCE on a 3-token vocabulary, by hand ----------------------------------------------------


def three_token_log_probs():
    """Two counted positions and one padding position; logits = log p, so softmax gives p:
    position 1 p = (0.5, 0.25, 0.25), target 0 (q = 0.5); position 2 p = (0.2, 0.2, 0.6),
    target 2 (q = 0.6); position 3 is padding."""
    p = torch.tensor([[[0.5, 0.25, 0.25], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8]]])
    logits = p.log().requires_grad_(True)
    targets = torch.tensor([[0, 2, 1]])
    mask = torch.tensor([[True, True, False]])
    return logits, policy.masked_token_log_probs(logits, targets, mask), 2


def test_mixce_loss_and_gradient_by_hand():
    logits, log_probs, num_tokens = three_token_log_probs()
    loss = objectives.mixce_loss(log_probs, num_tokens, mixing_ratio=0.3)
    # weights 0.3 + 0.7 q: 0.65 and 0.72; loss = (0.65 ln 2 + 0.72 ln(1/0.6)) / 2.
    expected = (0.65 * math.log(2.0) + 0.72 * -math.log(0.6)) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert loss.item() == pytest.approx(0.409170, abs=1e-6)
    loss.backward()
    # d/dlogits of -w log q (w held constant) = w (p - onehot) / num_tokens.
    position_1 = [0.65 * (0.5 - 1) / 2, 0.65 * 0.25 / 2, 0.65 * 0.25 / 2]
    position_2 = [0.72 * 0.2 / 2, 0.72 * 0.2 / 2, 0.72 * (0.6 - 1) / 2]
    expected_grad = torch.tensor([[position_1, position_2, [0.0, 0.0, 0.0]]])
    assert torch.allclose(logits.grad, expected_grad, atol=1e-6)


def test_mixce_at_ratio_one_is_mle_and_at_zero_weights_by_q():
    _, log_probs, num_tokens = three_token_log_probs()
    mle = (math.log(2.0) - math.log(0.6)) / 2
    assert objectives.mixce_loss(log_probs, num_tokens, 1.0).item() == pytest.approx(mle, 1e-6)
    assert objectives.mle_loss(log_probs, num_tokens).item() == pytest.approx(mle, 1e-6)
    reverse_only = (0.5 * math.log(2.0) - 0.6 * math.log(0.6)) / 2
    assert objectives.mixce_loss(log_probs, num_tokens, 0.0).item() == pytest.approx(
        reverse_only, 1e-6)


# -- Bradley-Terry and BCE on scores, by hand --------------------------------------------------


def as_logits(scores):
    """(fake, real) logits whose realness is the score: (0, s)."""
    scores = torch.as_tensor(scores, dtype=torch.float32)
    return torch.stack([torch.zeros_like(scores), scores], dim=1)


def test_bradley_terry_loss_and_gradient_by_hand():
    real = torch.tensor([2.0, 0.5, -1.0], requires_grad=True)
    fake = torch.tensor([1.0, 1.5, -3.0], requires_grad=True)
    loss, pair_accuracy = objectives.discriminator_loss(as_logits(real), as_logits(fake),
                                                        "bradley_terry")
    # margins 1, -1, 2: loss = mean ln(1 + e^-m) = (0.313262 + 1.313262 + 0.126928) / 3.
    assert loss.item() == pytest.approx(0.584484, abs=1e-6)
    assert pair_accuracy.item() == pytest.approx(2 / 3)
    loss.backward()
    # d/ds_real = -sigmoid(-m) / 3; d/ds_fake = +sigmoid(-m) / 3.
    sigmoid_minus_m = torch.tensor([0.268941, 0.731059, 0.119203])
    assert torch.allclose(real.grad, -sigmoid_minus_m / 3, atol=1e-6)
    assert torch.allclose(fake.grad, sigmoid_minus_m / 3, atol=1e-6)


def test_bradley_terry_reads_score_differences_of_two_logit_classifiers():
    """A BERT-style classifier's score is logit_real - logit_fake, and adding one constant to
    every score leaves Bradley-Terry unchanged (unlike BCE)."""
    real = torch.tensor([[1.0, 3.0], [0.0, 0.5]])  # scores 2.0, 0.5
    fake = torch.tensor([[0.0, 1.0], [2.0, 3.5]])  # scores 1.0, 1.5
    two_logit, _ = objectives.discriminator_loss(real, fake, "bradley_terry")
    scalar, _ = objectives.discriminator_loss(as_logits([2.0, 0.5]), as_logits([1.0, 1.5]),
                                              "bradley_terry")
    shifted, _ = objectives.discriminator_loss(as_logits([7.0, 5.5]), as_logits([6.0, 6.5]),
                                               "bradley_terry")
    assert two_logit.item() == pytest.approx(scalar.item(), abs=1e-6)
    assert shifted.item() == pytest.approx(scalar.item(), abs=1e-6)
    bce, _ = objectives.discriminator_loss(as_logits([2.0, 0.5]), as_logits([1.0, 1.5]), "bce")
    bce_shifted, _ = objectives.discriminator_loss(as_logits([7.0, 5.5]),
                                                   as_logits([6.0, 6.5]), "bce")
    assert abs(bce.item() - bce_shifted.item()) > 1.0
    with pytest.raises(ValueError, match="pairs"):
        objectives.discriminator_loss(as_logits([1.0, 2.0]), as_logits([1.0]), "bradley_terry")


def test_bce_by_hand():
    # A real and a generated sentence, both scored ln 3: softplus(-ln 3) = ln(4/3) for the real
    # one, softplus(ln 3) = ln 4 for the generated one; one of the two is classified right.
    loss, accuracy = objectives.discriminator_loss(as_logits([math.log(3.0)]),
                                                   as_logits([math.log(3.0)]), "bce")
    assert loss.item() == pytest.approx((math.log(4 / 3) + math.log(4.0)) / 2, abs=1e-6)
    assert accuracy.item() == 0.5


# -- the generator-copy discriminator ----------------------------------------------------------


def test_scorer_reads_the_last_counted_position_and_copies_the_generator():
    from baselines.primitives import hf_models, hf_tokenizers
    from baselines.primitives.scorer import SequenceScorer, encode_for_scorer

    tokenizer = hf_tokenizers.word_tokenizer(["a", "b", "c"])
    eos = tokenizer.eos_token_id
    batch = encode_for_scorer(tokenizer, ["a b c", "c"], eos, eos, max_length=16)
    a, b, c = (tokenizer.convert_tokens_to_ids(t) for t in "abc")
    # BOS a b c EOS and BOS c EOS (then padding), with their masks.
    assert batch.input_ids[0].tolist() == [eos, a, b, c, eos]
    assert batch.input_ids[1].tolist()[:3] == [eos, c, eos]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    torch.manual_seed(0)
    generator = hf_models.build_gpt2(len(tokenizer), 2, 16, 2, 32, 0.0, eos).eval()
    scorer = SequenceScorer(generator).eval()
    with torch.no_grad():
        logits = scorer(batch.input_ids, batch.attention_mask).logits
        # The short row alone, unpadded: its score is the head on its EOS's hidden state.
        alone = scorer.transformer(input_ids=batch.input_ids[1:, :3]).last_hidden_state
        assert logits[1, 1].item() == pytest.approx(scorer.head(alone[0, 2]).item(), abs=1e-5)
        assert logits[:, 0].tolist() == [0.0, 0.0]
        # Padding tokens do not move it.
        other_padding = batch.input_ids.clone()
        other_padding[1, 3:] = a
        again = scorer(other_padding, batch.attention_mask).logits
        assert again[1, 1].item() == pytest.approx(logits[1, 1].item(), abs=1e-5)
    # copy_body_from: the generator's current weights, the head untouched.
    with torch.no_grad():
        for parameter in generator.parameters():
            parameter.add_(0.1)
    head = scorer.head.weight.clone()
    scorer.copy_body_from(generator)
    for name, value in generator.transformer.state_dict().items():
        assert torch.equal(scorer.transformer.state_dict()[name], value), name
    assert torch.equal(scorer.head.weight, head)


# -- the variants ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(coco):
    return Corpus("coco_tiny", coco.train[:300], coco.test[:100], coco.tokenization)


def make(name, corpus, **overrides):
    from bench.registry import get_variant

    variant_class = get_variant(name)
    sizes = TINY_GAN if name == "gpt2_gad" else TINY
    config = build_config(variant_class.Config, {**sizes, **overrides},
                          base=variant_class.corpus_defaults(corpus))
    return variant_class(config, corpus, torch.device("cpu"), 0)


def test_gad_defaults_and_validation():
    from baselines.gpt2_bert_gan import GPT2BertGAN
    from baselines.gpt2_gad import GPT2GAD

    kind = Corpus("c", [["a"]], [["a"]], None)
    assert GPT2GAD.corpus_defaults(kind)["d_loss"] == "bradley_terry"
    assert build_config(GPT2BertGAN.Config, {}).d_loss == "bce"
    with pytest.raises(GanbenchError, match="discriminator = bert"):
        build_config(GPT2GAD.Config, {"discriminator_name_or_path": "minilm"})


def test_gad_phases(corpus):
    """MLE; then the discriminator, copied from the generator, warms up on Bradley-Terry while
    the generator keeps its MLE steps; then GRPO on the discriminator's score, with the KL's
    reference the generator as the adversarial stage starts."""
    variant = make("gpt2_gad", corpus, mle_fraction=0.25, d_warmup_fraction=0.25)
    variant.train_step(0.0)
    assert variant.phase_name() == "mle"
    report = variant.train_step(0.25)  # the first warm-up step: the copy is taken first
    assert variant.phase_name() == "discriminator"
    assert report.generator_updates == 1 and report.discriminator_updates == 1
    assert "train/d_loss" in report.logs and "train/g_mle_loss" in report.logs
    assert 0.0 <= report.logs["train/d_acc"] <= 1.0
    generator_now = {k: v.clone() for k, v in variant.generator.state_dict().items()}
    report = variant.train_step(0.5)
    assert variant.phase_name() == "adversarial"
    for name, value in variant.reference.state_dict().items():
        assert torch.equal(value, generator_now[name]), name
    assert math.isfinite(report.logs["train/g_pg_loss"])
    # The reward is the discriminator's scalar score of each sample (read straight from its
    # head, not through the two-logit path the rollout uses).
    rollout = variant._new_rollout()
    variant.discriminator.eval()
    with torch.no_grad():
        scores = variant.discriminator.scores(rollout.fakes.input_ids,
                                              rollout.fakes.attention_mask)
    assert torch.allclose(rollout.rewards, scores, atol=1e-6)
    assert scores.std() > 0


def test_gad_pairs_each_prompted_sample_with_its_own_sentence(corpus):
    variant = make("gpt2_gad", corpus, prompt_tokens=2, mle_fraction=0.0,
                   d_warmup_fraction=0.5)
    seen = []
    original = variant.real_for_d.select

    def record(index):
        seen.append(index.clone())
        return original(index)

    variant.real_for_d.select = record
    variant.train_step(0.0)
    rows = variant.prompted_rows
    assert seen and torch.equal(seen[-1], rows)
    # Each group's samples begin with the first tokens of the sentence they are paired with.
    prompts = variant.train_data.inputs[rows, :3]
    assert torch.equal(prompts[0], prompts[variant.config.group_size - 1])


def test_mixce_at_ratio_one_trains_exactly_as_gpt2_mle(corpus):
    """eta = 1 is MLE: the same seed gives gpt2_mle's weights bit for bit; eta = 0.5 does not."""
    def weights_after(name, **overrides):
        torch.manual_seed(0)
        variant = make(name, corpus, **overrides)
        for step in range(3):
            variant.train_step(step / 3)
        return variant.generator.state_dict()

    mle = weights_after("gpt2_mle")
    assert all(torch.equal(mle[k], v)
               for k, v in weights_after("gpt2_mixce", mixing_ratio=1.0).items())
    assert not all(torch.equal(mle[k], v)
                   for k, v in weights_after("gpt2_mixce", mixing_ratio=0.5).items())


def test_mixce_step_trains_and_reports_plain_nll(corpus):
    variant = make("gpt2_mixce", corpus, mixing_ratio=0.5)
    before = {k: v.clone() for k, v in variant.generator.state_dict().items()}
    report = variant.train_step(0.0)
    assert any(not torch.equal(before[k], v) for k, v in variant.generator.state_dict().items())
    # The logged loss is the NLL of the batch, not the MixCE objective.
    assert report.nll == report.logs["train/g_mle_loss"] > 0
    assert report.flops == 3 * report.tokens * variant.generator_flops_per_token()


@pytest.mark.parametrize("variant", ["gpt2_gad", "gpt2_mixce"])
def test_run_through_the_real_cli(tmp_path, tiny_text_dir, run_record, variant):
    settings = dict(TINY_GAN if variant == "gpt2_gad" else TINY)
    if variant == "gpt2_gad":
        settings.update(mle_fraction=0.25, d_warmup_fraction=0.25)
    record = run_record(variant, tiny_text_dir, "8steps", tmp_path, settings)
    assert record["status"] == "ok" and record["budget"]["steps"] == 8
    assert record["metrics"]["nll_test"] > 0 and "bleu_5" in record["metrics"]
    artifacts = tmp_path / record["run"] / "artifacts"
    assert (artifacts / "generator" / "model.safetensors").exists()
    if variant == "gpt2_gad":
        assert record["last_train_logs"]["train/phase"] == 2.0
        assert (artifacts / "discriminator.safetensors").exists()
