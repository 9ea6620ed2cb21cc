"""The LSTM GANs' estimators and losses against numbers worked out by hand."""

import math

import pytest
import torch

from baselines.primitives import estimators as est

LN2, LN3 = math.log(2.0), math.log(3.0)


def test_monte_carlo_rewards_by_hand():
    # Sentence 0: prefix of length 1 -> completions scored 0.2, 0.4 (mean 0.3); length 2 ->
    # 1.0, 0.0 (mean 0.5); the last position gets the full sequence's score, 0.9.
    # Sentence 1: means (0.1 + 0.3) / 2 = 0.2 and (0.6 + 0.8) / 2 = 0.7; full 0.
    completion_scores = torch.tensor([[[0.2, 0.4], [1.0, 0.0]],
                                      [[0.1, 0.3], [0.6, 0.8]]])
    full = torch.tensor([0.9, 0.0])
    got = est.monte_carlo_rewards(completion_scores, full)
    assert torch.allclose(got, torch.tensor([[0.3, 0.5, 0.9], [0.2, 0.7, 0.0]]))
    with pytest.raises(ValueError):
        est.monte_carlo_rewards(completion_scores, torch.zeros(3))


def test_discounted_returns_by_hand():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    # gamma 0.5: R_2 = 3; R_1 = 2 + 0.5 x 3 = 3.5; R_0 = 1 + 0.5 x 3.5 = 2.75.
    got = est.discounted_returns(rewards, torch.ones(1, 3, dtype=torch.bool), 0.5)
    assert torch.allclose(got, torch.tensor([[2.75, 3.5, 3.0]]))
    # The third position is padding: its reward does not count and its return is 0:
    # R_1 = 2, R_0 = 1 + 0.5 x 2 = 2.
    mask = torch.tensor([[True, True, False]])
    assert torch.allclose(est.discounted_returns(rewards, mask, 0.5),
                          torch.tensor([[2.0, 2.0, 0.0]]))
    # gamma 0: each token its own reward; gamma 1: the sum of what follows.
    assert torch.allclose(est.discounted_returns(rewards, mask, 0.0),
                          torch.tensor([[1.0, 2.0, 0.0]]))
    assert torch.allclose(est.discounted_returns(rewards, mask, 1.0),
                          torch.tensor([[3.0, 2.0, 0.0]]))


def test_reinforce_loss_by_hand():
    # Tokens of probability 1/2 and 1/4, a padded third position (its huge log-prob ignored).
    log_probs = torch.log(torch.tensor([[0.5, 0.25, 1e-9]]))
    mask = torch.tensor([[True, True, False]])
    # Sequence reward 2, baseline 1: advantage 1 on both tokens:
    # loss = -(ln 1/2 + ln 1/4) / 2 = (ln 2 + 2 ln 2) / 2 = 1.5 ln 2.
    loss = est.reinforce_loss(log_probs, torch.tensor([2.0]), mask, baseline=1.0)
    assert loss.item() == pytest.approx(1.5 * LN2)
    # No baseline: advantage 2, twice that.
    assert est.reinforce_loss(log_probs, torch.tensor([2.0]), mask).item() == pytest.approx(
        3 * LN2)
    # Per-token rewards (3, 1) minus a per-position baseline (1, 1): advantages (2, 0):
    # loss = -(2 ln 1/2 + 0) / 2 = ln 2.
    per_token = torch.tensor([[3.0, 1.0, 100.0]])
    loss = est.reinforce_loss(log_probs, per_token, mask, baseline=torch.ones(3))
    assert loss.item() == pytest.approx(LN2)


def test_reinforce_gradient_is_minus_advantage_per_counted_token():
    # d loss / d log p_t = -A_t / (counted tokens); A = (2, -1) over 4 counted tokens:
    # -1/2 on the first sequence, +1/4 on the second. Nothing reaches rewards or baseline.
    log_probs = torch.zeros(2, 2, requires_grad=True)
    rewards = torch.tensor([3.0, 0.0], requires_grad=True)
    baseline = torch.tensor(1.0, requires_grad=True)
    mask = torch.ones(2, 2, dtype=torch.bool)
    est.reinforce_loss(log_probs, rewards, mask, baseline).backward()
    assert torch.allclose(log_probs.grad, torch.tensor([[-0.5, -0.5], [0.25, 0.25]]))
    assert rewards.grad is None and baseline.grad is None


