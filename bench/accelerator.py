"""What the harness sets and reads of an accelerator: the attention kernels steps may use, the
dense bf16 peak that MFU is measured against (METRICS.md, Throughput), and host-to-GPU copies
that do not wait for the device."""

from __future__ import annotations

import contextlib

import torch

# Dense bf16 tensor-core peaks from the vendors' datasheets (FLOP/s, no sparsity), matched
# against torch.cuda.get_device_name in this order (the first name found in it wins).
BF16_DENSE_PEAK = (
    ("H200", 989.4e12),  # H200 SXM; same tensor cores as the H100 SXM
    ("H100 PCIe", 756.0e12),
    ("H100", 989.4e12),  # SXM / HBM3
    ("A100", 312.0e12),
    ("L40S", 362.1e12),
    ("L4", 121.0e12),
)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``. A plain ``.to("cuda")`` of a host tensor synchronises the stream
    after its copy, so a step's index copy would make the host wait for every kernel queued
    before it. From the host to a GPU the copy goes through pinned memory, asynchronously:
    ordered on the stream like any kernel, and the pinned block is not reused before the copy
    is done (PyTorch's caching host allocator records it). Any other move is a plain ``.to``."""
    device = torch.device(device)
    if tensor.device.type == "cpu" and device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def bf16_peak_flops(device: torch.device, name: str | None = None) -> float | None:
    """The device's dense bf16 peak, or None on a CPU or a GPU not in the table."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    name = name if name is not None else torch.cuda.get_device_name(device)
    for key, peak in BF16_DENSE_PEAK:
        if key in name:
            return peak
    return None


def model_flops_utilisation(flops: float, seconds: float, device: torch.device,
                            name: str | None = None) -> float | None:
    """The harness's counted training FLOPs per device-second over the device's peak."""
    peak = bf16_peak_flops(device, name)
    if peak is None or seconds <= 0:
        return None
    return flops / seconds / peak


def attention_kernels(device: torch.device):
    """A context in which scaled-dot-product attention may use flash, memory-efficient or the
    math kernels but not cuDNN's, which builds an execution plan for every new shape (in a
    GPT-2 step 64 ms of CPU for 1 ms of kernels, and at every decode step of sampling). A
    no-op off CUDA."""
    if torch.device(device).type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                        SDPBackend.MATH])
