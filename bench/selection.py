"""Validation NLL during training and the choice of the generator that is evaluated.

METRICS.md, Validation and selection: at ``points`` evenly spaced shares of the budget (and at
the end) the generator's NLL of the corpus's validation split is measured, off the budget's
clock. The run keeps the generator of the best validation NLL beside the last one, and the
selection rule says which of them evaluation sees:

- ``last``: the generator as training left it;
- ``best_valid``: the lowest validation NLL of the whole run;
- ``best_valid_final_phase``: the lowest validation NLL among the points of the variant's final
  phase (for MLE variants the same as best_valid; for a GAN the best adversarial generator).

Validation NLL favours MLE-like generators, so ``best_valid`` can silently hand back a GAN's
pre-adversarial generator: every record says in which phase its best and its chosen points lie.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

SELECTION_RULES = ("last", "best_valid", "best_valid_final_phase")
# A record whose last validation NLL is this share above its best is flagged as over-fitting
# (or, for a GAN, as having moved away from the data's likelihood) in the tables.
OVERFIT_MARGIN = 0.02


@dataclass
class ValidationPoint:
    step: int
    progress: float
    valid_nll: float
    phase: str


def copy_weights(weights: dict[str, torch.Tensor], device: str | None = None
                 ) -> dict[str, torch.Tensor]:
    """A detached copy of a state dict, where it lives (a GPU copy is faster than a host one)
    or on ``device`` (contiguous, as safetensors wants)."""
    return {k: v.detach().to(device).contiguous().clone() if device else v.detach().clone()
            for k, v in weights.items()}


@dataclass
class Selection:
    """The validation history of a run and the best generator weights it has seen."""

    rule: str
    points: int
    history: list[ValidationPoint] = field(default_factory=list)
    # The best point (of the whole run, and of the phase the run is in now) with its weights.
    best: dict[str, Any] = field(default_factory=dict)
    best_in_phase: dict[str, Any] = field(default_factory=dict)
    next_point: int = 1
    seconds: float = 0.0

    def due(self, progress: float) -> bool:
        """Whether training has passed the next of the evenly spaced points."""
        return self.points > 0 and progress >= self.next_point / self.points

    def measure(self, variant, corpus, step: int, progress: float) -> ValidationPoint | None:
        """Validation NLL of the variant's generator now (None when it has no generator to
        validate yet, e.g. augmentation before its target exists); keeps the best weights."""
        while self.points > 0 and progress >= self.next_point / self.points:
            self.next_point += 1
        module = variant.generator_module()
        if module is None or (self.history and self.history[-1].step == step):
            return None
        started = time.perf_counter()
        modes = {m: m.training for m in module.modules()}
        fork = [variant.device.index or 0] if variant.device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork):
            result = variant.token_nll(corpus.valid, 1.0)
        for m, training in modes.items():
            m.training = training
        if result is None:
            return None
        point = ValidationPoint(step, float(progress), float(result.per_token),
                                variant.phase_name())
        self.history.append(point)
        if self.best_in_phase.get("phase") != point.phase:
            self.best_in_phase = {}
        for best in (self.best, self.best_in_phase):
            if not best or point.valid_nll < best["valid_nll"]:
                best.clear()
                best.update(step=point.step, valid_nll=point.valid_nll, phase=point.phase,
                            weights=copy_weights(module.state_dict()))
        self.seconds += time.perf_counter() - started
        return point

    def chosen(self) -> dict[str, Any] | None:
        """The best point the rule picks (None for ``last`` or without validation)."""
        if self.rule == "last" or not self.history:
            return None
        return self.best if self.rule == "best_valid" else self.best_in_phase

    def apply(self, variant) -> int | None:
        """Loads the chosen generator into the variant; returns its step (None: the last)."""
        chosen = self.chosen()
        if chosen is None or chosen["step"] == self.history[-1].step:
            return None
        variant.generator_module().load_state_dict(chosen["weights"])
        return int(chosen["step"])

    def summary(self, last_step: int) -> dict[str, Any]:
        """What the record keeps: the rule, the best and last validation NLL, the phases of the
        best and chosen points, and whether validation NLL rose past the margin."""
        if not self.history:
            return {"rule": self.rule, "evaluated": "last", "evaluated_step": last_step,
                    "note": "no validation split or no validation point; the last generator"}
        last = self.history[-1]
        chosen = self.chosen() or {"step": last.step, "phase": last.phase,
                                   "valid_nll": last.valid_nll}
        rise = (last.valid_nll - self.best["valid_nll"]) / abs(self.best["valid_nll"])
        return {
            "rule": self.rule,
            "evaluated": "last" if chosen["step"] == last.step else "best",
            "evaluated_step": chosen["step"] if chosen["step"] != last.step else last_step,
            "evaluated_phase": chosen["phase"],
            "evaluated_valid_nll": chosen["valid_nll"],
            "best_valid_nll": self.best["valid_nll"], "best_step": self.best["step"],
            "best_phase": self.best["phase"],
            "final_phase_best_valid_nll": self.best_in_phase["valid_nll"],
            "final_phase_best_step": self.best_in_phase["step"],
            "last_valid_nll": last.valid_nll, "last_phase": last.phase,
            "best_before_final_phase": self.best["phase"] != last.phase,
            "valid_rise": rise, "overfit": rise > OVERFIT_MARGIN,
            "points": len(self.history), "seconds": self.seconds,
        }

    def state(self) -> dict[str, Any]:
        """For checkpoints (tensors and plain values only)."""
        return {"rule": self.rule, "points": self.points, "next_point": self.next_point,
                "seconds": self.seconds,
                "history": [vars(p) for p in self.history],
                "best": dict(self.best), "best_in_phase": dict(self.best_in_phase)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.next_point = int(state["next_point"])
        self.seconds = float(state["seconds"])
        self.history = [ValidationPoint(**p) for p in state["history"]]
        self.best, self.best_in_phase = dict(state["best"]), dict(state["best_in_phase"])
