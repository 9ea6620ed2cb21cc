"""A training step's logs and MLE loss, read from the device a few steps at a time.

A variant may report its step values as 0-d tensors (StepReport.logs, StepReport.nll). Reading
one with ``.item()`` makes the host wait until the device has finished the step, so the next
step's kernels cannot be queued behind it: on a GPU the step runs at launch speed, not kernel
speed. The harness keeps them here and reads them all in one transfer at its own sync points
(every logged step, validation, checkpoint, the end), then checks each step in order, as if it
had been read at once: the same values, the same divergence rule, only later.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from bench.variant import Check, StepReport


@dataclass
class StepValues:
    """One step's values on the host."""

    step: int
    logs: dict[str, float]
    nll: float | None
    nll_vocab_size: int
    checks: list[Check] = field(default_factory=list)  # their values read: floats

    def failure(self) -> str | None:
        """Why this step's own checks (StepReport.checks) end the run, or None."""
        for check in self.checks:
            why = check.failure()
            if why:
                return why
        return None


class PendingSteps:
    """Reports of steps whose values may still be on the device, in step order."""

    def __init__(self) -> None:
        self._reports: list[tuple[int, StepReport]] = []

    def __len__(self) -> int:
        return len(self._reports)

    def add(self, step: int, report: StepReport) -> None:
        self._reports.append((step, report))

    def drain(self) -> list[StepValues]:
        """Every pending step's values as floats, from one transfer per device; empties."""
        tensors = [value for _, report in self._reports
                   for value in (*report.logs.values(), report.nll,
                                 *(check.value for check in report.checks))
                   if isinstance(value, torch.Tensor)]
        read = iter(_read_in_order(tensors))

        def host(value):
            return next(read) if isinstance(value, torch.Tensor) else value

        out = []
        for step, report in self._reports:  # the same order as ``tensors``
            logs = {name: host(value) for name, value in report.logs.items()}
            nll = host(report.nll)
            checks = [replace(check, value=host(check.value)) for check in report.checks]
            out.append(StepValues(step, logs, nll, report.nll_vocab_size, checks))
        self._reports.clear()
        return out


def _read_in_order(tensors: list[torch.Tensor]) -> list[float]:
    """The 0-d tensors' values, each device's stacked and copied to the host at once."""
    by_device: dict[torch.device, list[int]] = {}
    for position, tensor in enumerate(tensors):
        by_device.setdefault(tensor.device, []).append(position)
    values = [0.0] * len(tensors)
    for positions in by_device.values():
        stacked = torch.stack([tensors[p].detach().reshape(()).to(torch.float64)
                               for p in positions])
        for position, value in zip(positions, stacked.tolist()):
            values[position] = value
    return values
