"""The evaluation tokenization and vocabulary of METRICS.md, shared by every variant."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Words (letters, digits, underscore) and every other non-blank character on its own: this
# splits punctuation off ("wheel." -> "wheel", ".") and collapses blanks.
WORD_OR_SYMBOL = re.compile(r"\w+|[^\w\s]")

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")


@dataclass(frozen=True)
class Tokenization:
    """How a corpus's text becomes evaluation tokens."""

    lowercase: bool = False
    per_character: bool = False

    def tokenize(self, line: str) -> list[str]:
        if self.lowercase:
            line = line.lower()
        if self.per_character:
            return [char for char in line if not char.isspace()]
        return WORD_OR_SYMBOL.findall(line)

    def tokenize_all(self, lines: Iterable[str]) -> list[list[str]]:
        return [self.tokenize(line) for line in lines]

    @staticmethod
    def detokenize(tokens: Sequence[str]) -> str:
        # Joining with single blanks is the inverse of tokenize() for every corpus we ship: the
        # stored corpora already separate tokens (and, for chinese_poems, characters) by blanks.
        return " ".join(tokens)

    @classmethod
    def infer(cls, lines: Sequence[str], per_character: bool = False) -> Tokenization:
        """Lower-case only where the corpus itself is lower-cased (METRICS.md)."""
        lowercase = not any(char.isupper() for line in lines for char in line)
        return cls(lowercase=lowercase, per_character=per_character)


class Vocabulary:
    """Token <-> id map built from the training split only; ids 0..3 are the special tokens."""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = list(SPECIAL_TOKENS) + [t for t in tokens if t not in SPECIAL_TOKENS]
        self.index = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def from_sentences(cls, sentences: Iterable[Sequence[str]]) -> Vocabulary:
        counts = Counter(token for sentence in sentences for token in sentence)
        # Most frequent first, ties by token: the same vocabulary on every machine.
        return cls([t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.index.get(token, UNK) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids up to the first EOS; padding and BOS are dropped."""
        out = []
        for i in ids:
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            out.append(self.tokens[i])
        return out


def one_line(sample: str) -> str:
    """A generated sentence as one line of samples.txt: newlines, carriage returns and runs of
    blanks become one blank, ends stripped, as the corpus reader makes of a corpus line."""
    return " ".join(sample.split())
