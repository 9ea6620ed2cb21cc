"""Compute budgets (METRICS.md): seconds, optimiser steps or FLOPs, enforced by the harness."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import torch

from bench.errors import GanbenchError

_UNITS = {
    "s": ("seconds", 1.0), "sec": ("seconds", 1.0), "min": ("seconds", 60.0),
    "h": ("seconds", 3600.0), "steps": ("steps", 1.0), "step": ("steps", 1.0),
    "flops": ("flops", 1.0),
}
# Beyond these a run would never end (or a count would overflow): 30 days, 10^12 steps, 10^21
# FLOPs (11.7 days at an H100/H200's whole dense bf16 peak of 989 TFLOP/s, so inside the
# seconds cap on the fastest single device; a CPU reaches far less).
MAX_AMOUNT = {"seconds": 30 * 86400.0, "steps": 1e12, "flops": 1e21}
_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]+)\s*$")


@dataclass(frozen=True)
class Budget:
    kind: str  # "seconds" | "steps" | "flops"
    amount: float

    @classmethod
    def parse(cls, text: str) -> Budget:
        match = _BUDGET.match(str(text))
        unit = match and _UNITS.get(match.group(2).lower())
        if not match or not unit:
            raise GanbenchError(
                f"bad budget {text!r}: use seconds (30s, 10min, 1h), steps (2000steps) "
                "or FLOPs (1e13flops)"
            )
        kind, scale = unit
        amount = float(match.group(1)) * scale
        if not amount <= MAX_AMOUNT[kind]:  # also inf (1e400) and NaN
            raise GanbenchError(f"bad budget {text!r}: at most {MAX_AMOUNT[kind]:g} {kind}")
        if amount <= 0:
            raise GanbenchError(f"bad budget {text!r}: it must be greater than zero")
        if kind == "steps" and amount != int(amount):
            raise GanbenchError(f"bad budget {text!r}: steps must be a whole number")
        return cls(kind, amount)

    def __str__(self) -> str:
        if self.kind == "seconds":
            return f"{self.amount:g}s"
        if self.kind == "steps":
            return f"{int(self.amount)}steps"
        return f"{self.amount:g}flops"


# A seconds budget's clock waits for the device at each reading from this share of the budget on
# (before it, a reading need not wait: see BudgetClock).
EXACT_FROM = 0.95


class BudgetClock:
    """Counts what training has spent; the harness asks it before every step.

    Seconds are wall time of building the variant and of training steps (evaluation,
    validation and checkpoints are paused out). On CUDA the device is synchronised before a
    reading so that queued kernels count, except where an early reading is as good: a steps or
    flops budget never reads the clock, and a seconds budget reads it without waiting while
    it stands below EXACT_FROM of the budget (what is still queued then, a step or two of
    kernels, cannot reach the end unseen: a plain reading lags the device by that much, and
    from EXACT_FROM on every reading waits). A wait after every step would keep the host from
    queuing the next step while the device runs this one. A seconds budget is charged
    device-seconds: wall seconds times the number of data-parallel processes
    (``world_size``), each holding one device, so that N devices get the same compute as one
    device for N times as long.
    """

    def __init__(self, budget: Budget, device: torch.device, *, world_size: int = 1,
                 seconds: float = 0.0,
                 steps: int = 0, flops: float = 0.0, tokens: int = 0,
                 construction_seconds: float = 0.0, generator_updates: int = 0,
                 discriminator_updates: int = 0):
        self.budget = budget
        self.device = torch.device(device)
        self.world_size = int(world_size)
        self.seconds, self.steps, self.flops, self.tokens = seconds, steps, flops, tokens
        # Building the variant (tokenizers, encoding, a source variant): part of ``seconds``.
        self.construction_seconds = construction_seconds
        self.generator_updates = generator_updates
        self.discriminator_updates = discriminator_updates
        self._started_at: float | None = None

    def _now(self, exact: bool = True) -> float:
        """The time; ``exact``: once the device has run everything queued so far."""
        if exact and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def start(self) -> None:
        self._started_at = self._now()

    def pause(self) -> None:
        if self._started_at is not None:
            self.seconds += self._now() - self._started_at
            self._started_at = None

    def elapsed(self, exact: bool = True) -> float:
        running = (self._now(exact) - self._started_at if self._started_at is not None
                   else 0.0)
        return self.seconds + running

    def charge_construction(self, seconds: float) -> None:
        """Building the variant counts in seconds budgets (METRICS.md, Budget)."""
        self.construction_seconds += seconds
        self.seconds += seconds

    def record_step(self, tokens: int, flops: float = 0.0, generator_updates: int = 0,
                    discriminator_updates: int = 0) -> None:
        self.steps += 1
        self.tokens += int(tokens)
        self.flops += float(flops)
        self.generator_updates += int(generator_updates)
        self.discriminator_updates += int(discriminator_updates)

    def state(self) -> dict:
        """The counters a checkpoint keeps; BudgetClock(budget, device, **state) restores them."""
        return {"seconds": self.elapsed(), "steps": self.steps, "flops": self.flops,
                "tokens": self.tokens, "construction_seconds": self.construction_seconds,
                "generator_updates": self.generator_updates,
                "discriminator_updates": self.discriminator_updates}

    def device_seconds(self) -> float:
        return self.elapsed() * self.world_size

    def used(self) -> float:
        if self.budget.kind == "steps":
            return float(self.steps)
        if self.budget.kind == "flops":
            return self.flops
        early = self.elapsed(exact=False) * self.world_size
        if early < EXACT_FROM * self.budget.amount:
            return early
        return self.device_seconds()

    def progress(self) -> float:
        """Fraction of the budget spent, in [0, 1]: variants schedule their phases on it."""
        return min(1.0, self.used() / self.budget.amount)

    def exhausted(self) -> bool:
        return self.used() >= self.budget.amount

    def summary(self) -> dict:
        return {"given": str(self.budget), "kind": self.budget.kind,
                "amount": self.budget.amount, "used": self.used(), "steps": self.steps,
                "seconds": self.elapsed(), "device_seconds": self.device_seconds(),
                "world_size": self.world_size, "flops": self.flops, "tokens": self.tokens,
                "construction_seconds": self.construction_seconds,
                "generator_updates": self.generator_updates,
                "discriminator_updates": self.discriminator_updates}
