"""The step machinery every variant builds with (issue 22), in one place so that no variant is
faster by implementation under an equal budget.

- ``autocast``: bf16 matmuls on CUDA, float32 elsewhere.
- ``optimizer_step``: every variant's update (backward, gradients averaged over data-parallel
  ranks, clipped, the optimiser's step), in one place.
- ``adam``: Adam or AdamW, fused (one kernel for all parameters) on CUDA; on a CPU the plain
  loop, whose numbers the CPU baselines were taken with.
- ``compact_lstms``: cuDNN wants an LSTM's weights in one contiguous chunk; a module built,
  moved or deep-copied onto the GPU is compacted once here instead of at every call (cuDNN's
  "not part of single contiguous chunk of memory" warning).
- ``bucket_width``: on CUDA, a batch trimmed to its longest member is padded on to a multiple
  of 16 positions, so that attention and matmul kernels see a few shapes instead of a new one
  almost every step (cuDNN's attention built a plan per shape: 64 ms of CPU per GPT-2 step for
  1 ms of kernels). Padding is never counted: only mask positions reach the loss.
- ``to_device`` (bench.accelerator's, shared with the harness's evaluation): a host tensor (a
  step's batch indices, a tokenized batch) copied to the GPU without waiting: a plain
  ``.to("cuda")`` synchronises the stream after its copy, so each step's index copy would make
  the host wait for every kernel queued before it.
- ``compiled``: ``torch.compile`` of a module for the training forward, sharing its
  parameters (the module itself stays eager for sampling, whose every decode step has a new
  shape, and keeps its state_dict keys). Static shapes: the buckets above bound the number of
  graphs. The bare GPT-2-small loop on an H200 went from 27.5 to 18.4 ms a step with it
  (results/gpu); compile time is charged to the budget like any other work of the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch

from bench import distributed
from bench.accelerator import to_device  # noqa: F401  (the step machinery's, kept in bench/)

CUDA_LENGTH_MULTIPLE = 16
COMPILE_BACKEND = "inductor"  # torch.compile's default; tests use "aot_eager" (no C++ build)


def autocast(device: torch.device):
    """bf16 autocast on CUDA (matmuls in bf16, reductions in fp32); nothing on CPU, where bf16
    matmuls are slower than fp32 on most processors."""
    if torch.device(device).type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def adam(parameters: Iterable[torch.nn.Parameter], lr: float, device: torch.device,
         weight_decay: float = 0.0, decoupled: bool = False) -> torch.optim.Optimizer:
    """Adam (or AdamW when ``decoupled``), fused on CUDA."""
    optimizer_class = torch.optim.AdamW if decoupled else torch.optim.Adam
    extra = {"fused": True} if torch.device(device).type == "cuda" else {}
    return optimizer_class(parameters, lr=lr, weight_decay=weight_decay, **extra)


def optimizer_step(optimizer: torch.optim.Optimizer, module: torch.nn.Module,
                   loss: torch.Tensor, grad_clip: float) -> None:
    """Minimise ``loss`` by one step of ``optimizer`` over ``module``'s parameters: gradients
    averaged over data-parallel ranks (nothing on one process), their norm clipped to
    ``grad_clip`` when it is positive. Nothing here reads a value back from the device."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    distributed.average_gradients(module.parameters())
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
    optimizer.step()


def compact_lstms(module: torch.nn.Module) -> torch.nn.Module:
    """flatten_parameters() on every LSTM of a CUDA module; returns the module."""
    for child in module.modules():
        if isinstance(child, torch.nn.RNNBase) and next(child.parameters()).is_cuda:
            child.flatten_parameters()
    return module


def bucket_width(width: int, device: torch.device, limit: int | None = None) -> int:
    """The padded width of a batch whose longest member has ``width`` positions: a multiple
    of CUDA_LENGTH_MULTIPLE on CUDA (at most ``limit``), ``width`` itself elsewhere."""
    if torch.device(device).type != "cuda":
        return width
    padded = -(-width // CUDA_LENGTH_MULTIPLE) * CUDA_LENGTH_MULTIPLE
    return min(padded, limit) if limit is not None else padded


def compiled(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` compiled for training steps: the same parameters, static shapes."""
    return torch.compile(module, backend=COMPILE_BACKEND, dynamic=False)
