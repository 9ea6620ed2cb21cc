"""Sampling that never emits broken UTF-8 from a byte-level BPE model.

A byte-level BPE token is a byte string, not text: one token can hold the first byte of a
multi-byte character and the next its continuation, so free sampling can stop a character halfway
or start with a stray continuation byte, and decoding writes U+FFFD (GPT-2 samples on coco: ~6% of
lines). The guard keeps, per row, the state of a UTF-8 decoder after the bytes sampled so far and
masks every token whose bytes would not decode from that state, EOS too unless the row stands at a
character boundary, and every token that would leave more continuation bytes pending than steps
are left before the forced EOS. Every byte is a token of a byte-level BPE (its initial alphabet),
so a valid continuation always remains.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# Decoder states: the number of continuation bytes still due, and the range the next one must
# fall in (UTF-8 forbids overlong forms and surrogates through the byte after E0, ED, F0, F4).
BOUNDARY = 0
STATES = [  # (pending, low, high)
    (0, 0, 0), (1, 0x80, 0xBF), (2, 0x80, 0xBF), (3, 0x80, 0xBF),
    (2, 0xA0, 0xBF), (2, 0x80, 0x9F), (3, 0x90, 0xBF), (3, 0x80, 0x8F)]
_ANY_CONTINUATION = {1: 1, 2: 2, 3: 3}  # pending -> the state expecting any continuation byte
_LEAD_STATES = {0xE0: 4, 0xED: 5, 0xF0: 6, 0xF4: 7}
MAX_PENDING = 3  # continuation bytes a state can still be due
INVALID = -1
UNREACHABLE = 99  # pending count of an invalid transition: never <= the steps left


def byte_level_alphabet() -> dict[str, int]:
    """Character -> byte of the byte-level BPE alphabet (Radford et al. 2019, GPT-2): printable
    Latin-1 bytes stand for themselves, the other 68 bytes for code points 256, 257, ... in
    byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    mapping = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            mapping[chr(256 + extra)] = b
            extra += 1
    return mapping


def next_byte_state(state: int, byte: int) -> int:
    """The decoder state after one more byte, or INVALID."""
    pending, low, high = STATES[state]
    if pending:
        if not low <= byte <= high:
            return INVALID
        return _ANY_CONTINUATION.get(pending - 1, BOUNDARY)
    if byte < 0x80:
        return BOUNDARY
    if byte in _LEAD_STATES:
        return _LEAD_STATES[byte]
    if 0xC2 <= byte <= 0xDF:
        return 1
    if 0xE1 <= byte <= 0xEF:
        return 2
    if 0xF1 <= byte <= 0xF3:
        return 3
    return INVALID  # a continuation byte at a boundary, C0, C1, F5..FF


def next_token_state(state: int, token_bytes: bytes | None) -> int:
    """The state after a token's bytes; ``None`` (a special token such as EOS) is allowed only
    at a boundary and leaves it there."""
    if token_bytes is None:
        return BOUNDARY if state == BOUNDARY else INVALID
    for byte in token_bytes:
        state = next_byte_state(state, byte)
        if state == INVALID:
            break
    return state


def _names_byte_level(component) -> bool:
    """Whether a tokenizer.json pipeline component (maybe a Sequence of them) is ByteLevel."""
    if not isinstance(component, dict):
        return False
    if component.get("type") == "ByteLevel":
        return True
    parts = component.get("pretokenizers") or component.get("decoders") or []
    return any(_names_byte_level(part) for part in parts)


def is_byte_level(tokenizer) -> bool:
    """A fast tokenizer whose pre-tokenizer or decoder is ByteLevel, or a slow GPT-2-style
    tokenizer (it carries a byte_encoder table)."""
    import json

    if hasattr(tokenizer, "byte_encoder"):
        return True
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    pipeline = json.loads(backend.to_str())
    return (_names_byte_level(pipeline.get("pre_tokenizer"))
            or _names_byte_level(pipeline.get("decoder")))


class Utf8Guard:
    """Transition tables of a byte-level vocabulary: next state [S, V] and, per number of
    tokens left, the tokens that cannot follow [MAX_PENDING + 1, S, V]."""

    def __init__(self, token_bytes: Sequence[bytes | None], device: torch.device):
        table = [[next_token_state(s, b) for b in token_bytes] for s in range(len(STATES))]
        self.next_state = torch.tensor(table, dtype=torch.long, device=device)
        pending = torch.tensor([p for p, _, _ in STATES] + [UNREACHABLE], device=device)
        next_pending = pending[self.next_state]  # index -1 (INVALID) -> UNREACHABLE
        # forbidden[k][s, v]: token v may not follow state s with k sampled tokens left after
        # it (its pending bytes would not fit). Pending is at most MAX_PENDING, so k is capped
        # there. A gather of bool rows a step, where comparing gathered int64 rows was 10% of
        # a sampling pass on coco.
        self.forbidden = torch.stack([next_pending > k for k in range(MAX_PENDING + 1)])

    @classmethod
    def for_tokenizer(cls, tokenizer, device: torch.device) -> Utf8Guard | None:
        """The guard of a byte-level BPE tokenizer; None for any other, and for a vocabulary
        whose every token is whole characters (nothing to guard).

        Byte-level is read from the tokenizer's pipeline (a ByteLevel pre-tokenizer or
        decoder), never from its alphabet: a word-level vocabulary of Latin-1 words (läuft,
        straße) lies inside GPT-2's 256-character byte alphabet too, and read as bytes its
        words would be forbidden."""
        if not is_byte_level(tokenizer):
            return None
        alphabet = byte_level_alphabet()
        tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        special = set(tokenizer.all_special_tokens)
        token_bytes: list[bytes | None] = []
        for token in tokens:
            if token is None or token in special:
                token_bytes.append(None)
            elif all(ch in alphabet for ch in token):
                token_bytes.append(bytes(alphabet[ch] for ch in token))
            else:
                return None  # not a byte-level vocabulary
        if all(next_token_state(BOUNDARY, b) == BOUNDARY for b in token_bytes):
            # Every token is whole characters (the oracle's word ids are ASCII digits): a row
            # never leaves the boundary, so the mask would allow everything; it was 10% of a
            # sampling pass on the oracle.
            return None
        return cls(token_bytes, device)

    def start(self, n: int) -> torch.Tensor:
        return torch.full((n,), BOUNDARY, dtype=torch.long, device=self.next_state.device)

    def mask_logits(self, logits: torch.Tensor, states: torch.Tensor, steps_left: int
                    ) -> torch.Tensor:
        """-inf, in place, on the tokens row i may not sample from states[i] with
        ``steps_left`` sampled tokens after this one (its pending bytes must fit in them)."""
        forbidden = self.forbidden[min(steps_left, MAX_PENDING)][states]
        width = logits.shape[1]
        if width > forbidden.shape[1]:  # ids past the tokenizer (a padded embedding): never
            forbidden = torch.cat([forbidden, forbidden.new_ones(
                (len(forbidden), width - forbidden.shape[1]))], dim=1)
        return logits.masked_fill_(forbidden[:, :width], -float("inf"))

    def advance(self, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.next_state[states, tokens]
