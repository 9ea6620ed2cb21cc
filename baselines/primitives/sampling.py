"""Sampling from categorical distributions, shared by the LSTM and GPT-2 generators."""

from __future__ import annotations

import torch

# Decoders that keep every row to the end look at the device (have all rows ended?) once per
# this many tokens: a read per token would stall the host on every step, and the extra steps
# after the last row ends draw nothing that is kept.
END_CHECK_EVERY = 8


def fixed_rows_default(device: torch.device) -> bool:
    """Whether decoders keep every row to the end by default: on CUDA, where a read of the
    device per token (which rows are still running?) costs more than the ended rows'
    arithmetic; on a CPU, dropping ended rows is worth more."""
    return torch.device(device).type == "cuda"


def draw_categorical(probs: torch.Tensor, generator: torch.Generator,
                     active: torch.Tensor | None = None) -> torch.Tensor:
    """One index per row of ``probs`` [N, V] by inverting the cumulative distribution: the
    first i with cdf_i > u, u uniform on [0, total). Exact, and 10-18x faster than
    torch.multinomial on CPU (measured: 0.25 vs 4.6 ms for 64 x 4,000).

    ``active`` (bool [B], N of them True): ``probs`` holds only those rows of a batch of B.
    Uniforms are still drawn for all B rows and the active ones kept, so that a decoder that
    drops its finished rows draws exactly the tokens it would have drawn with all of them."""
    cdf = probs.cumsum(dim=-1)
    total = cdf[:, -1:]
    rows = len(probs) if active is None else len(active)
    uniform = torch.rand((rows, 1), generator=generator, device=probs.device, dtype=cdf.dtype)
    if active is not None:
        uniform = uniform[active]
    uniform = uniform * total
    # Strictly below the total even after rounding, so trailing zero-probability ids (banned
    # tokens) can never be drawn; ids of probability 0 elsewhere have cdf_i = cdf_(i-1).
    uniform = torch.minimum(uniform, torch.nextafter(total, torch.zeros_like(total)))
    # Non-finite probabilities (a diverged generator) would place u past the last id; clamped,
    # such a generator draws valid ids until the harness reads the step that diverged.
    return torch.searchsorted(cdf, uniform, right=True).squeeze(1).clamp_(max=cdf.shape[-1] - 1)
