"""Data-parallel training across processes launched by torchrun (one process per GPU).

    torchrun --nproc_per_node=4 --local-ranks-filter=0 -m bench.cli run --variant gpt2_mle ...

The runner sees ``WORLD_SIZE`` > 1, joins the process group (NCCL on CUDA, each rank on
``cuda:LOCAL_RANK``; gloo on CPU) and trains the variant on every rank. The budget stays the
harness's: every step the ranks' tokens and FLOPs are summed, and rank 0's clock decides
progress, exhaustion and checkpoints for all, so all ranks stop at the same step. Rank 0 alone
writes the log, the checkpoints and the record, and evaluates; the others exit after training.

A variant opts in with ``data_parallel = True`` and keeps every rank's copy identical:

- weights and optimiser states: gradients are averaged across ranks (``average_gradients``)
  between backward and the optimiser step, so the same update is applied everywhere;
- minibatches: every rank draws the same global batch (``batch_size`` x ranks, same seeded
  sampler) and trains on its own slice of it (``shard``), so ``batch_size`` is per rank and
  the sampler state is the same on all ranks, which keeps rank 0's checkpoint valid for all;
- what must differ per rank (e.g. the random stream that draws a GAN's samples) is seeded with
  ``rank_seed`` and named in the variant's ``rank_state_keys``: the runner gathers those entries
  of every rank's state_dict into the checkpoint and gives each rank its own back on resume.

The runner checks at the start and at the end of training that the shared state (the state_dict
without the per-rank keys) has the same digest on every rank, and records whether it did.
Without a process group every function here is the single-process no-op, so variants call them
unconditionally.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel ranks; World() is a single process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def requested_world() -> World:
    """The world torchrun asked for in the environment (nothing is joined yet)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def current_world() -> World:
    """The world this process has joined; World() when it trains alone."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def join(world: World, device: torch.device, timeout_s: float = 1800.0) -> None:
    """Join the process group torchrun set up the rendezvous for (env:// init)."""
    if world.size <= 1 or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int | None = None) -> int:
    """Rank 0 keeps ``seed`` (a one-process run is unchanged); other ranks get a stream of their
    own, derived so that no two (seed, rank) pairs collide."""
    rank = current_world().rank if rank is None else rank
    if rank == 0:
        return seed
    digest = hashlib.sha256(f"ganbench:{seed}:{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _comm_device() -> torch.device:
    # NCCL moves CUDA tensors only, gloo CPU tensors.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This rank's slice of a global batch that every rank drew the same."""
    world = current_world()
    return indices if world.size == 1 else indices[world.rank :: world.size]


@torch.no_grad()
def average_gradients(parameters) -> None:
    """Replace every gradient by its mean over the ranks (one flat all-reduce).

    A parameter without a gradient on this rank counts as a zero gradient, so that all ranks
    reduce buffers of the same layout; it keeps no gradient if it had none on every rank.
    """
    world = current_world()
    if world.size == 1:
        return
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return
    dtype = torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32
    present = torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      .to(dtype) for p in params] + [present.to(dtype)]).to(_comm_device())
    dist.all_reduce(flat)
    flat /= world.size
    had_grad = flat[-len(params):] > 0
    offset = 0
    for param, present in zip(params, had_grad.tolist()):
        numel = param.numel()
        if present:
            mean = flat[offset : offset + numel].view_as(param).to(param.device, param.dtype)
            if param.grad is None:
                param.grad = mean
            else:
                param.grad.copy_(mean)
        offset += numel


@torch.no_grad()
def average(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over the ranks (e.g. a reward mean that feeds shared state)."""
    world = current_world()
    if world.size == 1:
        return value
    reduced = value.detach().to(_comm_device(), torch.float64)
    dist.all_reduce(reduced)
    return (reduced / world.size).to(value.device, value.dtype)


def sum_over_ranks(values: list[float]) -> list[float]:
    world = current_world()
    if world.size == 1:
        return list(values)
    reduced = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(reduced)
    return reduced.tolist()


def broadcast_from_main(values: list[float]) -> list[float]:
    """Rank 0's values on every rank."""
    world = current_world()
    if world.size == 1:
        return list(values)
    shared = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.broadcast(shared, src=0)
    return shared.tolist()


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (tensors moved to the CPU), in rank order, on every rank."""
    world = current_world()
    if world.size == 1:
        return [obj]
    gathered: list[Any] = [None] * world.size
    dist.all_gather_object(gathered, _to_cpu(obj))
    return gathered


def from_main(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. a tokenizer whose training is not deterministic)."""
    if current_world().size == 1:
        return obj
    shared = [_to_cpu(obj)]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]


def state_digest(state: Any) -> str:
    """A hash of a nested state's exact bytes (tensors) and values (everything else)."""
    hasher = hashlib.sha256()

    def visit(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            tensor = obj.detach().cpu().contiguous().reshape(-1)
            hasher.update(f"T{tensor.dtype}{tuple(obj.shape)}".encode())
            hasher.update(tensor.view(torch.uint8).numpy().tobytes())
        elif isinstance(obj, dict):
            hasher.update(b"{")
            for key in sorted(obj, key=str):
                hasher.update(repr(key).encode())
                visit(obj[key])
            hasher.update(b"}")
        elif isinstance(obj, (list, tuple)):
            hasher.update(b"[")
            for item in obj:
                visit(item)
            hasher.update(b"]")
        else:
            hasher.update(repr(obj).encode())

    visit(state)
    return hasher.hexdigest()
