"""SeqGAN's Monte-Carlo rollouts, batched: every completion of every prefix computed together.

SeqGAN (Yu et al. 2017) rewards the token at position t of a sampled sequence with the mean
discriminator score of R completions of the prefix that ends with it. Written plainly (the
SeqGAN code, and ``rollout_rewards_reference`` below) that is a loop over R x (T - 1) prefixes:
each prefix re-encoded from BOS and completed for a batch of B sentences, one small step at a
time. ``rollout_rewards`` computes the same thing with the work in large batches:

1. One pass of the generator over the sampled sequences keeps the LSTM (h, c) after every
   prefix (``prefix_states``): no prefix is ever re-encoded.
2. All completions advance together, position by position. A completion of a prefix of length t
   starts sampling at position t, so at position p the running batch holds every completion of
   every prefix shorter than p that has not yet ended; completions of the prefixes of length p
   join it there, from their saved states. Completions that emit EOS leave the batch.
3. Prefixes that already hold the EOS need no completion: their completions are the sequence
   itself, so their reward is the full sequence's score. Nor does a prefix of max_length
   tokens, whose only completion is the forced EOS.
4. Tokens are drawn by a two-level inverse CDF (``sample_tokens``), many times faster than
   torch.multinomial on a CPU for a vocabulary of thousands.

Rows are processed in chunks of sentences (``max_rows`` completions at most in flight) to bound
memory; scores are taken in chunks of ``max_rows`` too.

Sampling follows ``LSTMGenerator.sample``: PAD, BOS and UNK are never drawn, the last position
(max_length) is EOS, and nothing follows an EOS but PAD. The generator is used in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from baselines.primitives.engine import to_device
from baselines.primitives.estimators import monte_carlo_rewards
from baselines.primitives.lstm import LSTMGenerator
from baselines.primitives.sampling import END_CHECK_EVERY, fixed_rows_default
from bench.errors import StepAbandoned
from bench.text import BOS, EOS, PAD, UNK

ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # token ids [N, W] -> scores [N]
# (completions [N, W], their sentences [N], their common prefix length) -> scores [N]; for
# scorers that reuse what completions of one sentence's prefix share (CompletionScorer).
CompletionScoreFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
NEVER_SAMPLED = (PAD, BOS, UNK)


@dataclass
class RolloutResult:
    rewards: torch.Tensor  # [B, W]: the reward of the token at each position (padding too)
    completion_tokens: int  # tokens the completions sampled (EOS included)
    num_completions: int  # completions generated (and scored); prefixes holding EOS need none


def sample_tokens(logits: torch.Tensor, rng: torch.Generator | None = None,
                  block: int = 64) -> torch.Tensor:
    """One token per row of logits [N, V], drawn from softmax(logits), as ids [N].

    Inverse-CDF sampling in two levels: a uniform u times the row's total mass is located first
    among the cumulative masses of blocks of ``block`` tokens, then inside its block. A full
    cumulative sum over V (a sequential scan, the slowest step of a flat inverse CDF) is never
    taken; on a CPU this is several times faster than torch.multinomial for V in the thousands.
    A token of probability 0 has an empty interval, so it is never drawn: u is kept strictly
    below the totals it is compared with, so rounding cannot step past the last live token.
    Pass V a multiple of ``block`` to spare a padded copy.
    """
    rows, vocab = logits.shape
    if vocab % block:
        logits = F.pad(logits.float(), (0, block - vocab % block), value=-float("inf"))
    probs = torch.softmax(logits.float(), dim=-1)
    blocks = probs.view(rows, -1, block)
    block_cdf = blocks.sum(dim=2).cumsum_(dim=1)
    total = block_cdf[:, -1:]
    zero = torch.zeros_like(total)
    uniform = torch.rand((rows, 1), generator=rng, device=logits.device)
    u = torch.minimum(uniform * total, torch.nextafter(total, zero))
    # The clamps keep the ids in range where the masses are not finite (a diverged generator
    # draws valid ids until the harness reads the step that diverged); they change no draw.
    chosen_block = torch.searchsorted(block_cdf, u, right=True).clamp_(max=blocks.shape[1] - 1)
    below = block_cdf.gather(1, (chosen_block - 1).clamp_(min=0))
    below = torch.where(chosen_block > 0, below, zero)
    inside_cdf = blocks[torch.arange(rows, device=logits.device),
                        chosen_block.squeeze(1)].cumsum_(dim=1)
    inside_total = inside_cdf[:, -1:]
    residual = torch.minimum((u - below).clamp_(min=0.0), torch.nextafter(inside_total, zero))
    offset = torch.searchsorted(inside_cdf, residual, right=True)
    return (chosen_block * block + offset).squeeze(1).clamp_(max=vocab - 1)


class NextTokenSampler:
    """The generator's output layer padded to a multiple of the sampler's block, with the
    never-sampled tokens' and the padding's biases at -inf: logits come out ready for
    ``sample_tokens``, with no masking or padding copy per step."""

    def __init__(self, generator: LSTMGenerator, block: int = 64):
        weight, bias = generator.output.weight.detach(), generator.output.bias.detach()
        vocab = weight.shape[0]
        padded = -(-vocab // block) * block
        self.weight_t = F.pad(weight.float(), (0, 0, 0, padded - vocab)).t().contiguous()
        self.bias = F.pad(bias.float(), (0, padded - vocab), value=-float("inf"))
        self.bias[list(NEVER_SAMPLED)] = -float("inf")
        self.block = block
        self.vocab = vocab

    def __call__(self, top_hidden: torch.Tensor, rng: torch.Generator | None) -> torch.Tensor:
        logits = torch.addmm(self.bias, top_hidden.float(), self.weight_t)
        # Clamped to the real ids for a diverged generator (sample_tokens); no draw changes.
        return sample_tokens(logits, rng, self.block).clamp_(max=self.vocab - 1)


@torch.no_grad()
def prefix_states(generator: LSTMGenerator, sequences: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM state after every prefix of sequences [B, W] (target layout).

    Returns h, c of shape [num_layers, B, W, H]: index t holds the state after reading BOS and
    tokens 0..t-1, i.e. the state from which position t is sampled (t = 0: BOS alone).
    """
    batch, width = sequences.shape
    inputs = torch.cat([torch.full((batch, 1), BOS, dtype=sequences.dtype,
                                   device=sequences.device), sequences[:, :-1]], dim=1)
    embedded = generator.embedding(inputs)
    # nn.LSTM returns every position's top-layer h but the cell state c only at the end, so the
    # pass is stepped: W small steps over the B sentences, a small share of a rollout's work.
    state = None
    h_all, c_all = [], []
    for position in range(width):
        _, state = generator.lstm(embedded[:, position : position + 1], state)
        h_all.append(state[0])
        c_all.append(state[1])
    return torch.stack(h_all, dim=2), torch.stack(c_all, dim=2)


