"""The static-cache GPT-2 stepper computes the model's own logits, and sampling through it draws
the same tokens as sampling through the model's forward with its cache."""

import pytest
import torch

from baselines.primitives import generation
from baselines.primitives.kv_decoding import (
    GPT2FixedShapeStepper,
    GPT2StaticCacheStepper,
    ModelCacheStepper,
    next_token_stepper,
)

EOS = 0


def tiny_gpt2(**overrides) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    settings = {"vocab_size": 50, "n_positions": 16, "n_embd": 32, "n_layer": 2, "n_head": 4,
                "bos_token_id": EOS, "eos_token_id": EOS}
    config = GPT2Config(**{**settings, **overrides})
    return GPT2LMHeadModel(config).eval()


def test_static_stepper_logits_equal_the_full_forward():
    model = tiny_gpt2()
    sequence = torch.randint(1, 50, (5, 12))
    with torch.no_grad():
        expected = model(input_ids=sequence).logits
    stepper = GPT2StaticCacheStepper(model, 5, 12)
    prompt = 3  # a prompt of several positions first (causal inside it), then one at a time
    got = [stepper(sequence[:, :prompt])]
    got += [stepper(sequence[:, t : t + 1]) for t in range(prompt, 12)]
    torch.testing.assert_close(torch.stack(got, dim=1), expected[:, prompt - 1 :],
                               atol=1e-5, rtol=1e-5)


def test_dropped_rows_leave_the_logits_of_the_others_unchanged():
    """Rows dropped one at a time (kept in the buffers while most go on) and then many at once
    (the buffers compacted): each step's logits are still the full forward's for the rows
    left, in their order."""
    model = tiny_gpt2()
    sequence = torch.randint(1, 50, (8, 12))
    with torch.no_grad():
        expected = model(input_ids=sequence).logits
    stepper = GPT2StaticCacheStepper(model, 8, 12)
    rows = torch.arange(8)
    stepper(sequence[:, :2])
    drops = {3: [5], 4: [0], 6: [1, 2, 6], 8: [3]}
    buffer_rows = []
    for t in range(2, 12):
        if t in drops:
            keep = ~torch.isin(rows, torch.tensor(drops[t]))
            rows = rows[keep]
            stepper.keep_rows(keep)
        got = stepper(sequence[rows, t : t + 1])
        torch.testing.assert_close(got, expected[rows, t], atol=1e-5, rtol=1e-5)
        buffer_rows.append(stepper.shape[0])
    # 7 of 8 rows left: kept in the buffers; 6 of 8 (the 3/4 mark), 3 of 6, 2 of 3: compacted.
    assert buffer_rows == [8, 8, 6, 6, 3, 3, 2, 2, 2, 2]
    assert rows.tolist() == [4, 7]


def test_sampling_through_either_stepper_draws_the_same_tokens(monkeypatch):
    model = tiny_gpt2()
    prompts = torch.tensor([[EOS, 7]] * 6)

    def sample():
        return generation.sample_tokens(model, prompts, 10, EOS, 1.0,
                                        torch.Generator().manual_seed(3), banned_ids=[1])

    static = sample()
    monkeypatch.setattr(generation, "next_token_stepper",
                        lambda m, n, length, fixed_shape: ModelCacheStepper(m))
    generic = sample()
    assert static.mask.sum() > len(prompts)  # something was sampled
    assert torch.equal(static.tokens, generic.tokens)
    assert torch.equal(static.mask, generic.mask)


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                         reason="CUDA graphs need a GPU"))])
def test_fixed_shape_stepper_logits_equal_the_full_forward(device):
    """Every decode step of one shape (masked attention over the whole buffer), on CUDA
    replayed from a CUDA graph captured at the first step: the model's own logits."""
    model = tiny_gpt2().to(device)
    sequence = torch.randint(1, 50, (5, 12), device=device)
    with torch.no_grad():
        expected = model(input_ids=sequence).logits
    stepper = next_token_stepper(model, 5, 12, fixed_shape=True)
    assert isinstance(stepper, GPT2FixedShapeStepper) and stepper.use_graph == (device == "cuda")
    prompt = 3
    got = [stepper(sequence[:, :prompt]).clone()]
    # clone(): a graph's logits are its output buffer, overwritten by the next replay
    got += [stepper(sequence[:, t : t + 1]).clone() for t in range(prompt, 12)]
    torch.testing.assert_close(torch.stack(got, dim=1), expected[:, prompt - 1 :],
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="holds 12 positions"):
        stepper(sequence[:, :1])


