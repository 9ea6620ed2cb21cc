"""Byte-level BPE sampling never writes broken UTF-8; samples are one line each."""

import pytest
import torch

from baselines.primitives.utf8_guard import (
    BOUNDARY,
    INVALID,
    byte_level_alphabet,
    next_token_state,
)
from bench.config import build_config
from bench.corpora import Corpus
from bench.text import one_line


def test_byte_level_alphabet_is_gpt2s():
    alphabet = byte_level_alphabet()
    assert sorted(alphabet.values()) == list(range(256))
    # GPT-2's vocabulary writes a leading blank as "Ġ" (U+0120) and a newline as "Ċ" (U+010A).
    assert alphabet["A"] == 65 and alphabet["Ġ"] == 32 and alphabet["Ċ"] == 10
    assert alphabet[chr(256)] == 0 and alphabet["ÿ"] == 255


@pytest.mark.parametrize(("data", "state"), [
    (b"abc", BOUNDARY),
    ("é".encode(), BOUNDARY),            # C3 A9
    (b"\xc3", 1),                         # the first byte of é: one continuation due
    ("日".encode()[:1], 2),               # E6: two due
    (b"\xa9", INVALID),                   # a continuation byte at a boundary
    (b"\xe0\x80", INVALID),               # overlong form
    (b"\xed\xa0", INVALID),               # a surrogate
    (b"\xc0", INVALID), (b"\xff", INVALID),
    ("😀".encode(), BOUNDARY),            # F0 9F 98 80
])
def test_token_states_follow_utf8(data, state):
    assert next_token_state(BOUNDARY, data) == state
    # Split anywhere, the state carries over: the bytes decode as one string or not at all.
    for cut in range(1, len(data)):
        middle = next_token_state(BOUNDARY, data[:cut])
        if middle != INVALID:
            assert next_token_state(middle, data[cut:]) == state


def test_eos_only_at_a_character_boundary():
    assert next_token_state(BOUNDARY, None) == BOUNDARY
    assert next_token_state(1, None) == INVALID


@pytest.fixture(scope="module")
def untrained(coco):
    from baselines.gpt2_mle import GPT2MLE

    corpus = Corpus("coco_tiny", coco.train[:300], coco.test[:100], coco.tokenization)
    config = build_config(GPT2MLE.Config, {"n_layer": 1, "n_embd": 32, "n_head": 2,
                                           "bpe_vocab_size": 400, "max_new_tokens": 12})
    return GPT2MLE(config, corpus, torch.device("cpu"), 0)


def test_gpt2_samples_decode_without_replacement_characters(untrained):
    # An untrained model samples near-uniformly over its 400 tokens, the 128 bytes >= 0x80 of
    # the byte alphabet among them: unguarded, most lines hold a broken character.
    untrained._utf8_guard = None
    untrained.utf8_guard = lambda: None
    unguarded = untrained.sample(60, 1.0, seed=1)
    assert sum("\ufffd" in s for s in unguarded) > 10
    del untrained.utf8_guard, untrained._utf8_guard
    guarded = untrained.sample(60, 1.0, seed=1)
    assert len(guarded) == 60 and not any("\ufffd" in s for s in guarded)
    assert any(any(ord(ch) > 127 for ch in s) for s in guarded)  # whole non-ASCII characters


def test_one_line_collapses_newlines_and_blanks_as_the_corpus_reader_does():
    assert one_line(" a dog\r\non a\tbeach \n") == "a dog on a beach"
    assert one_line("12 7 4021") == "12 7 4021"


def test_a_vocabulary_of_whole_characters_needs_no_guard(untrained):
    from baselines.primitives.hf_tokenizers import word_tokenizer
    from baselines.primitives.utf8_guard import Utf8Guard, is_byte_level

    # The oracle's word ids: every token is ASCII digits, so no row can leave a boundary.
    oracle_words = word_tokenizer([str(i) for i in range(5000)])
    assert Utf8Guard.for_tokenizer(oracle_words, torch.device("cpu")) is None
    # A byte-level BPE holds the bytes >= 0x80 of its alphabet: it is guarded.
    assert is_byte_level(untrained.tokenizer)
    assert Utf8Guard.for_tokenizer(untrained.tokenizer, torch.device("cpu")) is not None


LATIN1_WORDS = ["läuft", "über", "straße", "grün", "schön", "der", "hund", "die", "katze",
                "fährt", "müde", "groß", "weiß", "und", "nach", "hause"]


def test_a_word_level_vocabulary_of_latin1_words_is_not_taken_for_bytes():
    """Every character of these words is inside GPT-2's 256-character byte alphabet (ä is the
    alphabet's stand-in for a byte too), so reading the alphabet called it byte-level BPE and
    forbade the words whose "bytes" were not whole UTF-8 characters."""
    from baselines.primitives import generation, hf_models, hf_tokenizers
    from baselines.primitives.utf8_guard import Utf8Guard, byte_level_alphabet, is_byte_level

    alphabet = byte_level_alphabet()
    assert all(ch in alphabet for word in LATIN1_WORDS for ch in word)  # the trap is real
    tokenizer = hf_tokenizers.word_tokenizer(LATIN1_WORDS)
    assert not is_byte_level(tokenizer)
    guard = Utf8Guard.for_tokenizer(tokenizer, torch.device("cpu"))
    assert guard is None
    # An untrained model samples near-uniformly over the 16 words: sampled with what the
    # tokenizer calls for, many lines hold ä, ü or ß (with the old guard: none of 200).
    torch.manual_seed(0)
    model = hf_models.build_gpt2(len(tokenizer), 1, 16, 2, 32, 0.0, tokenizer.eos_token_id)
    prompts = torch.full((200, 1), tokenizer.bos_token_id, dtype=torch.long)
    samples = generation.sample_tokens(model.eval(), prompts, 8, tokenizer.eos_token_id, 1.0,
                                       torch.Generator().manual_seed(0), [1], utf8_guard=guard)
    texts = generation.decode_samples(tokenizer, samples)
    assert sum(any(ch in text for ch in "äüß") for text in texts) > 50