def unfinished_prefixes(sequences: torch.Tensor) -> torch.Tensor:
    """[B, W - 1]: entry t is True where the prefix of tokens 0..t holds no EOS (nor PAD) and
    t < W - 2, so that its completion still has tokens to sample. (A prefix of W - 1 tokens is
    completed by the forced EOS alone: its completion is the full sequence.)"""
    ended = torch.cumsum((sequences == EOS) | (sequences == PAD), dim=1) > 0
    unfinished = ~ended[:, :-1]
    unfinished[:, -1] = False
    return unfinished


@torch.no_grad()
def _complete_chunk(generator: LSTMGenerator, sequences: torch.Tensor, row_sentence: torch.Tensor,
                    row_length: torch.Tensor, h_prefix: torch.Tensor, c_prefix: torch.Tensor,
                    rng: torch.Generator | None, sampler: NextTokenSampler | None = None,
                    fixed_rows: bool | None = None) -> tuple[torch.Tensor, int]:
    """Completions [N, W] of the rows' prefixes (row_length sorted ascending, all < W) and the
    number of tokens sampled. Row i copies tokens 0..row_length[i]-1 of its sentence
    row_sentence[i]; both are host tensors, so that who joins when is planned without reading
    the device.

    Completions that emit EOS leave the running batch; with ``fixed_rows`` (the default on
    CUDA) they stay in it instead, their draws not kept, and the device is read once per
    END_CHECK_EVERY positions: the same distribution, other draws."""
    width = sequences.shape[1]
    device = sequences.device
    sampler = sampler or NextTokenSampler(generator)
    # Rows starting at position p (prefix length p) are rows starts[p]..starts[p + 1] - 1.
    starts = torch.searchsorted(row_length, torch.arange(width + 1)).tolist()
    first_position = int(row_length[0])
    row_sentence, row_length = to_device(row_sentence, device), to_device(row_length, device)
    positions = torch.arange(width, device=device)
    completions = sequences[row_sentence].masked_fill(
        positions.unsqueeze(0) >= row_length.unsqueeze(1), PAD)
    if fixed_rows if fixed_rows is not None else fixed_rows_default(device):
        return _complete_fixed_rows(generator, completions, row_sentence, row_length, starts,
                                    h_prefix, c_prefix, rng, sampler)
    running = torch.empty(0, dtype=torch.long, device=device)
    last_token = torch.empty(0, dtype=torch.long, device=device)
    h = c = None
    sampled = 0
    for position in range(first_position, width):
        if running.numel():  # read the token sampled at the previous position
            embedded = generator.embedding(last_token).unsqueeze(1)
            _, (h, c) = generator.lstm(embedded, (h, c))
        joining = torch.arange(starts[position], starts[position + 1], device=device)
        if joining.numel():  # completions of the prefixes of length `position` start here
            sentence = row_sentence[joining]
            h_new = h_prefix[:, sentence, position]
            c_new = c_prefix[:, sentence, position]
            running = torch.cat([running, joining])
            h = h_new if h is None else torch.cat([h, h_new], dim=1)
            c = c_new if c is None else torch.cat([c, c_new], dim=1)
        if not running.numel():
            continue
        # At max_length the token is EOS, as in LSTMGenerator.sample.
        token = (torch.full_like(running, EOS) if position == width - 1
                 else sampler(h[-1], rng))
        completions[running, position] = token
        sampled += running.numel()
        going_on = token != EOS
        running, last_token = running[going_on], token[going_on]
        h, c = h[:, going_on], c[:, going_on]
    return completions, sampled


