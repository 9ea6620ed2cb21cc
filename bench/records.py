"""Run records: one record.json per run, written atomically, validated when read back."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench.errors import GanbenchError

RECORD_FILE = "record.json"
REAL_TEXT_FOLDER = "real_text"  # of a suite's output: one <dataset>.json per corpus
SCHEMA_VERSION = 1
STATUSES = ("ok", "diverged", "failed")
REQUIRED_FIELDS = ("schema", "variant", "config", "dataset", "seed", "budget", "status",
                   "metrics", "timings", "environment")


def _json_safe(obj: Any) -> Any:
    """NaN/inf are not JSON: write them as null so every reader can parse the record."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def umask_mode() -> int:
    """The mode a plain open() would give a new file (0o644 under the usual umask 022):
    mkstemp's temporary files are 0600, and renaming one keeps that."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def fsync_folder(folder: Path) -> None:
    """Make a rename inside folder durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, umask_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(_json_safe(obj), handle, indent=1, ensure_ascii=False, allow_nan=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, umask_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_record(path: Path) -> dict[str, Any]:
    """A record, or one clear error naming the file and what is wrong with it."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GanbenchError(f"{path}: no such record") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GanbenchError(f"{path}: not a complete JSON record ({err})") from None
    if not isinstance(record, dict):
        raise GanbenchError(f"{path}: a record must be a JSON object")
    missing = [f for f in REQUIRED_FIELDS if f not in record]
    if missing:
        raise GanbenchError(f"{path}: record lacks field(s) {', '.join(missing)}")
    if record["status"] not in STATUSES:
        raise GanbenchError(f"{path}: unknown status {record['status']!r}")
    if not isinstance(record["metrics"], dict):
        raise GanbenchError(f"{path}: metrics must be an object")
    for name, value in record["metrics"].items():
        if value is not None and not isinstance(value, (int, float)):
            raise GanbenchError(f"{path}: metric {name} is not a number: {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise GanbenchError(f"{path}: metric {name} is not finite")
    if record["status"] == "ok":
        for name, value in record["metrics"].items():
            if value is None and name in ("bleu_5", "self_bleu_5"):
                raise GanbenchError(f"{path}: status ok but metric {name} is missing (NaN?)")
    return record


def git_commit(directory: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True,
                             text=True, timeout=5, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=directory, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> dict[str, Any]:
    import numpy
    import transformers

    info = {
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "git_commit": git_commit(Path(__file__).resolve().parent),
    }
    return info


def record_complete(run_dir: Path) -> bool:
    """True where a run folder holds a complete, readable record (a finished run)."""
    try:
        load_record(Path(run_dir) / RECORD_FILE)
        return True
    except GanbenchError:
        return False


def load_train_log(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-step diagnostics beside a loaded record (its ``_path``); [] where there are none."""
    path = Path(record["_path"]).parent / "train_log.jsonl"
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            raise GanbenchError(f"{path}: line {number} is not a JSON object; no report written")
        rows.append(row)
    return rows
