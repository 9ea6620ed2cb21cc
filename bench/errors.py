"""Errors that the command line reports as one line, never as a traceback."""


class GanbenchError(Exception):
    """Bad input or environment: the CLI prints ``ganbench: error: <message>`` and exits 2."""


class Diverged(Exception):
    """Raised by a training step whose state can no longer be trusted (NaN loss, collapse)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