def _complete_fixed_rows(generator: LSTMGenerator, completions: torch.Tensor,
                         row_sentence: torch.Tensor, row_length: torch.Tensor, starts: list[int],
                         h_prefix: torch.Tensor, c_prefix: torch.Tensor,
                         rng: torch.Generator | None, sampler: NextTokenSampler
                         ) -> tuple[torch.Tensor, int]:
    """_complete_chunk with every row that has joined decoding to the end: at position p the
    batch is rows 0..starts[p + 1] - 1 (known on the host), ``active`` marks those that have not
    emitted EOS, and an ended row's draws are written as PAD."""
    width = completions.shape[1]
    device = completions.device
    active = torch.empty(0, dtype=torch.bool, device=device)
    last_token = torch.empty(0, dtype=torch.long, device=device)
    h = c = None
    for position in range(width):
        joined = starts[position + 1]
        if not joined:
            continue
        if h is not None:  # read the token sampled at the previous position
            _, (h, c) = generator.lstm(generator.embedding(last_token).unsqueeze(1), (h, c))
        if joined > active.numel():  # completions of the prefixes of length `position` join
            sentence = row_sentence[active.numel() : joined]
            h_new, c_new = h_prefix[:, sentence, position], c_prefix[:, sentence, position]
            h = h_new if h is None else torch.cat([h, h_new], dim=1)
            c = c_new if c is None else torch.cat([c, c_new], dim=1)
            active = torch.cat([active, torch.ones(joined - active.numel(), dtype=torch.bool,
                                                   device=device)])
        # At max_length the token is EOS, as in LSTMGenerator.sample.
        token = (torch.full_like(active, EOS, dtype=torch.long) if position == width - 1
                 else sampler(h[-1], rng))
        completions[:joined, position] = torch.where(active, token, PAD)
        active = active & (token != EOS)
        last_token = token
        if (joined == len(completions) and (position + 1) % END_CHECK_EVERY == 0
                and not bool(active.any())):
            break
    # Sampled tokens: all but the prefixes' (one read of the device, at the end).
    sampled = int((completions != PAD).sum() - row_length.sum())
    return completions, sampled


