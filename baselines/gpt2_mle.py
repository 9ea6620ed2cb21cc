"""GPT-2 MLE: a transformers GPT2LMHeadModel trained on the corpus by maximum likelihood.

The model is ``model_name_or_path`` when given (a folder written by save_pretrained, or a hub
name such as ``gpt2`` for users with the network), else a fresh GPT-2 with a byte-level BPE
tokenizer (4,000 entries) trained on the training split. Default size: 4 layers, width 256,
4 heads (3.2M parameters besides the 1M of token embeddings), position embeddings for twice the
longest training sentence in BPE tokens (at least 128): small enough to train for a few epochs
of coco (10k sentences, 12 BPE tokens each on average) in minutes on one CPU core, and the
baseline the GPT-2 GAN (gpt2_bert_gan) must beat at the same budget.

On the synthetic oracle the tokenizer is word-level instead (one token per evaluation token),
so that every sample is made of the oracle's token ids.

Likelihoods are over BPE tokens; ``token_nll`` also reports the words (evaluation tokens + one
EOS per sentence) so that nll_test_per_word compares with the word-level LSTMs (METRICS.md).

Data-parallel under torchrun (bench/distributed.py): ``batch_size`` sentences per rank, each
rank's slice of one global batch, gradients averaged across ranks before clipping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from baselines.primitives import objectives
from baselines.primitives.engine import adam, compiled, optimizer_step, to_device
from bench import distributed
from bench.config import field
from bench.corpora import Corpus
from bench.text import SPECIAL_TOKENS, Tokenization
from bench.variant import NLLResult, StepReport, Variant


@dataclass
class GPT2MLEConfig:
    model_name_or_path: str | None = field(
        None, "generator: a folder written by save_pretrained or a hub name (e.g. gpt2, with "
              "the network); None = a fresh GPT-2 of the sizes below with a BPE tokenizer "
              "trained on the training split")
    n_layer: int = field(4, "transformer blocks (fresh model)", bounds="[1, inf)")
    n_embd: int = field(256, "width (fresh model)", bounds="[1, inf)")
    n_head: int = field(4, "attention heads (fresh model)", bounds="[1, inf)")
    n_positions: int = field(0, "position embeddings (fresh model); 0 = twice the longest "
                                "training sentence in BPE tokens, at least 128", bounds="[0, inf)")
    tokenizer: Literal["bpe", "word"] = field(
        "bpe", "fresh model's tokenizer: byte-level BPE trained on the training split, or word "
               "(one token per evaluation token: the default on the oracle, whose samples must "
               "be its token ids)")
    bpe_vocab_size: int = field(4000, "byte-level BPE vocabulary trained on the training split",
                                bounds="[1, inf)")
    dropout: float = field(0.1, "dropout of the fresh model during MLE", bounds="[0, 1)")
    batch_size: int = field(64, "sentences per MLE step", bounds="[1, inf)")
    tokens_per_batch: int = field(
        0, "token-budgeted MLE batches instead: sentences taken in the epoch's seeded order "
           "while rows x the longest stays within this many positions (0 = batch_size "
           "sentences); fills a GPU with a bounded shape", bounds="[0, inf)")
    learning_rate: float = field(1e-3, "AdamW learning rate of the MLE steps", bounds="(0, inf)")
    weight_decay: float = field(0.01, "AdamW weight decay", bounds="[0, inf)")
    warmup_steps: int = field(50, "MLE steps of linear learning-rate warm-up", bounds="[0, inf)")
    grad_clip: float = field(1.0, "gradient-norm clip (0 = off)", bounds="[0, inf)")
    max_new_tokens: int = field(0, "sampling cap in BPE tokens before the forced EOS; "
                                   "0 = the longest training sentence", bounds="[0, inf)")
    sample_batch_size: int = field(500, "sentences sampled at once by sample()", bounds="[1, inf)")
    compile: bool = field(False, "torch.compile the transformer for training steps "
                                 "(engine.compiled; sampling stays eager); its compile time "
                                 "is charged to the budget")

    def validate(self) -> None:
        """What the fields' bounds cannot say (they are checked first, by build_config)."""
        if self.n_embd % self.n_head:
            raise ValueError("n_embd must be a multiple of n_head")


