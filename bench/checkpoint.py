"""Full-state checkpoints in one safetensors file: tensors as tensors, the rest as JSON.

Nothing is unpickled: a nested state (dicts, lists, numbers, strings, tensors; e.g. model and
optimiser state_dicts, torch RNG states, step counters, the config) is split into a flat map of
tensors and a JSON skeleton stored in the file's metadata. Writes are atomic and durable (temp,
fsync, rename); the metadata also holds every tensor's shape and dtype and a sha256 over the
skeleton and all tensor bytes, so that a damaged file is refused instead of resumed from.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file

from bench.errors import GanbenchError

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_INT_KEYS = "__int_keys__"
SKELETON_KEY = "ganbench_state"
SHAPES_KEY = "ganbench_shapes"
CHECKSUM_KEY = "ganbench_sha256"
STALE_TMP_GLOB = ".*.tmp"  # what an atomic write killed part-way leaves (mkstemp's names)


def _flatten(obj: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(obj, torch.Tensor):
        key = path or "root"
        # clone(): tied or shared storages cannot be saved twice by safetensors.
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {_TENSOR: key}
    if isinstance(obj, dict):
        int_keys = all(isinstance(k, int) for k in obj) and bool(obj)
        out = {str(k): _flatten(v, tensors, f"{path}/{k}") for k, v in obj.items()}
        if int_keys:  # optimiser state is keyed by parameter index
            out = {_INT_KEYS: out}
        return out
    if isinstance(obj, tuple):
        return {_TUPLE: [_flatten(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {path or 'root'}")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            return tensors[obj[_TENSOR]]
        if set(obj) == {_TUPLE}:
            return tuple(_unflatten(v, tensors) for v in obj[_TUPLE])
        if set(obj) == {_INT_KEYS}:
            return {int(k): _unflatten(v, tensors) for k, v in obj[_INT_KEYS].items()}
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def state_checksum(skeleton_json: str, tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the JSON skeleton and every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256(skeleton_json.encode())
    for key in sorted(tensors):
        tensor = tensors[key].contiguous()
        digest.update(f"{key}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _shapes(tensors: dict[str, torch.Tensor]) -> dict[str, list]:
    return {k: [str(t.dtype), list(t.shape)] for k, t in tensors.items()}


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_state(path: Path, state: dict[str, Any]) -> None:
    from bench.records import fsync_folder, umask_mode

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = json.dumps(_flatten(state, tensors, ""))
    metadata = {SKELETON_KEY: skeleton, SHAPES_KEY: json.dumps(_shapes(tensors)),
                CHECKSUM_KEY: state_checksum(skeleton, tensors)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, umask_mode())
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        _fsync_file(tmp)
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def clean_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files of writes killed part-way. Only the folder's one writer (the
    holder of its run lock) may call this: another writer's live temporary looks the same."""
    removed = []
    for tmp in Path(folder).glob(STALE_TMP_GLOB):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def load_state(path: Path) -> dict[str, Any]:
    """The state saved by save_state, or one line saying why the file cannot be trusted."""
    path = Path(path)
    hint = "delete it or use --no-resume to start the run afresh"
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except Exception as err:
        raise GanbenchError(f"{path}: not a readable GANBench checkpoint ({err}); "
                            f"{hint}") from None
    if not {SKELETON_KEY, SHAPES_KEY, CHECKSUM_KEY} <= set(metadata):
        raise GanbenchError(f"{path}: checkpoint without a checksum (not written by this "
                            f"version of GANBench); {hint}")
    if state_checksum(metadata[SKELETON_KEY], tensors) != metadata[CHECKSUM_KEY]:
        raise GanbenchError(f"{path}: checkpoint fails its sha256 check (damaged); {hint}")
    try:
        shapes_ok = json.loads(metadata[SHAPES_KEY]) == _shapes(tensors)
        skeleton = json.loads(metadata[SKELETON_KEY])
        state = _unflatten(skeleton, tensors)
    except (ValueError, KeyError, TypeError) as err:
        raise GanbenchError(f"{path}: checkpoint metadata is damaged ({err}); {hint}") from None
    if not shapes_ok:
        raise GanbenchError(f"{path}: checkpoint tensor shapes differ from the recorded ones; "
                            f"{hint}")
    return state


def _tensor_shapes(obj: Any, path: str, out: dict[str, tuple]) -> dict[str, tuple]:
    if isinstance(obj, torch.Tensor):
        out[path] = tuple(obj.shape)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _tensor_shapes(v, f"{path}/{k}", out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _tensor_shapes(v, f"{path}/{i}", out)
    return out


def check_fits(path: Path, saved: dict[str, Any], fresh_variant_state: dict[str, Any]) -> None:
    """A checkpoint's state must hold what this run needs, with the shapes of a freshly built
    variant's tensors (optimiser moments aside: a fresh optimiser has none yet)."""
    hint = "delete it or use --no-resume"
    missing = [k for k in ("variant", "clock", "torch_rng") if k not in saved]
    if missing:
        raise GanbenchError(f"{path}: checkpoint lacks {', '.join(missing)}; {hint}")
    if not isinstance(saved["variant"], dict) or not isinstance(saved["clock"], dict):
        raise GanbenchError(f"{path}: checkpoint's variant/clock state is malformed; {hint}")
    expected = _tensor_shapes(fresh_variant_state, "", {})
    got = _tensor_shapes(saved["variant"], "", {})
    for name, shape in expected.items():
        if name in got and got[name] != shape:
            raise GanbenchError(f"{path}: tensor {name.lstrip('/')} has shape {list(got[name])}, "
                                f"this run's is {list(shape)}; {hint}")
    lost = [name for name in expected if name not in got]
    if lost:
        raise GanbenchError(f"{path}: checkpoint lacks tensor {lost[0].lstrip('/')}; {hint}")