@torch.no_grad()
def sample_sequences(generator: LSTMGenerator, n: int, width: int,
                     rng: torch.Generator | None = None, fixed_rows: bool | None = None
                     ) -> tuple[torch.Tensor, int]:
    """n fresh samples [n, width] in the target layout (tokens, EOS, PAD), distributed as
    LSTMGenerator.sample's (max_length = width - 1), and how many tokens they hold (EOS
    included).

    Drawn with ``sample_tokens`` as rollout completions of the empty prefix; ``fixed_rows`` as
    _complete_chunk's (the default on CUDA: every row decodes to the end)."""
    was_training = generator.training
    generator.eval()
    device = generator.output.weight.device
    bos = generator.embedding(torch.full((n, 1), BOS, dtype=torch.long, device=device))
    _, (h, c) = generator.lstm(bos)
    empty = torch.full((n, width), PAD, dtype=torch.long, device=device)
    rows = torch.arange(n)
    # Every row is a completion of the empty prefix, whose state is the one after BOS.
    samples, tokens = _complete_chunk(generator, empty, rows, torch.zeros_like(rows),
                                      h.unsqueeze(2), c.unsqueeze(2), rng, fixed_rows=fixed_rows)
    generator.train(was_training)
    return samples, tokens


@torch.no_grad()
def score_in_chunks(score_fn: ScoreFn, tokens: torch.Tensor, chunk: int) -> torch.Tensor:
    if tokens.shape[0] == 0:
        return torch.empty(0, device=tokens.device)
    return torch.cat([score_fn(tokens[i : i + chunk]).float()
                      for i in range(0, tokens.shape[0], chunk)])


@torch.no_grad()
def score_by_prefix_length(score_completions: CompletionScoreFn, completions: torch.Tensor,
                           sentence: torch.Tensor, prefix_index: torch.Tensor, chunk: int,
                           should_stop: Callable[[], bool] | None = None) -> torch.Tensor:
    """Scores [N] of completions, passed to ``score_completions`` in groups of one prefix
    length (at most ``chunk`` rows a call); ``should_stop`` is asked before every group.
    ``sentence`` and ``prefix_index`` are host tensors: the groups are planned there."""
    device = completions.device
    scores = torch.empty(completions.shape[0], device=device)
    order = torch.argsort(prefix_index, stable=True)
    lengths = prefix_index[order]
    bounds = torch.searchsorted(lengths, torch.unique_consecutive(lengths)).tolist()
    sentence = to_device(sentence, device)
    for begin, end in zip(bounds, bounds[1:] + [len(order)]):
        if should_stop is not None and should_stop():
            raise StepAbandoned("the budget ran out while scoring the rollouts")
        prefix_length = int(lengths[begin]) + 1
        for first in range(begin, end, chunk):
            rows = to_device(order[first : min(first + chunk, end)], device)
            scores[rows] = score_completions(completions[rows], sentence[rows],
                                             prefix_length).float()
    return scores


@torch.no_grad()
def rollout_rewards(generator: LSTMGenerator, sequences: torch.Tensor, num_rollouts: int,
                    score_fn: ScoreFn, rng: torch.Generator | None = None,
                    max_rows: int = 1024, should_stop: Callable[[], bool] | None = None,
                    score_completions: CompletionScoreFn | None = None,
                    fixed_rows: bool | None = None) -> RolloutResult:
    """SeqGAN's per-token rewards [B, W] of sequences [B, W] (target layout: tokens, EOS, PAD),
    from ``num_rollouts`` completions of every prefix drawn from ``generator`` and scored by
    ``score_fn`` (token ids [N, W] -> [N]); batched as the module docstring says.

    With ``score_completions`` (the same scores, computed knowing each completion's sentence
    and prefix length) the completions are scored by it instead, after all are drawn, grouped
    by prefix length across sentences; ``score_fn`` then scores the full sequences alone.

    ``should_stop`` is asked before every chunk: when it says yes, StepAbandoned is raised (a
    rollout on long sentences can take longer than a whole seconds budget). ``fixed_rows``:
    how completions decode (_complete_chunk; by default every row to the end on CUDA)."""
    was_training = generator.training
    generator.eval()
    try:
        return _rollout_rewards(generator, sequences, num_rollouts, score_fn, rng, max_rows,
                                should_stop, score_completions, fixed_rows)
    finally:
        generator.train(was_training)


