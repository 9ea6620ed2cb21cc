"""gpt2_mle: MLE training, sampling, NLL accounting (BPE tokens vs words), checkpoints."""

import subprocess
import sys

import pytest
import torch

from baselines.primitives.sampling import draw_categorical
from bench.checkpoint import load_state, save_state
from bench.config import build_config
from bench.corpora import Corpus
from bench.errors import GanbenchError
from bench.text import Tokenization

# The tiny test model: 2 layers, width 64.
TINY = {"n_layer": 2, "n_embd": 64, "n_head": 2, "bpe_vocab_size": 400, "batch_size": 32,
        "warmup_steps": 0, "learning_rate": 3e-3}


@pytest.fixture(scope="module")
def corpus(coco):
    return Corpus("coco_tiny", coco.train[:300], coco.test[:100], coco.tokenization)


def make(corpus, seed=0, **overrides):
    from baselines.gpt2_mle import GPT2MLE

    config = build_config(GPT2MLE.Config, {**TINY, **overrides})
    return GPT2MLE(config, corpus, torch.device("cpu"), seed)


@pytest.fixture(scope="module")
def trained(corpus):
    variant = make(corpus)
    losses = [variant.train_step(i / 40).logs["train/g_mle_loss"] for i in range(40)]
    return variant, losses


