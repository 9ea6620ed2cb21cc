"""Batched Monte-Carlo rollouts: each reward comes from its own sentence's own prefix, the
completions follow the generator from the saved prefix states, and the batched rewards equal
the plain prefix-by-prefix loop's."""

import pytest
import torch

from baselines.primitives.discriminators import CNNDiscriminator
from baselines.primitives.lstm import LSTMGenerator
from baselines.primitives.rollout import (
    NextTokenSampler,
    prefix_states,
    rollout_rewards,
    rollout_rewards_reference,
    sample_sequences,
    sample_tokens,
)
from bench.text import BOS, EOS, PAD, UNK

FIRST_PREFIX_ID = 100  # sentence i's token at position s is 100 + 10 i + s
FILLERS = [4, 5, 6, 7]  # the only tokens the fake generator draws


def filler_generator(vocab_size: int, probabilities=None) -> LSTMGenerator:
    """A generator whose next token ignores its state: fillers with the given probabilities."""
    generator = LSTMGenerator(vocab_size, 4, 4)
    probabilities = probabilities or [1 / len(FILLERS)] * len(FILLERS)
    with torch.no_grad():
        generator.output.weight.zero_()
        generator.output.bias.fill_(-1e4)
        generator.output.bias[FILLERS[: len(probabilities)]] = torch.log(
            torch.tensor(probabilities))
    return generator


def sentence_and_prefix_score(tokens: torch.Tensor) -> torch.Tensor:
    """A fake discriminator: 1000 x (sentence id) + (prefix length it was given), read from the
    prefix tokens (ids >= 100); -1e6 for a row that is not prefix, fillers, one EOS, PADs."""
    scores = []
    for row in tokens.tolist():
        from_prefix = [t for t in row if t >= FIRST_PREFIX_ID]
        length = len(from_prefix)
        end = row.index(EOS) if EOS in row else -1
        well_formed = (end >= length and row[:length] == from_prefix
                       and all(t in FILLERS for t in row[length:end])
                       and all(t == PAD for t in row[end + 1 :]))
        sentence = (from_prefix[0] - FIRST_PREFIX_ID) // 10 if from_prefix else -1
        scores.append(1000.0 * sentence + length if well_formed else -1e6)
    return torch.tensor(scores)


def labelled_sentences(width: int, eos_at: list[int]) -> torch.Tensor:
    rows = []
    for i, end in enumerate(eos_at):
        row = [FIRST_PREFIX_ID + 10 * i + s for s in range(end)] + [EOS]
        rows.append(row + [PAD] * (width - len(row)))
    return torch.tensor(rows)


# fixed_rows: every completion decodes to the end (CUDA's default), or ended ones leave.
@pytest.mark.parametrize("fixed_rows", [False, True])
@pytest.mark.parametrize("max_rows", [4096, 7])  # all in one chunk, and one sentence a chunk
def test_each_reward_comes_from_its_own_sentence_and_prefix(max_rows, fixed_rows):
    width, rollouts = 6, 4
    # Sentences 0 and 1 run to the length cap (EOS at position 5); sentence 2 ends early (EOS
    # at 2), so its prefixes of length >= 3 hold the EOS and are complete already.
    sequences = labelled_sentences(width, [5, 5, 2])
    result = rollout_rewards(filler_generator(200), sequences, rollouts,
                             sentence_and_prefix_score, torch.Generator().manual_seed(0),
                             max_rows=max_rows, fixed_rows=fixed_rows)
    # reward[i, t] scores completions of sentence i's prefix of tokens 0..t (length t + 1);
    # the last position, and every position of a finished prefix, the full sentence.
    expected = torch.tensor([
        [1.0, 2.0, 3.0, 4.0, 5.0, 5.0],
        [1001.0, 1002.0, 1003.0, 1004.0, 1005.0, 1005.0],
        [2001.0, 2002.0, 2002.0, 2002.0, 2002.0, 2002.0],
    ])
    assert torch.equal(result.rewards, expected)
    # Completions: sentences 0 and 1 need them for prefix lengths 1..4 (length 5 is only
    # completed by the forced EOS: the full sentence), sentence 2 for lengths 1 and 2. A prefix
    # of length t samples positions t..4 and the EOS at 5: 6 - t tokens.
    assert result.num_completions == rollouts * (4 + 4 + 2)
    tokens_per_rollout = 2 * sum(6 - t for t in range(1, 5)) + (6 - 1) + (6 - 2)
    assert result.completion_tokens == rollouts * tokens_per_rollout


