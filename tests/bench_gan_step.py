"""Speed peer of gpt2_bert_gan's adversarial step: the same step done with TRL's GRPOTrainer.

Both sides get the same tiny models (GPT-2 and BERT of 2 layers, width 64, with the BPE and
WordPiece tokenizers trained on 300 coco sentences), the same rollout (8 groups x 8 samples from
the BOS prompt, at most 16 new tokens, or the variant's default cap: the longest training
sentence, 48 BPE tokens here), the same objective (group-relative advantages, PPO clip
0.2, KL 0.05 to a frozen reference, one generator update per rollout), the discriminator's
log-odds as the reward, and one discriminator update per generator update (TRL: in a callback,
on the step's completions against as many real sentences: the very same update). Timed: the
median of whole steps after warm-up, one CPU thread, ours and TRL's in alternation for three
rounds, the best round per side.

Optional (not collected by the default ``test_*.py`` pattern); needs ``trl``:
    .venv/bin/python -m pytest -s tests/bench_gan_step.py
or, for the numbers alone: .venv/bin/python tests/bench_gan_step.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import pytest
import torch

from bench.config import build_config
from bench.corpora import Corpus, load_corpus

TINY = {"n_layer": 2, "n_embd": 64, "n_head": 2, "bpe_vocab_size": 400, "d_layers": 2,
        "d_hidden": 64, "d_heads": 2, "d_intermediate": 128, "d_vocab_size": 400,
        "num_groups": 8, "group_size": 8, "mle_fraction": 0.0, "d_warmup_fraction": 0.0,
        "kl_coef": 0.05, "ppo_clip": 0.2, "g_learning_rate": 1e-4, "d_learning_rate": 2e-4,
        "grad_clip": 1.0}
# Sampling caps compared: 16 new tokens, and the variant's default (0: the longest training
# sentence, 48 BPE tokens on these 300 sentences).
MAX_NEW_TOKENS = (16, 0)
WARMUP_STEPS, TIMED_STEPS = 3, 12
ROUNDS = 3


def tiny_corpus() -> Corpus:
    data = Path(os.environ.get("GANBENCH_DATA") or
                Path(__file__).resolve().parent.parent.parent / "shared" / "data")
    coco = load_corpus("coco", data)
    return Corpus("coco_tiny", coco.train[:300], coco.test[:100], coco.tokenization)


def make_variant(corpus: Corpus, max_new_tokens: int):
    from baselines.gpt2_bert_gan import GPT2BertGAN

    config = build_config(GPT2BertGAN.Config, {**TINY, "max_new_tokens": max_new_tokens})
    return GPT2BertGAN(config, corpus, torch.device("cpu"), 0)


class DiscriminatorTimer:
    """Wraps a variant's discriminator_step to add up the time spent in it."""

    def __init__(self, variant):
        self.step, self.seconds = variant.discriminator_step, 0.0
        variant.discriminator_step = self

    def __call__(self, fakes):
        started = time.perf_counter()
        try:
            return self.step(fakes)
        finally:
            self.seconds += time.perf_counter() - started


def time_ours(corpus: Corpus, max_new_tokens: int) -> tuple[list[float], float]:
    """Whole-step times after warm-up, and the timed steps' mean discriminator-update time."""
    variant = make_variant(corpus, max_new_tokens)
    timer = DiscriminatorTimer(variant)
    times = []
    for step in range(WARMUP_STEPS + TIMED_STEPS):
        if step == WARMUP_STEPS:
            timer.seconds = 0.0
        started = time.perf_counter()
        variant.train_step(0.5)
        if step >= WARMUP_STEPS:
            times.append(time.perf_counter() - started)
    return times, timer.seconds / TIMED_STEPS


