"""Speed of the hot paths, each as a ratio to a reference timed in the same run.

The reference is the plainest computation of the same size (a teacher-forced forward pass for
sampling; an MLE step of the same generator for the GAN step), so the ratio measures our code's
overhead, not the machine: `python -m bench.regression` fails when a ratio grows past its
threshold. Under xdist pytest-benchmark runs each once without timing (a smoke check).
"""

from __future__ import annotations

import pytest
import torch

from baselines.primitives.lstm import LSTMGenerator
from bench.text import BOS

BATCH, LENGTH, VOCAB = 256, 20, 5000


@pytest.fixture(scope="module")
def lstm_generator():
    torch.manual_seed(0)
    return LSTMGenerator(VOCAB, 32, 32).eval()


@pytest.mark.benchmark(group="lstm_sampling")
def test_lstm_sampling(benchmark, lstm_generator):
    benchmark.extra_info.update({"pair": "lstm_sampling", "role": "ours"})
    rng = torch.Generator().manual_seed(0)
    out = benchmark(lstm_generator.sample, BATCH, LENGTH, 1.0, rng)
    assert out.shape == (BATCH, LENGTH + 1)


@pytest.mark.benchmark(group="lstm_sampling")
def test_lstm_forward_reference(benchmark, lstm_generator):
    benchmark.extra_info.update({"pair": "lstm_sampling", "role": "ref"})
    inputs = torch.randint(4, VOCAB, (BATCH, LENGTH + 1))
    inputs[:, 0] = BOS

    @torch.no_grad()
    def forward():
        return lstm_generator(inputs)[0]

    assert benchmark(forward).shape == (BATCH, LENGTH + 1, VOCAB)


@pytest.fixture(scope="module")
def tiny_gan(coco):
    from baselines.gpt2_bert_gan import GPT2BertGAN, GPT2BertGANConfig
    from bench.config import build_config
    from bench.corpora import Corpus

    corpus = Corpus("coco_tiny", coco.train[:300], coco.test[:100], coco.tokenization)
    config = build_config(GPT2BertGANConfig, {
        "n_layer": 2, "n_embd": 64, "n_head": 2, "d_layers": 1, "d_hidden": 32, "d_heads": 2,
        "d_intermediate": 64, "num_groups": 4, "group_size": 4, "batch_size": 16,
        "max_new_tokens": 16, "bpe_vocab_size": 500, "d_vocab_size": 500})
    torch.manual_seed(0)
    return GPT2BertGAN(config, corpus, torch.device("cpu"), seed=0)


@pytest.mark.benchmark(group="gan_step")
def test_gan_adversarial_step(benchmark, tiny_gan):
    benchmark.extra_info.update({"pair": "gan_step", "role": "ours"})
    report = benchmark(tiny_gan.train_step, 1.0)  # progress 1.0: the adversarial phase
    assert report.tokens > 0 and "train/d_acc" in report.logs


@pytest.mark.benchmark(group="gan_step")
def test_gan_mle_step_reference(benchmark, tiny_gan):
    benchmark.extra_info.update({"pair": "gan_step", "role": "ref"})
    report = benchmark(tiny_gan.train_step, 0.0)  # progress 0: the MLE warm-up step
    assert report.tokens > 0