class GPT2MLE(Variant):
    name = "gpt2_mle"
    Config = GPT2MLEConfig
    description = "GPT-2 (transformers) trained by maximum likelihood on a corpus-trained BPE"
    data_parallel = True  # may train on several torchrun ranks (bench/distributed.py)

    @classmethod
    def corpus_defaults(cls, corpus: Corpus) -> dict[str, Any]:
        return {"tokenizer": "word"} if corpus.is_oracle else {}

    @classmethod
    def import_libraries(cls, config: Any) -> None:
        """transformers and tokenizers take seconds to import the first time in a process."""
        from baselines.primitives import generation, hf_models  # noqa: F401

    def __init__(self, config: GPT2MLEConfig, corpus: Corpus, device: torch.device, seed: int):
        super().__init__(config, corpus, device, seed)
        from baselines.primitives import generation, hf, hf_models, hf_tokenizers
        from baselines.primitives.sequences import RandomBatches

        # The Hugging Face side, imported here (transformers takes seconds to import).
        self.hf, self.hf_models, self.hf_tokenizers = hf, hf_models, hf_tokenizers
        self.generation = generation
        # Weights are drawn from the run's seed, whatever the global RNG was left at.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._build_generator()
        self.generator.to(self.device)
        # The training steps' transformer: the generator's own, or the same weights compiled.
        self.train_body = compiled(self.generator.transformer) if (
            config.compile and hasattr(self.generator, "transformer")) else None
        self.optimizer = adam(self.generator.parameters(), config.learning_rate, self.device,
                              weight_decay=config.weight_decay, decoupled=True)
        # Every rank draws the same global batch and trains on its own slice (shard).
        ranks = distributed.current_world().size
        self.batches = RandomBatches(len(self.train_data), config.batch_size * ranks, seed,
                                     config.tokens_per_batch * ranks, self.train_lengths)
        self.mle_steps = 0

    # -- building -------------------------------------------------------------------------

    def _build_generator(self) -> None:
        models, tokenizers, config = self.hf_models, self.hf_tokenizers, self.config
        train_text = self.corpus.train_text()
        if config.model_name_or_path:
            self.generator, self.tokenizer = models.load_causal_lm(config.model_name_or_path)
            self.tokenizer_is_trained = False
        elif config.tokenizer == "word":
            self.tokenizer = tokenizers.word_tokenizer(
                self.corpus.vocab.tokens[len(SPECIAL_TOKENS):])
            self.tokenizer_is_trained = True
        else:
            self.tokenizer = tokenizers.train_bpe_tokenizer(train_text, config.bpe_vocab_size)
            self.tokenizer_is_trained = True
        self._encode_train_data(train_text)
        longest = int(self.train_data.mask.sum(dim=1).max())  # BPE tokens + EOS
        if not config.model_name_or_path:
            positions = config.n_positions or max(128, models.round_up(2 * longest, 64))
            self.generator = models.build_gpt2(len(self.tokenizer), config.n_layer, config.n_embd,
                                               config.n_head, positions, config.dropout,
                                               self.eos_id)
        self.positions = int(getattr(self.generator.config, "n_positions", 0)
                             or self.generator.config.max_position_embeddings)
        # The sampling cap: as long as the longest training sentence, and inside the positions.
        self.max_new_tokens = min(config.max_new_tokens or longest - 1, self.positions - 1)
        self.banned_ids = sorted(set(self.tokenizer.all_special_ids) - {self.eos_id})

    def _encode_train_data(self, train_text: list[str]) -> None:
        self.eos_id = int(self.tokenizer.eos_token_id)
        bos = self.tokenizer.bos_token_id
        self.bos_id = int(bos) if bos is not None else self.eos_id
        self.train_data = self.hf.encode_texts(self.tokenizer, train_text, self.bos_id,
                                               self.eos_id)
        # Counted tokens per sentence (BPE tokens + EOS), kept on the host: a step sizes and
        # counts its batch from them without waiting for the device.
        self.train_lengths = self.train_data.mask.sum(dim=1)
        self.train_data = self.train_data.to(self.device)

    # -- training -------------------------------------------------------------------------

    def _set_learning_rate(self, optimizer: torch.optim.Optimizer, base: float, step: int,
                           warmup: int) -> None:
        scale = min(1.0, (step + 1) / warmup) if warmup else 1.0
        for group in optimizer.param_groups:
            group["lr"] = base * scale

    def mle_step(self) -> StepReport:
        """One teacher-forcing step on a random batch of training sentences."""
        indices = distributed.shard(self.batches.next_indices())
        # Sentences longer than the model's positions (a pretrained model with a short
        # context) are cut; the fresh model always has room. Host-side lengths size and count
        # the batch: the step never waits on the device.
        batch = self.train_data.select(to_device(indices, self.device),
                                       self.train_lengths[indices],
                                       limit=self.positions)
        self.generator.train()
        log_probs = self.hf.token_log_probs(self.generator, batch, body=self.train_body)
        num_tokens = batch.num_tokens()
        loss, nll = self.training_loss(log_probs, num_tokens)
        self._set_learning_rate(self.optimizer, self.config.learning_rate, self.mle_steps,
                                self.config.warmup_steps)
        optimizer_step(self.optimizer, self.generator, loss, self.config.grad_clip)
        self.mle_steps += 1
        flops = 3 * num_tokens * self.generator_flops_per_token()
        # Tensors, not floats: the harness reads them in batches (no wait on the device here).
        nll = nll.detach()
        return StepReport(tokens=num_tokens, flops=flops, logs={"train/g_mle_loss": nll},
                          nll=nll, nll_vocab_size=len(self.tokenizer))

    def training_loss(self, token_log_probs: torch.Tensor, num_tokens: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss to minimise, the batch's NLL per token): both the NLL here."""
        loss = objectives.mle_loss(token_log_probs, num_tokens)
        return loss, loss

    def generator_flops_per_token(self) -> float:
        if not hasattr(self, "_generator_flops"):
            self._generator_flops = self.hf_models.flops_per_token(self.generator)
        return self._generator_flops

    def phase_name(self) -> str:
        return "mle"

    def train_step(self, progress: float) -> StepReport:
        return self.mle_step()

    def bos_prompts(self, n: int) -> torch.Tensor:
        return torch.full((n, 1), self.bos_id, dtype=torch.long, device=self.device)

    # -- evaluation -----------------------------------------------------------------------

    def utf8_guard(self):
        """Built once: evaluation samples are whole UTF-8 characters (primitives.utf8_guard)."""
        if not hasattr(self, "_utf8_guard"):
            from baselines.primitives.utf8_guard import Utf8Guard

            self._utf8_guard = Utf8Guard.for_tokenizer(self.tokenizer, self.device)
        return self._utf8_guard

    def sample(self, n: int, temperature: float, seed: int) -> list[str]:
        rng = torch.Generator(device=self.device).manual_seed(seed)
        self.generator.eval()
        texts: list[str] = []
        for start in range(0, n, self.config.sample_batch_size):
            prompts = self.bos_prompts(min(self.config.sample_batch_size, n - start))
            samples = self.generation.sample_tokens(
                self.generator, prompts, self.max_new_tokens, self.eos_id, temperature, rng,
                self.banned_ids, utf8_guard=self.utf8_guard())
            texts.extend(text.strip() for text in
                         self.generation.decode_samples(self.tokenizer, samples))
        return texts

    def sampling_flops(self, texts: list[str]) -> float:
        """One forward per sampled BPE token, EOS included."""
        tokens = sum(len(ids) + 1 for ids in self.tokenizer(texts)["input_ids"])
        return tokens * self.generator_flops_per_token()

    def token_nll(self, sentences: list[list[str]], temperature: float = 1.0) -> NLLResult:
        """Nats over BPE tokens + EOS; words = evaluation tokens + one EOS per sentence."""
        return self.token_nll_temperatures(sentences, (temperature,))[0]

    @torch.no_grad()
    def token_nll_temperatures(self, sentences: list[list[str]],
                               temperatures: Sequence[float], batch_tokens: int = 2048
                               ) -> list[NLLResult]:
        """token_nll at each temperature, from one pass of the transformer per batch; with the
        T = 1 mass on the tokens sample() masks (special tokens but EOS, the UTF-8 guard's)."""
        from baselines.primitives.sampler_mask import SamplerMask

        self.generator.eval()
        totals: list = [0.0] * len(temperatures)  # device tensors after the first batch
        num_tokens = 0
        sampler_mask = SamplerMask(self.banned_ids, self.utf8_guard())
        if sentences:
            encoded = self.hf.encode_texts(self.tokenizer,
                                           [Tokenization.detokenize(s) for s in sentences],
                                           self.bos_id, self.eos_id)
            # Scored in order of BPE length, about ``batch_tokens`` positions a batch, so that
            # a batch's rows have about the same length and almost none of it is padding
            # (ordering by words left 30% of the positions padding; the sum does not depend
            # on the order).
            lengths = encoded.mask.sum(dim=1)
            order = torch.argsort(lengths, stable=True)
            head = self.hf.aligned_head(self.generator.lm_head)
            start = 0
            while start < len(order):
                rows = order[start : start + max(1, batch_tokens // int(lengths[order[start]]))]
                rows = rows[: max(1, batch_tokens // int(lengths[rows[-1]]))]  # its longest
                # Built and counted on the host: the device is read once, at the end.
                batch = encoded.select(rows, lengths[rows]).to(self.device)
                sums = self.hf.nll_sums(self.generator, batch, self.positions, temperatures,
                                        head, sampler_mask)
                totals = [total + part for total, part in zip(totals, sums)]
                num_tokens += batch.num_tokens()
                start += len(rows)
        num_words = sum(len(s) + 1 for s in sentences)
        return [NLLResult(float(total), num_tokens, num_words,
                          sampler_mask.total if temperature == 1.0 else None)
                for total, temperature in zip(totals, temperatures)]

    # -- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "batches": self.batches.state_dict(),
                "mle_steps": self.mle_steps,
                # The trained tokenizer is rebuilt the same from the corpus; it is stored too so
                # that a checkpoint says exactly what its ids mean.
                "tokenizer": (self.hf_tokenizers.tokenizer_json(self.tokenizer)
                              if self.tokenizer_is_trained else None)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        stored, tokenizers = state.get("tokenizer"), self.hf_tokenizers
        if stored is not None and stored != tokenizers.tokenizer_json(self.tokenizer):
            tokenizer = tokenizers.wrap_generator_tokenizer(tokenizers.backend_from_json(stored))
            if len(tokenizer) != len(self.tokenizer):
                raise ValueError("checkpoint tokenizer has another vocabulary size")
            self.tokenizer = tokenizer
            self._encode_train_data(self.corpus.train_text())
            self.batches.lengths = self.train_lengths
        self.generator.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.batches.load_state_dict(state["batches"])
        self.mle_steps = int(state["mle_steps"])

    def save_artifacts(self, directory: Path) -> None:
        directory = Path(directory)
        self.hf_models.save_pretrained(self.generator, self.tokenizer, directory / "generator",
                                       directory / "tokenizer")


VARIANT = GPT2MLE