@pytest.mark.parametrize("fixed_rows", [False, True])
def test_rollouts_follow_the_generator(fixed_rows):
    # The fake generator draws filler 4 with probability 0.3, 5 with 0.7; score = count of 4s.
    # For a prefix of length t of a width-6 sentence, positions t..4 are drawn (5 is EOS):
    # E[score] = (4s in the prefix) + 0.3 x (5 - t).
    rollouts = 3000
    sequences = torch.tensor([[4, 5, 4, 4, 5, EOS], [5, 5, 5, 5, 5, EOS]])
    generator = filler_generator(20, [0.3, 0.7])
    result = rollout_rewards(generator, sequences, rollouts,
                             lambda tokens: (tokens == 4).sum(dim=1).float(),
                             torch.Generator().manual_seed(1), fixed_rows=fixed_rows)
    counts = torch.cumsum((sequences[:, :-1] == 4).float(), dim=1)
    drawn = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0])
    expected = torch.cat([counts + 0.3 * drawn, (sequences == 4).sum(1, keepdim=True)], dim=1)
    # Standard error at most sqrt(0.21 x 4 / 3000) = 0.017.
    assert torch.allclose(result.rewards, expected.float(), atol=0.08)


def peaked_generator(vocab_size: int) -> LSTMGenerator:
    """A random 2-layer LSTM whose output is so peaked that sampling is its argmax: the
    completions are then fixed by the prefix's state, whatever the sampler."""
    torch.manual_seed(5)
    generator = LSTMGenerator(vocab_size, 8, 16, num_layers=2)
    with torch.no_grad():
        generator.output.weight.mul_(1e6)
    return generator


def test_prefix_states_equal_reencoding_every_prefix():
    generator = peaked_generator(30).eval()
    sequences = torch.randint(4, 30, (3, 7))
    h, c = prefix_states(generator, sequences)
    for length in range(7):
        inputs = torch.cat([torch.full((3, 1), BOS), sequences[:, :length]], dim=1)
        _, (h_direct, c_direct) = generator.lstm(generator.embedding(inputs))
        assert torch.allclose(h[:, :, length], h_direct, atol=1e-6)
        assert torch.allclose(c[:, :, length], c_direct, atol=1e-6)


@pytest.mark.parametrize("fixed_rows", [False, True])
def test_batched_rewards_equal_the_prefix_by_prefix_loop(fixed_rows):
    torch.manual_seed(0)
    vocab, width = 30, 8
    generator = peaked_generator(vocab)
    discriminator = CNNDiscriminator(vocab, 8, [1, 3], [6, 5], dropout=0.0).eval()
    score = lambda tokens: torch.sigmoid(discriminator(tokens))  # noqa: E731
    sequences = torch.randint(4, vocab, (5, width))
    sequences[:, -1] = EOS
    sequences[1, 3:] = torch.tensor([EOS] + [PAD] * (width - 4))  # ends early
    sequences[3, 1:] = torch.tensor([EOS] + [PAD] * (width - 2))
    batched = rollout_rewards(generator, sequences, 3, score, torch.Generator().manual_seed(0),
                              max_rows=10, fixed_rows=fixed_rows)
    reference = rollout_rewards_reference(generator, sequences, 3, score,
                                          torch.Generator().manual_seed(0))
    assert torch.allclose(batched.rewards, reference, atol=1e-6)
    # The rewards vary with the prefix (the test would pass vacuously on constant scores).
    assert batched.rewards.std() > 1e-4


def test_sample_tokens_follows_the_softmax():
    # 130 tokens: two blocks of 64 and a partial third; zero-probability tokens at block edges.
    torch.manual_seed(0)
    logits = torch.randn(130) * 2
    logits[[0, 63, 64, 127, 128, 129]] = -float("inf")
    probabilities = torch.softmax(logits, dim=0)
    draws = sample_tokens(logits.repeat(200_000, 1), torch.Generator().manual_seed(0))
    frequencies = torch.bincount(draws, minlength=130).float() / 200_000
    assert frequencies[[0, 63, 64, 127, 128, 129]].sum() == 0
    assert (frequencies - probabilities).abs().max() < 0.004
    # All the mass on the last token of the partial block: always it.
    one = torch.full((1, 130), -float("inf"))
    one[0, 129] = 0.0
    assert torch.all(sample_tokens(one.repeat(1000, 1)) == 129)


def test_samplers_draw_valid_ids_from_a_diverged_generator():
    # NaN logits (weights gone non-finite): ids stay in range, so the run goes on to the sync
    # point where the harness reads the diverged step, instead of failing on an index error.
    from baselines.primitives.sampling import draw_categorical

    for vocab in (130, 128):
        nan = torch.full((50, vocab), float("nan"))
        assert sample_tokens(nan).max() < vocab
        assert draw_categorical(torch.softmax(nan, dim=-1), None).max() < vocab
    generator = LSTMGenerator(70, 4, 4)  # its output layer padded to 128 ids for the sampler
    with torch.no_grad():
        generator.output.bias.fill_(float("nan"))
    assert NextTokenSampler(generator)(torch.zeros(50, 4), None).max() < 70