def test_mask_forbids_exactly_the_tokens_that_cannot_decode_in_the_steps_left():
    """The vectorised mask against the scalar rule, for every state and number of steps left:
    a token is forbidden when its bytes are invalid from the state, or when the bytes it
    leaves due (STATES' pending count) outnumber the tokens that can still be sampled."""
    from baselines.primitives.utf8_guard import STATES, Utf8Guard

    vocabulary = [None, b"a", b" the", b"\xc3", b"\xa9", b"\xe6", b"\x97\xa5", b"\xf0\x9f",
                  b"\xed", b"\xa0", b"\xff", b"\xe6\x97", b"\x98\x80"]
    guard = Utf8Guard(vocabulary, torch.device("cpu"))
    states = torch.arange(len(STATES))
    for steps_left in range(6):
        logits = torch.zeros(len(STATES), len(vocabulary) + 3)  # 3 ids past the tokenizer
        logits = guard.mask_logits(logits, states, steps_left)
        for state in range(len(STATES)):
            for token, data in enumerate(vocabulary):
                after = next_token_state(state, data)
                forbidden = after == INVALID or STATES[after][0] > steps_left
                assert bool(torch.isneginf(logits[state, token])) == forbidden, (
                    state, data, steps_left)
            assert torch.isneginf(logits[state, len(vocabulary):]).all()
    # Worked by hand, from UTF-8's rules: at a boundary with no token left after this one, only
    # whole characters and EOS; "\xc3" (owes one byte) needs one token left, "\xe6" and
    # "\xed" (owe two) two; a stray continuation "\xa9" never.
    # After "\xc3" (state 1), with none left: only a continuation byte.
    def allowed(state, steps_left):
        logits = guard.mask_logits(torch.zeros(1, len(vocabulary)), torch.tensor([state]),
                                   steps_left)
        return {vocabulary[i] for i in range(len(vocabulary)) if not torch.isneginf(logits[0, i])}

    assert allowed(BOUNDARY, 0) == {None, b"a", b" the"}
    assert allowed(BOUNDARY, 1) == {None, b"a", b" the", b"\xc3", b"\xe6\x97"}
    assert allowed(BOUNDARY, 2) == allowed(BOUNDARY, 1) | {b"\xe6", b"\xf0\x9f", b"\xed"}
    assert b"\xa9" not in allowed(BOUNDARY, 5)
    assert allowed(1, 0) == {b"\xa9", b"\xa0"}


def test_masked_mass_of_nll_is_what_the_sampler_removes(untrained):
    """nll_test_masked_mass (METRICS.md): at each test position, the T = 1 probability on the
    special tokens sample() bans and on the tokens the UTF-8 guard forbids after the prefix.
    The reference walks each sentence token by token with the scalar UTF-8 rule
    (next_token_state) over a full forward's softmax; a sentence with a 2-byte character
    (é) puts the guard in a mid-character state at one position."""
    from baselines.primitives.utf8_guard import MAX_PENDING, STATES, UNREACHABLE

    sentences = [["a", "dog", "on", "a", "beach"], ["café", "au", "lait", "."], ["x"]]
    result = untrained.token_nll(sentences)
    tokenizer, model = untrained.tokenizer, untrained.generator.eval()
    alphabet = byte_level_alphabet()
    special = set(tokenizer.all_special_tokens)
    token_bytes = [None if t in special else bytes(alphabet[ch] for ch in t)
                   for t in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))]
    banned = set(untrained.banned_ids)
    total, positions, saw_mid_character = 0.0, 0, False
    with torch.no_grad():
        for sentence in sentences:
            ids = tokenizer(" ".join(sentence))["input_ids"]
            inputs = [untrained.bos_id, *ids]
            targets = [*ids, untrained.eos_id]
            probabilities = torch.softmax(model(torch.tensor([inputs])).logits[0].double(), -1)
            state = BOUNDARY
            for position, target in enumerate(targets):
                saw_mid_character |= state != BOUNDARY
                for v in range(len(tokenizer)):
                    after = next_token_state(state, token_bytes[v])
                    pending = UNREACHABLE if after == INVALID else STATES[after][0]
                    if v in banned or pending > MAX_PENDING:
                        total += float(probabilities[position, v])
                positions += 1
                state = next_token_state(state, token_bytes[target])
    assert saw_mid_character
    assert result.num_tokens == positions
    assert result.masked_mass / result.num_tokens == pytest.approx(total / positions, rel=1e-4)