def test_importing_the_variants_does_not_import_transformers():
    # `ganbench list` imports every variant module: transformers must wait until one is built.
    code = ("import sys, baselines.gpt2_mle, baselines.gpt2_bert_gan, baselines.gpt2_gad, "
            "baselines.gpt2_mixce; "
            "assert 'transformers' not in sys.modules, 'transformers imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_mle_lowers_the_loss_and_counts_bpe_tokens(trained, corpus):
    variant, losses = trained
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    report = variant.train_step(1.0)
    assert report.tokens > 0 and report.flops > 3 * report.tokens
    # Every step's tokens: the batch's BPE tokens + one EOS per sentence.
    assert variant.config.batch_size <= report.tokens < 40 * variant.config.batch_size


def test_token_nll_counts_bpe_tokens_and_words(trained, corpus):
    variant, _ = trained
    sentences = corpus.test[:20]
    result = variant.token_nll(sentences)
    bpe = [len(variant.tokenizer(Tokenization.detokenize(s))["input_ids"]) for s in sentences]
    assert result.num_tokens == sum(bpe) + len(sentences)
    assert result.num_words == sum(len(s) + 1 for s in sentences)
    assert result.per_word == pytest.approx(result.total_nats / result.num_words)
    # Scored in one padded batch or one sentence at a time: the same nats (padding excluded).
    one_by_one = sum(variant.token_nll([s]).total_nats for s in sentences)
    assert result.total_nats == pytest.approx(one_by_one, rel=1e-5)
    hotter = variant.token_nll(sentences, temperature=1.5)
    assert hotter.num_tokens == result.num_tokens and hotter.total_nats != result.total_nats


def test_windowed_scoring_of_sentences_longer_than_the_positions(trained):
    from baselines.primitives import hf

    variant, _ = trained
    batch = hf.encode_texts(variant.tokenizer, ["a man riding a bike down a street ."] * 2 +
                            ["a cat ."], variant.bos_id, variant.eos_id)
    full = hf.token_log_probs(variant.generator.eval(), batch)
    window = 4
    windowed = hf.windowed_token_log_probs(variant.generator, batch, window)
    assert torch.allclose(windowed[:, :window], full[:, :window], atol=1e-5)
    assert torch.equal(windowed != 0, batch.mask)  # each counted target scored once
    # By hand, window 4 advancing by 2: targets 0-3 in window [0, 4), 4-5 in [2, 6), 6-7 in
    # [4, 8), ...: target t >= 4 is predicted from inputs 2 * (t // 2) - 2 .. t alone.
    with torch.no_grad():
        for t in range(window, batch.inputs.shape[1]):
            begin = 2 * (t // 2) - 2
            logits = variant.generator(input_ids=batch.inputs[:, begin : t + 1]).logits[:, -1]
            expected = torch.log_softmax(logits.float(), dim=-1).gather(
                1, batch.targets[:, t : t + 1]).squeeze(1) * batch.mask[:, t]
            assert torch.allclose(windowed[:, t], expected, atol=1e-5), t


def test_sample_is_text_seeded_and_free_of_special_tokens(trained):
    variant, _ = trained
    first = variant.sample(30, 1.0, seed=5)
    assert len(first) == 30 and all(isinstance(s, str) for s in first)
    assert first == variant.sample(30, 1.0, seed=5)
    assert first != variant.sample(30, 1.0, seed=6)
    assert not any("<|endoftext|>" in s for s in first)
    cold = variant.sample(30, 0.05, seed=5)
    assert len(set(cold)) < len(set(first))  # near-greedy sampling repeats itself


def test_inverse_cdf_draws_follow_the_probabilities():

    probs = torch.tensor([0.1, 0.0, 0.6, 0.3, 0.0]).expand(40_000, 5)
    draws = draw_categorical(probs, torch.Generator().manual_seed(0))
    frequencies = torch.bincount(draws, minlength=5).float() / len(draws)
    # 40,000 draws: the standard error of a frequency is at most 0.0025.
    assert torch.allclose(frequencies, probs[0], atol=0.01)
    assert frequencies[1] == 0 and frequencies[4] == 0  # zero probability: never drawn
    one_hot = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    assert draw_categorical(one_hot, torch.Generator()).tolist() == [2, 0]


def test_word_tokenizer_on_the_oracle_samples_token_ids(oracle_corpus):
    from baselines.gpt2_mle import GPT2MLE

    corpus = Corpus("oracle_tiny", oracle_corpus.train[:200], oracle_corpus.test[:20],
                    oracle_corpus.tokenization, oracle=oracle_corpus.oracle)
    defaults = GPT2MLE.corpus_defaults(corpus)
    assert defaults == {"tokenizer": "word"}
    variant = make(corpus, **defaults)
    for i in range(5):
        variant.train_step(i / 5)
    samples = variant.sample(20, 1.0, 0)
    ids = [int(token) for text in samples for token in text.split()]  # every token an id
    assert ids and all(0 <= i < 5000 for i in ids)
    assert corpus.oracle.nll([[int(t) for t in text.split()] for text in samples if text]) > 0
    # One model token per word: per-token and per-word NLL are the same number.
    result = variant.token_nll(corpus.test)
    assert result.num_tokens == result.num_words == sum(len(s) + 1 for s in corpus.test)


def test_bpe_tokenizer_training_is_deterministic(corpus):
    from baselines.primitives import hf_tokenizers

    texts = corpus.train_text()
    assert hf_tokenizers.tokenizer_json(hf_tokenizers.train_bpe_tokenizer(texts, 400)) == \
        hf_tokenizers.tokenizer_json(hf_tokenizers.train_bpe_tokenizer(texts, 400))


def test_checkpoint_round_trip_resumes_exactly(corpus, tmp_path):
    variant = make(corpus, seed=3)
    for i in range(3):
        variant.train_step(i / 10)
    save_state(tmp_path / "state.safetensors", {"variant": variant.state_dict()})
    resumed = make(corpus, seed=3)
    resumed.load_state_dict(load_state(tmp_path / "state.safetensors")["variant"])
    # Dropout draws from the global RNG, which the harness checkpoints itself.
    torch.manual_seed(11)
    expected = variant.train_step(0.5).logs
    torch.manual_seed(11)
    assert resumed.train_step(0.5).logs == expected
    assert variant.sample(5, 1.0, 0) == resumed.sample(5, 1.0, 0)


def test_config_is_validated():
    from baselines.gpt2_mle import GPT2MLE

    with pytest.raises(GanbenchError, match="n_head"):
        build_config(GPT2MLE.Config, {"n_embd": 65, "n_head": 4})
    with pytest.raises(GanbenchError, match="dropout"):
        build_config(GPT2MLE.Config, {"dropout": 1.0})
    assert build_config(GPT2MLE.Config, {"model_name_or_path": "none"}).model_name_or_path is None


def test_default_size_is_the_documented_one(corpus):
    from baselines.gpt2_mle import GPT2MLE

    variant = GPT2MLE(build_config(GPT2MLE.Config, {"bpe_vocab_size": 400}), corpus,
                      torch.device("cpu"), 0)
    config = variant.generator.config
    assert (config.n_layer, config.n_embd, config.n_head) == (4, 256, 4)
    longest = int(variant.train_data.mask.sum(dim=1).max())
    assert config.n_positions >= max(128, 2 * longest)
    assert variant.max_new_tokens == longest - 1  # the longest training sentence, then EOS


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trains_and_samples_on_cuda(corpus):
    from baselines.gpt2_mle import GPT2MLE

    variant = GPT2MLE(build_config(GPT2MLE.Config, TINY), corpus, torch.device("cuda"), 0)
    for i in range(3):
        report = variant.train_step(i / 3)
    assert torch.isfinite(torch.tensor(report.logs["train/g_mle_loss"]))
    assert len(variant.sample(8, 1.0, 0)) == 8
    assert variant.token_nll(corpus.test[:8]).num_words > 0