@pytest.mark.parametrize("fixed_rows", [False, True])  # True: CUDA's default loop
def test_sample_sequences_layout_and_distribution(fixed_rows):
    # Position 0 draws fillers 4..7 with probabilities 0.1, 0.2, 0.3, 0.4 (state ignored).
    generator = filler_generator(12, [0.1, 0.2, 0.3, 0.4])
    samples, tokens = sample_sequences(generator, 20_000, 5, torch.Generator().manual_seed(0),
                                       fixed_rows)
    assert samples.shape == (20_000, 5) and tokens == 20_000 * 5
    assert torch.all(samples[:, -1] == EOS) and torch.all(samples[:, :-1] >= 4)
    frequencies = torch.bincount(samples[:, 0], minlength=8)[4:].float() / 20_000
    assert torch.allclose(frequencies, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.015)
    # A real generator: PAD, BOS, UNK never drawn; nothing but PAD after the first EOS.
    torch.manual_seed(0)
    samples, tokens = sample_sequences(LSTMGenerator(12, 4, 4), 500, 6, None, fixed_rows)
    # The count made while drawing is the samples' non-padding tokens (EOS included).
    assert tokens == int((samples != PAD).sum()) and 500 < tokens < 500 * 6
    assert not torch.isin(samples, torch.tensor([BOS, UNK])).any()
    after_eos = torch.cumsum(samples == EOS, dim=1) - (samples == EOS).long()
    assert torch.all(samples[after_eos > 0] == PAD) and torch.all(samples[after_eos == 0] != PAD)
    assert torch.all((samples == EOS).sum(dim=1) == 1)


@pytest.mark.parametrize("fixed_rows", [False, True])
def test_completion_scorer_rewards_equal_scoring_every_completion_whole(fixed_rows):
    # The same completions (same generator, same RNG), scored by the CNN's forward pass on each
    # completion and by the scorer that reuses the prefix's windows: the same rewards.
    torch.manual_seed(0)
    vocab, width = 30, 9
    generator = LSTMGenerator(vocab, 8, 8)
    discriminator = CNNDiscriminator(vocab, 8, [1, 2, 3, 5], [6, 5, 4, 3], dropout=0.0).eval()
    score = lambda tokens: torch.sigmoid(discriminator(tokens))  # noqa: E731
    sequences, _ = sample_sequences(generator, 6, width, torch.Generator().manual_seed(1))
    sequences[2, 2:] = torch.tensor([EOS] + [PAD] * (width - 3))  # one ends early
    scorer = discriminator.completion_scorer(sequences)
    plain = rollout_rewards(generator, sequences, 3, score, torch.Generator().manual_seed(2),
                            max_rows=16, fixed_rows=fixed_rows)
    reusing = rollout_rewards(generator, sequences, 3, score, torch.Generator().manual_seed(2),
                              max_rows=16, fixed_rows=fixed_rows,
                              score_completions=lambda *a: torch.sigmoid(scorer(*a)))
    assert torch.allclose(reusing.rewards, plain.rewards, atol=1e-6)
    assert reusing.num_completions == plain.num_completions
    assert plain.rewards.std() > 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_completions_on_cuda_follow_the_generator():
    """CUDA's default (every row decoding to the end): the same frequencies, layout and counts
    as the tests above on the CPU, and rewards that follow the generator."""
    cuda = torch.device("cuda")
    generator = filler_generator(12, [0.1, 0.2, 0.3, 0.4]).to(cuda)
    samples, tokens = sample_sequences(generator, 20_000, 5,
                                       torch.Generator(device=cuda).manual_seed(0))
    frequencies = torch.bincount(samples[:, 0], minlength=8)[4:].float().cpu() / 20_000
    assert torch.allclose(frequencies, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.015)
    assert tokens == 20_000 * 5 and torch.all(samples[:, -1] == EOS)
    torch.manual_seed(0)
    samples, tokens = sample_sequences(LSTMGenerator(12, 4, 4).to(cuda), 500, 6)
    after_eos = torch.cumsum(samples == EOS, dim=1) - (samples == EOS).long()
    assert torch.all(samples[after_eos > 0] == PAD) and torch.all(samples[after_eos == 0] != PAD)
    assert tokens == int((samples != PAD).sum())
    sequences = torch.tensor([[4, 5, 4, 4, 5, EOS], [5, 5, 5, 5, 5, EOS]], device=cuda)
    result = rollout_rewards(filler_generator(20, [0.3, 0.7]).to(cuda), sequences, 3000,
                             lambda tokens: (tokens == 4).sum(dim=1).float(),
                             torch.Generator(device=cuda).manual_seed(1))
    counts = torch.cumsum((sequences[:, :-1] == 4).float(), dim=1)
    drawn = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0], device=cuda)
    expected = torch.cat([counts + 0.3 * drawn, (sequences == 4).sum(1, keepdim=True)], dim=1)
    assert torch.allclose(result.rewards, expected.float(), atol=0.08)
