"""The generator's and the discriminator's tokenizers, trained on the corpus (or word-level on
its own tokens), and their JSON form for checkpoints.

GPT-2's one special token ``<|endoftext|>`` is BOS, EOS and padding at once (as in the released
GPT-2); the discriminator's WordPiece tokenizer has BERT's [CLS] ... [SEP] and [PAD].
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast

END_OF_TEXT = "<|endoftext|>"
WORD_UNKNOWN = "<unk>"
BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_bpe_tokenizer(texts: Sequence[str], vocab_size: int,
                        min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Byte-level BPE (GPT-2's scheme: no unknown token) trained on ``texts``.

    add_prefix_space makes a sentence's first word the same token as the word elsewhere.
    The trainer is deterministic for the same texts (tested), so a run rebuilds the same one.
    """
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[END_OF_TEXT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer)
    return wrap_generator_tokenizer(backend)


def word_tokenizer(tokens: Sequence[str]) -> PreTrainedTokenizerFast:
    """One id per evaluation token (blank-separated words): for corpora whose samples must use
    the corpus's own tokens, like the oracle's token ids. Unknown words map to <unk>, which is
    never sampled."""
    vocab = {END_OF_TEXT: 0, WORD_UNKNOWN: 1}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=WORD_UNKNOWN))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.add_special_tokens([END_OF_TEXT, WORD_UNKNOWN])
    return wrap_generator_tokenizer(backend)


def wrap_generator_tokenizer(backend: Tokenizer) -> PreTrainedTokenizerFast:
    """The transformers face of a generator tokenizer (BPE or word-level) built here."""
    unknown = WORD_UNKNOWN if backend.token_to_id(WORD_UNKNOWN) is not None else None
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=END_OF_TEXT,
                                   eos_token=END_OF_TEXT, pad_token=END_OF_TEXT,
                                   unk_token=unknown, padding_side="right",
                                   clean_up_tokenization_spaces=False)


def train_wordpiece_tokenizer(texts: Sequence[str], vocab_size: int,
                              min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """BERT's WordPiece with [CLS] ... [SEP] added to every sentence, case kept (the corpus's
    own: coco is lower-cased, news is not); CJK characters are split one per token."""
    normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    splitter = pre_tokenizers.BertPreTokenizer()
    # A deterministic WordPiece vocabulary: every character (alone and as a "##" continuation,
    # so that any word can be spelt), then whole words by frequency (ties by the word). The
    # tokenizers library's WordPieceTrainer breaks ties in hash-map order, which differs from
    # process to process, so runs and resumed runs would not share a vocabulary.
    word_counts: Counter = Counter()
    for text in texts:
        word_counts.update(w for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    characters = sorted({c for word in word_counts for c in word})
    vocab_tokens = list(BERT_SPECIAL_TOKENS) + characters + ["##" + c for c in characters]
    known = set(vocab_tokens)
    for word, count in sorted(word_counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab_tokens) >= vocab_size or count < min_frequency:
            break
        if word not in known:
            vocab_tokens.append(word)
            known.add(word)
    vocab = {token: index for index, token in enumerate(vocab_tokens)}
    backend = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(t, backend.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
    return wrap_wordpiece_tokenizer(backend)


def wrap_wordpiece_tokenizer(backend: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]",
                                   pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                                   mask_token="[MASK]", padding_side="right")


def tokenizer_json(tokenizer: PreTrainedTokenizerFast) -> str:
    """The whole tokenizer as one JSON string (for checkpoints)."""
    return tokenizer.backend_tokenizer.to_str()


def backend_from_json(text: str) -> Tokenizer:
    return Tokenizer.from_str(text)
