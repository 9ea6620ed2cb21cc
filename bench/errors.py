"""Errors that the command line reports as one line, never as a traceback."""


class GanbenchError(Exception):
    """Bad input or environment: the CLI prints ``ganbench: error: <message>`` and exits 2."""


class Diverged(Exception):
    """Raised by a training step whose state can no longer be trusted (NaN loss, collapse)."""

    def __init__(self, reason: str, step: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.step = step  # the step that diverged, when found after later steps ran


class StepAbandoned(Exception):
    """Raised inside a training step when the budget ran out part-way through it (variants
    whose steps are long check ``Variant.budget_spent``): the harness drops the unfinished step
    and ends training; the time it took stays counted as spent."""