def time_trl(corpus: Corpus, max_new_tokens: int) -> tuple[list[float], float]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from baselines.primitives import hf, hf_models

    # The same models, tokenizers and real data as ours, taken from a twin variant.
    twin = make_variant(corpus, max_new_tokens)
    d_timer = DiscriminatorTimer(twin)
    discriminator, d_tokenizer = twin.discriminator, twin.d_tokenizer
    latest = {}

    def discriminator_reward(prompts, completions, **kwargs):
        fakes = hf.encode_for_classifier(d_tokenizer, completions, twin.d_max_length)
        latest["fakes"] = fakes
        discriminator.eval()
        with torch.no_grad():
            return hf.realness(hf.classifier_logits(discriminator, fakes)).tolist()

    class TrainDiscriminator(TrainerCallback):
        def __init__(self):
            self.step_started: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            if len(self.step_started) == WARMUP_STEPS:
                d_timer.seconds = 0.0
            self.step_started.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            # The very update ours does: this step's samples against as many real sentences.
            twin.discriminator_step(latest["fakes"])

    steps = WARMUP_STEPS + TIMED_STEPS + 1  # +1: the last step's end is the next's begin
    rollout = TINY["num_groups"] * TINY["group_size"]
    prompts = Dataset.from_dict({"prompt": [twin.tokenizer.bos_token] * (rollout * steps)})
    timer = TrainDiscriminator()
    with tempfile.TemporaryDirectory() as output_dir:
        # TRL builds its reference model from the policy's folder, so it gets one.
        generator_dir = Path(output_dir) / "generator"
        hf_models.save_pretrained(twin.generator, twin.tokenizer, generator_dir, generator_dir)
        args = GRPOConfig(
            output_dir=output_dir, use_cpu=True, bf16=False, report_to="none",
            save_strategy="no", logging_strategy="no", max_steps=steps, seed=0,
            per_device_train_batch_size=rollout, gradient_accumulation_steps=1,
            num_generations=TINY["group_size"],
            # Ours draws up to max_new_tokens, then EOS: as many completion tokens at most.
            max_completion_length=twin.max_new_tokens + 1,
            temperature=1.0, top_p=1.0, top_k=0, beta=TINY["kl_coef"],
            epsilon=TINY["ppo_clip"], num_iterations=1, learning_rate=TINY["g_learning_rate"],
            lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
            max_grad_norm=TINY["grad_clip"], scale_rewards="group", loss_type="dapo",
            disable_dropout=True, dataloader_num_workers=0, shuffle_dataset=False)
        trainer = GRPOTrainer(model=str(generator_dir), reward_funcs=discriminator_reward,
                              args=args, train_dataset=prompts,
                              processing_class=twin.tokenizer, callbacks=[timer])
        trainer.train()
    starts = timer.step_started
    # The last timed step ends where the untimed extra one begins; its D update is excluded.
    times = [later - earlier for earlier, later in zip(starts, starts[1:])][WARMUP_STEPS:]
    return times, d_timer.seconds / (TIMED_STEPS + 1)


def measure(max_new_tokens: int, rounds: int = ROUNDS) -> dict[str, float]:
    """Ours and TRL's timed in alternation; per side the best round's median (the machine is
    shared: the least disturbed round is the one that says what the code costs)."""
    torch.set_num_threads(1)
    corpus = tiny_corpus()
    ours_rounds, trl_rounds = [], []
    for _ in range(rounds):
        ours, ours_d = time_ours(corpus, max_new_tokens)
        ours_rounds.append((statistics.median(ours), ours_d))
        trl, trl_d = time_trl(corpus, max_new_tokens)
        trl_rounds.append((statistics.median(trl), trl_d))
    (ours_step, ours_d), (trl_step, trl_d) = min(ours_rounds), min(trl_rounds)
    return {"ours_step_s": ours_step, "trl_step_s": trl_step, "ours_d_update_s": ours_d,
            "trl_d_update_s": trl_d, "trl_over_ours": trl_step / ours_step,
            # The generator side alone: the step less the discriminator update both share.
            "trl_over_ours_generator_side": (trl_step - trl_d) / (ours_step - ours_d)}


def report(max_new_tokens: int, result: dict[str, float]) -> str:
    ms = {name: value * 1e3 for name, value in result.items() if name.endswith("_s")}
    return (f"max_new_tokens={max_new_tokens or 'default'}: ours {ms['ours_step_s']:.1f} "
            f"ms/step (D update {ms['ours_d_update_s']:.1f}), TRL GRPOTrainer "
            f"{ms['trl_step_s']:.1f} ms/step (D update {ms['trl_d_update_s']:.1f}): "
            f"TRL / ours = {result['trl_over_ours']:.2f} "
            f"(generator side {result['trl_over_ours_generator_side']:.2f})")


@pytest.mark.parametrize("max_new_tokens", MAX_NEW_TOKENS)
def test_our_gan_step_vs_trl_grpo(max_new_tokens):
    pytest.importorskip("trl")
    result = measure(max_new_tokens)
    print("\n" + report(max_new_tokens, result))
    assert result["trl_over_ours"] > 1.0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for cap in MAX_NEW_TOKENS:
        print(report(cap, measure(cap)))