def _rollout_rewards(generator: LSTMGenerator, sequences: torch.Tensor, num_rollouts: int,
                     score_fn: ScoreFn, rng: torch.Generator | None, max_rows: int,
                     should_stop: Callable[[], bool] | None,
                     score_completions: CompletionScoreFn | None,
                     fixed_rows: bool | None) -> RolloutResult:
    batch, width = sequences.shape

    def at(*host_index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(to_device(index, sequences.device) for index in host_index)

    full_scores = score_in_chunks(score_fn, sequences, max_rows)
    # A finished prefix's completions are the sequence itself: they score full_scores.
    completion_scores = full_scores.view(batch, 1, 1).expand(
        batch, width - 1, num_rollouts).clone()
    h_prefix, c_prefix = prefix_states(generator, sequences)
    # Which prefixes need completions, planned on the host after one read of the samples: the
    # chunks below then know their rows without waiting for the device.
    unfinished = unfinished_prefixes(sequences.cpu())
    sampler = NextTokenSampler(generator)
    sentences_per_chunk = max(1, max_rows // max(1, (width - 1) * num_rollouts))
    completion_tokens = num_completions = 0
    kept: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for first in range(0, batch, sentences_per_chunk):
        if should_stop is not None and should_stop():
            raise StepAbandoned("the budget ran out during the rollouts")
        chunk_unfinished = unfinished[first : first + sentences_per_chunk]
        # (prefix index, sentence) pairs ordered by prefix index: rows join in that order.
        prefix_index, sentence = torch.nonzero(chunk_unfinished.t(), as_tuple=True)
        if not prefix_index.numel():
            continue
        sentence = (sentence + first).repeat_interleave(num_rollouts)
        prefix_index = prefix_index.repeat_interleave(num_rollouts)
        rollout = torch.arange(prefix_index.numel()) % num_rollouts
        completions, sampled = _complete_chunk(generator, sequences, sentence, prefix_index + 1,
                                               h_prefix, c_prefix, rng, sampler, fixed_rows)
        if score_completions is None:
            completion_scores[at(sentence, prefix_index, rollout)] = score_in_chunks(
                score_fn, completions, max_rows)
        else:
            kept.append((completions, sentence, prefix_index, rollout))
        completion_tokens += sampled
        num_completions += completions.shape[0]
    if kept:
        completions, sentence, prefix_index, rollout = (torch.cat(parts) for parts in zip(*kept))
        completion_scores[at(sentence, prefix_index, rollout)] = score_by_prefix_length(
            score_completions, completions, sentence, prefix_index, max_rows, should_stop)
    return RolloutResult(monte_carlo_rewards(completion_scores, full_scores),
                         completion_tokens, num_completions)


@torch.no_grad()
def rollout_rewards_reference(generator: LSTMGenerator, sequences: torch.Tensor,
                              num_rollouts: int, score_fn: ScoreFn,
                              rng: torch.Generator | None = None) -> torch.Tensor:
    """The same rewards [B, W], computed prefix by prefix as the SeqGAN code does: for every
    rollout and every prefix length, re-encode the prefix from BOS, then sample the rest of the
    B sentences one position at a time with torch.multinomial. Kept plain on purpose: it is the
    reference that tests and tests/bench_rollout.py compare ``rollout_rewards`` with."""
    was_training = generator.training
    generator.eval()
    batch, width = sequences.shape
    scores = torch.zeros(batch, width - 1, num_rollouts, device=sequences.device)
    bos = torch.full((batch, 1), BOS, dtype=torch.long, device=sequences.device)
    for rollout in range(num_rollouts):
        for length in range(1, width):
            prefix = sequences[:, :length]
            logits, state = generator(torch.cat([bos, prefix], dim=1))
            tokens = [prefix]
            finished = ((prefix == EOS) | (prefix == PAD)).any(dim=1)
            for position in range(length, width):
                if position == width - 1:
                    token = torch.full((batch,), EOS, dtype=torch.long, device=sequences.device)
                else:
                    next_logits = logits[:, -1].float()
                    next_logits[:, list(NEVER_SAMPLED)] = -float("inf")
                    probs = torch.softmax(next_logits, dim=-1)
                    token = torch.multinomial(probs, 1, generator=rng).squeeze(1)
                token = torch.where(finished, torch.full_like(token, PAD), token)
                tokens.append(token.unsqueeze(1))
                finished = finished | (token == EOS)
                if position < width - 1:
                    logits, state = generator(token.unsqueeze(1), state)
            scores[:, length - 1, rollout] = score_fn(torch.cat(tokens, dim=1)).float()
    generator.train(was_training)
    return monte_carlo_rewards(scores, score_fn(sequences).float())
