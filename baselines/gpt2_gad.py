"""GAD-style GPT-2 GAN: Generative Adversarial Distillation (Ye et al. 2025, "Black-Box
On-Policy Distillation of Large Language Models", arXiv 2511.10643), with the corpus's real
sentences in the teacher's place. gpt2_bert_gan's phases and policy update, with GAD's choices:

- the discriminator is the generator itself (``discriminator = generator_copy``): a copy of its
  transformer taken when the MLE warm-up ends, with a scalar head read at the sentence's last
  token (primitives.scorer.SequenceScorer); it reads sentences as the generator does (BOS, its
  BPE, EOS), from the decoded text, so that real and generated sentences are tokenized alike;
- its loss is Bradley-Terry on pairs real > generated (``d_loss = bradley_terry``,
  primitives.objectives.discriminator_loss): a real sentence and a sample, or with
  ``prompt_tokens`` > 0 a prompt's real sentence and the continuation sampled from the prompt;
- the warm-up is GAD's: while the discriminator warms up, the generator keeps its MLE steps
  (``warmup_mle``), and the KL penalty's reference is the generator as the adversarial stage
  starts;
- the reward is the discriminator's score, with group-relative advantages (GRPO) and the KL term
  of gpt2_bert_gan.

``discriminator = bert`` and ``d_loss = bce`` give back gpt2_bert_gan's choices one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from baselines.adversarial_gpt2 import PHASE_DISCRIMINATOR_WARMUP
from baselines.gpt2_bert_gan import GPT2BertGAN, GPT2BertGANConfig
from baselines.gpt2_mle import GPT2MLE
from bench.config import field
from bench.corpora import Corpus
from bench.variant import StepReport


@dataclass
class GPT2GADConfig(GPT2BertGANConfig):
    discriminator: Literal["generator_copy", "bert"] = field(
        "generator_copy", "generator_copy: the generator's own transformer (copied when the MLE "
                          "warm-up ends) with a scalar head; bert: gpt2_bert_gan's discriminator")
    warmup_mle: bool = field(True, "the generator keeps its MLE steps during the "
                                   "discriminator's warm-up (GAD's warm-up)")

    def validate(self) -> None:
        super().validate()
        if self.discriminator == "generator_copy" and self.discriminator_name_or_path:
            raise ValueError("discriminator_name_or_path needs discriminator = bert")


class GPT2GAD(GPT2BertGAN):
    name = "gpt2_gad"
    Config = GPT2GADConfig
    description = ("GPT-2 GAN as GAD: the generator's own copy as a Bradley-Terry "
                   "discriminator whose score is the GRPO reward")

    @classmethod
    def corpus_defaults(cls, corpus: Corpus) -> dict[str, Any]:
        """GAD's discriminator loss is this variant's default (gpt2_bert_gan's is bce)."""
        return {**super().corpus_defaults(corpus), "d_loss": "bradley_terry"}

    def _copies_generator(self) -> bool:
        return self.config.discriminator == "generator_copy"

    def _build_discriminator(self) -> None:
        if not self._copies_generator():
            super()._build_discriminator()
            return
        from baselines.primitives.scorer import SequenceScorer

        self.discriminator = SequenceScorer(self.generator)
        self.d_tokenizer, self.d_tokenizer_is_trained = self.tokenizer, False
        self.d_max_length = min(self.config.d_max_length or self.positions, self.positions)
        self.real_for_d = self.encode_for_discriminator(self.corpus.train_text()).to(self.device)

    def encode_for_discriminator(self, texts: list[str]):
        if not self._copies_generator():
            return super().encode_for_discriminator(texts)
        from baselines.primitives.scorer import encode_for_scorer

        return encode_for_scorer(self.tokenizer, texts, self.bos_id, self.eos_id,
                                 self.d_max_length)

    def _end_mle_phase(self) -> None:
        super()._end_mle_phase()
        if self._copies_generator():
            self.discriminator.copy_body_from(self.generator)

    def train_step(self, progress: float) -> StepReport:
        config = self.config
        starts_adversarial = (self.phase == PHASE_DISCRIMINATOR_WARMUP
                              and progress >= config.mle_fraction + config.d_warmup_fraction)
        if starts_adversarial and config.warmup_mle and self.reference is not None:
            # The generator trained on during the warm-up: the KL's reference is its state now.
            self.reference.load_state_dict(self.generator.state_dict())
        return super().train_step(progress)

    def discriminator_warmup_step(self) -> StepReport:
        d_report = super().discriminator_warmup_step()
        if not self.config.warmup_mle:
            return d_report
        g_report = self.mle_step()
        return StepReport(tokens=d_report.tokens + g_report.tokens,
                          flops=d_report.flops + g_report.flops,
                          logs={**g_report.logs, **d_report.logs}, generator_updates=1,
                          discriminator_updates=1, nll=g_report.nll,
                          nll_vocab_size=g_report.nll_vocab_size)

    def save_artifacts(self, directory: Path) -> None:
        if not self._copies_generator():
            super().save_artifacts(directory)
            return
        from safetensors.torch import save_file

        GPT2MLE.save_artifacts(self, directory)
        state = {k: v.detach().cpu().contiguous()
                 for k, v in self.discriminator.state_dict().items()}
        save_file(state, str(Path(directory) / "discriminator.safetensors"))


VARIANT = GPT2GAD