def utf8_vocabulary() -> list:
    """50 ids: EOS, ASCII words, lead and continuation bytes of 2- to 4-byte characters."""
    pieces = [b"a", b" the", b"\xc3", b"\xa9", b"\xe6", b"\x97\xa5", b"\xf0\x9f", b"\x98\x80",
              b"\xe6\x97", b"\xc3\xa4", b" dog", b"."]
    return [None] + [pieces[i % len(pieces)] for i in range(49)]


@pytest.mark.parametrize("eos_bias,max_new", [(0.5, 60), (2.0, 60)])
@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                         reason="CUDA graphs need a GPU"))])
def test_fixed_shape_sampling_draws_what_dropping_rows_drew(device, eos_bias, max_new):
    """Fixed-shape decoding (ended rows fed EOS to the end, a device check every 8 tokens)
    against the row-dropping path: the same tokens and lengths, with the UTF-8 guard, banned
    ids and a temperature, rows ending at many different steps; with a strong EOS every row
    ends long before max_new (the periodic check stops the loop)."""
    from baselines.primitives.utf8_guard import Utf8Guard

    model = tiny_gpt2(n_positions=64).to(device)
    with torch.no_grad():  # EOS's logit raised by eos_bias: layer norm's output sums to 0
        model.transformer.ln_f.bias.fill_(1.0)
        model.lm_head.weight[EOS] += eos_bias / model.config.n_embd
    guard = Utf8Guard(utf8_vocabulary(), torch.device(device))
    prompts = torch.tensor([[EOS, 7]] * 48, device=device)

    def sample(fixed_shape):
        return generation.sample_tokens(model, prompts, max_new, EOS, 0.8,
                                        torch.Generator(device=device).manual_seed(5),
                                        banned_ids=[1], utf8_guard=guard,
                                        fixed_shape=fixed_shape)

    dropping, fixed = sample(False), sample(True)
    lengths = dropping.mask.sum(dim=1)
    assert lengths.min() <= 4 and lengths.max() > 10  # rows end at many steps
    assert (lengths.max() == max_new + 1) == (eos_bias < 1)  # forced EOS reached or not
    assert torch.equal(fixed.tokens, dropping.tokens)
    assert torch.equal(fixed.mask, dropping.mask)
    for samples in (fixed, dropping):  # the host-side lengths the counts are taken from
        assert samples.lengths.device.type == "cpu"
        assert torch.equal(samples.lengths, samples.mask.sum(dim=1).cpu())


def test_what_the_static_stepper_does_not_implement_goes_through_the_model():
    assert type(next_token_stepper(tiny_gpt2(), 2, 8)) is GPT2StaticCacheStepper  # a CPU
    assert isinstance(next_token_stepper(tiny_gpt2().train(), 2, 8), ModelCacheStepper)
    assert isinstance(next_token_stepper(tiny_gpt2(reorder_and_upcast_attn=True), 2, 8),
                      ModelCacheStepper)
    assert isinstance(next_token_stepper(tiny_gpt2(), 2, 17), ModelCacheStepper)  # > positions


def test_a_second_prompt_is_refused():
    stepper = GPT2StaticCacheStepper(tiny_gpt2(), 2, 8)
    stepper(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="first call"):
        stepper(torch.ones(2, 2, dtype=torch.long))
