"""The machinery the GPT-2 GANs share (gpt2_bert_gan, gpt2_gad): phases, rollouts, the policy
and discriminator updates with their FLOP accounting, and checkpoints; a subclass builds the
discriminator and reads text into it.

Phases, scheduled on the share of the budget spent (``progress``):
1. ``progress < mle_fraction``: MLE warm-up of the generator, exactly gpt2_mle's step.
2. then, for ``d_warmup_fraction``: discriminator warm-up, real training sentences against
   samples of the warmed generator.
3. then adversarial steps. Each one: a rollout of ``num_groups`` x ``group_size`` samples
   (KV-cache sampling; every group shares a prompt: BOS, or with ``prompt_tokens`` > 0 the first
   BPE tokens of a training sentence), reward = the discriminator's logit_real - logit_fake,
   advantages relative to the group mean (GRPO, Shao et al. 2024) or to a moving average,
   divided by max(std, reward_std_floor); one generator update on PPO's clipped surrogate
   (Schulman et al. 2017) plus kl_coef x KL to the MLE-warmed generator (the k3 estimator);
   then ``d_steps`` discriminator updates on real sentences against fresh samples (the rollout's
   own, for the first). With ``ppo_epochs`` > 1 a rollout serves that many generator updates,
   its ratio measured against the policy that drew it.

The generator and the discriminator meet through text: generated ids are batch-decoded and
read again by ``encode_for_discriminator``.

Data-parallel under torchrun (bench/distributed.py): every rank draws its own rollouts (its own
random stream, ``rank_seed``) and its slice of the discriminator's real sentences; the
generator's policy-gradient update and the discriminator's update both average gradients across
ranks, and the moving-average baseline follows the mean reward of all ranks.
"""

from __future__ import annotations

import abc
import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch

from baselines.gpt2_mle import GPT2MLE, GPT2MLEConfig
from baselines.primitives import estimators
from baselines.primitives import hf_policy as policy
from baselines.primitives.engine import adam, optimizer_step
from bench import distributed
from bench.config import field
from bench.corpora import Corpus
from bench.errors import StepAbandoned
from bench.variant import StepReport

if TYPE_CHECKING:
    from baselines.primitives.text_gan import Rollout

PHASE_MLE, PHASE_DISCRIMINATOR_WARMUP, PHASE_ADVERSARIAL = 0, 1, 2
PHASE_NAMES = ("mle", "discriminator", "adversarial")


@dataclass
class AdversarialGPT2Config(GPT2MLEConfig):
    mle_fraction: float = field(0.5, "share of the budget for the generator's MLE warm-up",
                                bounds="[0, 1)")
    d_warmup_fraction: float = field(0.1, "share of the budget for the discriminator's warm-up "
                                          "(after the MLE warm-up)", bounds="[0, 1)")
    d_learning_rate: float = field(2e-4, "discriminator AdamW learning rate", bounds="(0, inf)")
    d_steps: int = field(1, "discriminator updates per generator update", bounds="[1, inf)")
    d_loss: Literal["bce", "bradley_terry"] = field(
        "bce", "discriminator loss: bce (real against generated labels) or bradley_terry (pairs "
               "real > generated, a real sentence and a sample; with prompt_tokens > 0 the "
               "prompt's real sentence and its sampled continuation); primitives.objectives")
    g_learning_rate: float = field(5e-5, "generator AdamW learning rate in the adversarial phase",
                                   bounds="(0, inf)")
    num_groups: int = field(8, "prompt groups per rollout", bounds="[1, inf)")
    group_size: int = field(8, "samples per group (the rollout has num_groups x group_size)",
                            bounds="[1, inf)")
    prompt_tokens: int = field(0, "BPE tokens of a training sentence given as each group's "
                                  "prompt after BOS; 0 = every group starts from BOS alone",
                                  bounds="[0, inf)")
    baseline: Literal["group", "moving"] = field(
        "group", "advantage baseline: the group's mean reward (GRPO) or a moving average")
    baseline_decay: float = field(0.9, "decay of the moving-average baseline", bounds="[0, 1)")
    reward_std_floor: float = field(0.5, "advantages are divided by max(reward std, this floor)",
                                    bounds="(0, inf)")
    ppo_clip: float = field(0.2, "PPO ratio clip epsilon (0 = no clipping)", bounds="[0, inf)")
    ppo_epochs: int = field(1, "generator updates per rollout", bounds="[1, inf)")
    kl_coef: float = field(0.05, "weight of the KL penalty to the MLE-warmed generator (0 = off)",
                           bounds="[0, inf)")

    def validate(self) -> None:
        super().validate()
        if self.mle_fraction + self.d_warmup_fraction >= 1:
            raise ValueError("mle_fraction and d_warmup_fraction must sum below 1")
        if self.baseline == "group" and self.group_size < 2:
            raise ValueError("the group baseline needs group_size >= 2")