def test_baselines_by_hand():
    assert est.batch_mean_baseline(torch.tensor([1.0, 2.0, 6.0])).item() == pytest.approx(3.0)
    # Per position over the sequences counted there: position 0: (1 + 3) / 2 = 2;
    # position 1: only the first sequence, 4; position 2: none, 0.
    rewards = torch.tensor([[1.0, 4.0, 7.0], [3.0, 9.0, 9.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert torch.allclose(est.batch_mean_baseline(rewards, mask), torch.tensor([2.0, 4.0, 0.0]))
    # Moving average: the first value starts it; then 0.9 x 2 + 0.1 x 12 = 3.
    first = est.moving_average(None, torch.tensor(2.0), 0.9)
    assert first.item() == 2.0
    assert est.moving_average(first, torch.tensor(12.0), 0.9).item() == pytest.approx(3.0)


def test_gumbel_straight_through_forward_and_gradient_by_hand():
    logits = torch.tensor([[0.0, LN2, LN3]], requires_grad=True)
    temperature = 0.5
    rng = torch.Generator().manual_seed(3)
    one_hot, index = est.gumbel_softmax_straight_through(logits, temperature, rng)
    # Rebuild the same noise from the same seed: g = -ln(-ln u).
    uniform = torch.rand((1, 3), generator=torch.Generator().manual_seed(3))
    perturbed = logits.detach() + -torch.log(-torch.log(uniform))
    # Forward: exactly the one-hot of argmax(logits + g) (the Gumbel-max trick).
    assert index.item() == perturbed.argmax().item()
    assert torch.equal(one_hot.detach(), torch.nn.functional.one_hot(index, 3).float())
    # Backward: the soft sample's. For L = sum_j w_j y_j with s = softmax(perturbed / tau):
    # dL/dlogit_k = s_k (w_k - sum_j w_j s_j) / tau.
    weights = torch.tensor([1.0, -2.0, 0.5])
    (one_hot * weights).sum().backward()
    soft = torch.softmax(perturbed / temperature, dim=-1)[0]
    expected = soft * (weights - (weights * soft).sum()) / temperature
    assert torch.allclose(logits.grad[0], expected, atol=1e-6)


def test_gumbel_samples_follow_the_softmax():
    # softmax(ln 0.2, ln 0.3, ln 0.5) = (0.2, 0.3, 0.5); a -inf token is never drawn.
    logits = torch.log(torch.tensor([0.2, 0.3, 0.5, 0.0])).repeat(20_000, 1)
    _, index = est.gumbel_softmax_straight_through(logits, 1.0,
                                                   torch.Generator().manual_seed(0))
    frequencies = torch.bincount(index, minlength=4) / 20_000
    assert torch.allclose(frequencies, torch.tensor([0.2, 0.3, 0.5, 0.0]), atol=0.015)
    assert frequencies[3] == 0


def test_gan_losses_by_hand():
    zero = torch.zeros(2)
    # sigmoid(0) = 1/2: -ln 1/2 = ln 2 for real and fake alike.
    assert est.discriminator_bce_loss(zero, zero).item() == pytest.approx(LN2)
    # sigmoid(ln 3) = 3/4: real term -ln 3/4 = ln 4/3, fake term -ln(1 - 3/4) = ln 4;
    # loss = (ln 4/3 + ln 4) / 2 = ln(16/3) / 2.
    real, fake = torch.tensor([LN3]), torch.tensor([LN3])
    assert est.discriminator_bce_loss(real, fake).item() == pytest.approx(
        math.log(16 / 3) / 2)
    # The two sets weigh the same whatever their sizes: 3 real at 0 (ln 2 each), 1 fake at
    # ln 3 (ln 4): (ln 2 + ln 4) / 2 = 1.5 ln 2.
    assert est.discriminator_bce_loss(torch.zeros(3), fake).item() == pytest.approx(1.5 * LN2)
    # Non-saturating: -ln sigmoid(ln 3) = ln 4/3.
    assert est.nonsaturating_generator_loss(fake).item() == pytest.approx(math.log(4 / 3))
    # Wasserstein: real scores (1, 3), fake (0, 1): critic 0.5 - 2 = -1.5; generator -0.5.
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])
    assert est.wasserstein_critic_loss(real, fake).item() == pytest.approx(-1.5)
    assert est.wasserstein_generator_loss(fake).item() == pytest.approx(-0.5)


def test_nonsaturating_gradient_does_not_vanish():
    # d/dl -ln sigmoid(l) = sigmoid(l) - 1: at l = -10 (a confident discriminator) about -1,
    # where the saturating ln(1 - sigmoid(l)) would give -sigmoid(l) ~ -4.5e-5.
    logit = torch.tensor([-10.0], requires_grad=True)
    est.nonsaturating_generator_loss(logit).backward()
    assert logit.grad.item() == pytest.approx(torch.sigmoid(torch.tensor(-10.0)).item() - 1)


def test_diagnostics_by_hand():
    # Real (1, -1): one right; fake (-2, 0.5): one right -> (1/2 + 1/2) / 2.
    acc = est.binary_accuracy(torch.tensor([1.0, -1.0]), torch.tensor([-2.0, 0.5]))
    assert acc.item() == pytest.approx(0.5)
    assert est.binary_accuracy(torch.tensor([2.0]), torch.tensor([-1.0, -3.0])).item() == 1.0
    # Uniform over 4 tokens: ln 4; over 2 live tokens (two at -inf): ln 2, not NaN; the
    # padded position (entropy ln 4) does not count: mean (ln 4 + ln 2) / 2 = 1.5 ln 2.
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -math.inf, -math.inf],
                            [0.0, 0.0, 0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    assert est.mean_token_entropy(logits, mask).item() == pytest.approx(1.5 * LN2)