class AdversarialGPT2(GPT2MLE, abc.ABC):
    """The phases, rollouts, updates and checkpoints of the GPT-2 GANs; subclasses build the
    discriminator (``_build_discriminator``) and read text into it
    (``encode_for_discriminator``)."""

    # State that differs between data-parallel ranks: their sampling streams and rollouts.
    rank_state_keys = ("train_rng", "rollout")

    def __init__(self, config: AdversarialGPT2Config, corpus: Corpus, device: torch.device,
                 seed: int):
        super().__init__(config, corpus, device, seed)
        from baselines.primitives import text_gan
        from baselines.primitives.sequences import RandomBatches

        self.text_gan = text_gan  # imported here: transformers takes seconds to import

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            self._build_discriminator()
        self.discriminator.to(self.device)
        self.d_optimizer = adam(self.discriminator.parameters(), config.d_learning_rate,
                                self.device, weight_decay=0.01, decoupled=True)
        self.g_optimizer = adam(self.generator.parameters(), config.g_learning_rate,
                                self.device, weight_decay=0.0, decoupled=True)
        # The MLE-warmed generator, frozen; its weights are taken when the MLE phase ends.
        self.reference = None
        if config.kl_coef > 0:
            self.reference = copy.deepcopy(self.generator).eval().requires_grad_(False)
        self.rollout_size = config.num_groups * config.group_size
        # Real sentences as gpt2_mle's batches: one global draw, each rank its slice.
        self.d_batches = RandomBatches(len(self.real_for_d),
                                       self.rollout_size * distributed.current_world().size,
                                       seed + 2)
        self.train_rng = torch.Generator(device=self.device).manual_seed(
            distributed.rank_seed(seed + 3))
        self.phase = PHASE_MLE
        self.moving_baseline: torch.Tensor | None = None  # a 0-d tensor once set
        self.rollout: Rollout | None = None
        self.prompted_rows: torch.Tensor | None = None  # set by _prompts (prompt_tokens > 0)
        # Training sentences long enough to lend a prompt (BOS + prompt_tokens, then more).
        lengths = self.train_data.mask.sum(dim=1)
        self.prompt_rows = torch.nonzero(lengths > config.prompt_tokens + 1).flatten()
        if len(self.prompt_rows) == 0:
            raise ValueError(f"no training sentence is longer than prompt_tokens="
                             f"{config.prompt_tokens} BPE tokens")

    # -- what a subclass provides -----------------------------------------------------------

    @abc.abstractmethod
    def _build_discriminator(self) -> None:
        """Sets discriminator, d_tokenizer, d_tokenizer_is_trained (whether the tokenizer was
        trained here, so checkpoints keep it), d_max_length and real_for_d (the training
        sentences as encode_for_discriminator reads them, on the run's device)."""

    @abc.abstractmethod
    def encode_for_discriminator(self, texts: list[str]):
        """Texts -> the discriminator's input batch (hf.ClassifierBatch)."""

    # -- training -------------------------------------------------------------------------

    def train_step(self, progress: float) -> StepReport:
        config = self.config
        if progress < config.mle_fraction:
            report = self.mle_step()
        else:
            if self.phase == PHASE_MLE:
                self._end_mle_phase()
            if progress < config.mle_fraction + config.d_warmup_fraction:
                report = self.discriminator_warmup_step()
            else:
                self.phase = PHASE_ADVERSARIAL
                report = self.adversarial_step()
        report.logs["train/phase"] = float(self.phase)
        return report

    def phase_name(self) -> str:
        return PHASE_NAMES[self.phase]

    def _end_mle_phase(self) -> None:
        if self.reference is not None:
            self.reference.load_state_dict(self.generator.state_dict())
        self.phase = PHASE_DISCRIMINATOR_WARMUP

    def _prompts(self) -> torch.Tensor:
        """[rollout_size, 1 + prompt_tokens]: one prompt per group, repeated group_size times."""
        config = self.config
        if config.prompt_tokens == 0:
            return self.bos_prompts(self.rollout_size)
        pick = torch.randint(len(self.prompt_rows), (config.num_groups,),
                             generator=self.train_rng, device=self.device)
        rows = self.prompt_rows.to(self.device)[pick].repeat_interleave(config.group_size)
        # The sentences the prompts come from: the real side of Bradley-Terry pairs.
        self.prompted_rows = rows
        return self.train_data.inputs[rows, : 1 + config.prompt_tokens]

    def _max_new(self) -> int:
        """Sampled tokens after the prompt before sample_tokens forces EOS."""
        return max(self.max_new_tokens - self.config.prompt_tokens, 1)

    def _sample_fakes(self):
        """A rollout's worth of samples, as generator ids and as discriminator word pieces."""
        self.generator.eval()
        samples = self.generation.sample_tokens(self.generator, self._prompts(), self._max_new(),
                                                self.eos_id, 1.0, self.train_rng,
                                                self.banned_ids)
        texts = self.generation.decode_samples(self.tokenizer, samples)
        return samples, self.encode_for_discriminator(texts).to(self.device)

    def _new_rollout(self) -> Rollout:
        hf, config = self.hf, self.config
        samples, fakes = self._sample_fakes()
        with torch.no_grad():
            self.discriminator.eval()
            rewards = hf.realness(hf.classifier_logits(self.discriminator, fakes))
            if config.baseline == "group":
                advantages = policy.group_relative_advantages(
                    rewards, config.group_size, config.reward_std_floor)
            else:
                advantages = policy.moving_baseline_advantages(
                    rewards, self.moving_baseline, config.reward_std_floor)
                self.moving_baseline = estimators.moving_average(
                    self.moving_baseline, distributed.average(rewards.mean()),
                    config.baseline_decay)
            reference_log_probs = None
            if self.reference is not None:
                reference_log_probs = hf.token_log_probs(
                    self.reference, samples.action_batch(self._max_new()),
                    banned_ids=self.banned_ids)
        return self.text_gan.Rollout(samples, fakes, rewards, advantages, reference_log_probs,
                                     None, config.ppo_epochs)

    def generator_policy_step(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        """One generator update on the rollout's clipped surrogate + KL penalty; its logs are
        tensors, read by the harness a few steps at a time (bench.step_values)."""
        config = self.config
        # Sampled actions only (not the EOS forced at the cap), with the log-probs of the
        # distribution sampled from (the banned special tokens removed).
        batch = rollout.samples.action_batch(self._max_new())
        # Dropout off: the ratio and the KL must compare the same function of the weights.
        self.generator.eval()
        log_probs = self.hf.token_log_probs(self.generator, batch, banned_ids=self.banned_ids,
                                            body=self.train_body)
        if rollout.old_log_probs is None:
            # The first update is on-policy: the sampling policy's log-probs are these.
            rollout.old_log_probs = log_probs.detach()
        pg_loss, clipped = policy.clipped_surrogate_loss(
            log_probs, rollout.old_log_probs, rollout.advantages, batch.mask, config.ppo_clip)
        loss = pg_loss
        logs = {"train/g_pg_loss": pg_loss.detach(), "train/clip_fraction": clipped.detach()}
        if rollout.reference_log_probs is not None:
            kl = policy.kl_penalty(log_probs, rollout.reference_log_probs, batch.mask)
            loss = loss + config.kl_coef * kl
            logs["train/kl"] = kl.detach()
        optimizer_step(self.g_optimizer, self.generator, loss, config.grad_clip)
        rollout.updates_left -= 1
        return logs

    def realness_scores(self, texts: list[str]) -> list[float]:
        """The discriminator's logit_real - logit_fake per text (synthetic-data filtering)."""
        size = self.config.sample_batch_size
        return self.text_gan.realness_of(self.discriminator, (
            self.encode_for_discriminator(texts[i : i + size]).to(self.device)
            for i in range(0, len(texts), size)))

    def scoring_flops(self, texts: list[str]) -> float:
        pieces = self.encode_for_discriminator(texts)
        return pieces.num_pieces() * self.discriminator_flops_per_token()

    def discriminator_step(self, fakes) -> tuple[dict[str, torch.Tensor], int]:
        """One update on a batch of real training sentences against as many generated ones;
        returns its logs and the word pieces it processed."""
        indices = distributed.shard(self.d_batches.next_indices())
        if self.config.d_loss == "bradley_terry" and self.config.prompt_tokens > 0:
            indices = self.prompted_rows  # each sample's pair: the sentence of its prompt
        reals = self.real_for_d.select(indices)
        return self.text_gan.classifier_update(self.discriminator, self.d_optimizer, reals,
                                               fakes, self.config.d_loss, self.config.grad_clip)

    def discriminator_warmup_step(self) -> StepReport:
        samples, fakes = self._sample_fakes()
        if self.budget_spent():  # sampling is most of the step: no update past the budget
            raise StepAbandoned
        logs, d_tokens = self.discriminator_step(fakes)
        tokens = samples.num_tokens()
        # Sampling is one generator forward per sampled token, as in adversarial_step.
        flops = (self.sample_flops(samples)
                 + 3 * d_tokens * self.discriminator_flops_per_token())
        return StepReport(tokens=tokens, flops=flops, logs=logs, generator_updates=0,
                          discriminator_updates=1)

    def adversarial_step(self) -> StepReport:
        fresh = self.rollout is None or self.rollout.updates_left <= 0
        rollout = self._new_rollout() if fresh else self.rollout
        # A fresh rollout (sampling, reference and reward passes) is the long part of the
        # step: if the budget ran out meanwhile, the step is dropped before any weight changes
        # (so that a seconds budget holds within one short step, as for seqgan).
        if fresh and self.budget_spent():
            raise StepAbandoned
        self.rollout = rollout
        logs = self.generator_policy_step(rollout)
        logs["train/reward_mean"] = rollout.rewards.mean()
        logs["train/reward_std"] = rollout.rewards.std(unbiased=False)
        tokens = rollout.samples.num_tokens()
        g_flops = self.generator_flops_per_token()
        d_flops = self.discriminator_flops_per_token()
        # Training forward + backward (3x); for a fresh rollout also the sampling, the
        # reference's forward and the discriminator's reward pass.
        flops = tokens * g_flops * (3 + fresh * (1 + (self.reference is not None)))
        if fresh:
            flops += rollout.fakes.num_pieces() * d_flops
        d_updates = 0
        for d_step in range(self.config.d_steps):
            # The generator is updated; once the budget is spent the discriminator's updates
            # are cut (the run ends here, and they could only ever train the next step's
            # reward), so the step overruns the budget by at most the generator update.
            if self.budget_spent():
                break
            if d_step == 0 and fresh:
                fakes = rollout.fakes
            else:
                samples, fakes = self._sample_fakes()
                flops += self.sample_flops(samples)
            d_logs, d_tokens = self.discriminator_step(fakes)
            flops += 3 * d_tokens * d_flops
            logs.update(d_logs)
            d_updates += 1
        return StepReport(tokens=tokens, flops=flops, logs=logs, generator_updates=1,
                          discriminator_updates=d_updates)

    def sample_flops(self, samples) -> float:
        """FLOPs of drawing ``samples``: one generator forward per sampled token."""
        return samples.num_tokens() * self.generator_flops_per_token()

    def discriminator_flops_per_token(self) -> float:
        if not hasattr(self, "_discriminator_flops"):
            self._discriminator_flops = self.hf_models.flops_per_token(self.discriminator)
        return self._discriminator_flops

    # -- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        rollout = None
        if self.rollout is not None and self.rollout.updates_left > 0:
            rollout = self.rollout.state_dict()
        state.update({
            "discriminator": self.discriminator.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
            "g_optimizer": self.g_optimizer.state_dict(),
            "reference": self.reference.state_dict() if self.reference is not None else None,
            "d_batches": self.d_batches.state_dict(),
            "train_rng": self.train_rng.get_state(),
            "phase": self.phase,
            "moving_baseline": self.moving_baseline,
            "rollout": rollout,
            "d_tokenizer": (self.hf_tokenizers.tokenizer_json(self.d_tokenizer)
                            if self.d_tokenizer_is_trained else None),
        })
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        tokenizer = self.text_gan.stored_wordpiece_tokenizer(state.get("d_tokenizer"),
                                                             self.d_tokenizer)
        if tokenizer is not None:
            self.d_tokenizer = tokenizer
            self.real_for_d = self.encode_for_discriminator(
                self.corpus.train_text()).to(self.device)
        self.discriminator.load_state_dict(state["discriminator"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        if self.reference is not None and state.get("reference") is not None:
            self.reference.load_state_dict(state["reference"])
        self.d_batches.load_state_dict(state["d_batches"])
        self.train_rng.set_state(state["train_rng"])
        self.phase = int(state["phase"])
        baseline = state["moving_baseline"]
        self.moving_baseline = None if baseline is None else baseline.to(self.device)
        stored = state.get("rollout")
        self.rollout = (None if stored is None
                        else self.text_gan.Rollout.from_state(stored, self.device))
