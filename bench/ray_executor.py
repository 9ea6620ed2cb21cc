"""Run a suite's runs as Ray tasks: one GPU per run where the cluster has GPUs, else one CPU core.

Same semantics as the local loop in bench/suite.py: runs whose record is complete are skipped,
the others resume from their checkpoint, a run that diverges or fails is recorded (by the
runner, in its record) and the others go on; then the report is written. Each task is one
``prepare`` + ``execute`` in a Ray worker process, so records and checkpoints are the same files
the local loop writes.

Connects to a running cluster when ``RAY_ADDRESS`` is set (``ray start --head`` on one machine,
``ray start --address=...`` on the others), else starts a local instance with every core and GPU
of this machine. On a cluster, ``out`` and ``data_dir`` must be on a filesystem all nodes share,
and every node needs ganbench installed (``pip install -e .[ray]``).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from bench.errors import GanbenchError

# Ray retries a task whose worker process died (a preempted node, an OOM kill); the retry
# resumes from the run's last checkpoint. Exceptions raised by the run itself are not retried.
WORKER_DEATH_RETRIES = 2


@lru_cache(maxsize=2)
def _corpus(dataset: str, data_dir: Path | None):
    """Ray reuses worker processes: a worker that runs several seeds loads the corpus once."""
    from bench.corpora import load_corpus

    return load_corpus(dataset, data_dir)


def _run_in_worker(spec_fields: dict[str, Any], out: str, data_dir: str | None, device: str,
                   checkpoint_every_s: float, cpu_threads: int | None) -> dict[str, Any]:
    """One run, inside a Ray worker; returns what the driver prints about it."""
    import torch

    from bench.runner import RunOptions, RunSpec, execute_locked, prepare

    if cpu_threads:
        torch.set_num_threads(cpu_threads)
    spec = RunSpec(**spec_fields)
    data_path = Path(data_dir) if data_dir else None
    options = RunOptions(out_dir=Path(out), data_dir=data_path, device=device, resume=True,
                         checkpoint_every_s=checkpoint_every_s, quiet=True)
    # One writer per run folder: a run another process is writing is this task's error.
    record = execute_locked(prepare(spec, options, _corpus(spec.dataset, data_path)), options)
    return {"status": record["status"], "steps": record["budget"]["steps"],
            "reason": record["reason"], "metrics": record["metrics"]}


def _task_resources(device: str) -> tuple[dict[str, float], str, int | None]:
    """Ray resources of one run, the device name the run is given, and its CPU threads."""
    import ray

    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    wants_gpu = device.startswith("cuda") or (device == "auto" and cluster_gpus > 0)
    if wants_gpu:
        if cluster_gpus < 1:
            raise GanbenchError(f"device {device!r} asked for, but the Ray cluster has no GPU")
        # Ray hides every other GPU from the task (CUDA_VISIBLE_DEVICES): its GPU is cuda:0.
        return {"num_gpus": 1, "num_cpus": 1}, "cuda", None
    # One core and one torch thread per run: runs sharing a machine do not fight over cores.
    return {"num_gpus": 0, "num_cpus": 1}, "cpu", 1


def _summary(result: dict[str, Any]) -> str:
    metrics = result["metrics"]
    shown = ", ".join(f"{k}={metrics[k]:.3f}" for k in ("bleu_5", "self_bleu_5", "nll_test")
                      if k in metrics)
    return (f"{result['status']} in {result['steps']} steps{'; ' + shown if shown else ''}"
            f"{'; ' + str(result['reason']) if result['reason'] else ''}")


def run_suite_on_ray(suite, out: Path, data_dir: Path | None = None, device: str = "auto") -> int:
    """Every run of ``suite`` not yet complete, as concurrent Ray tasks; then the report."""
    try:
        import ray
    except ImportError:
        raise GanbenchError("--executor ray needs Ray: pip install 'ganbench[ray]'") from None
    from bench.records import record_complete
    from bench.report import write_report

    out = Path(out).resolve()
    data_dir = Path(data_dir).resolve() if data_dir else None
    out.mkdir(parents=True, exist_ok=True)
    total = len(suite.runs)
    todo = []
    for index, spec in enumerate(suite.runs, start=1):
        if record_complete(out / spec.run_name()):
            print(f"[{index}/{total}] {spec.run_name()}: complete, skipped", file=sys.stderr,
                  flush=True)
        else:
            todo.append((index, spec))

    started = time.perf_counter()
    failures, errors = 0, []
    # A cluster the caller (or RAY_ADDRESS) already set up is used as it is, and left running.
    owns_ray = not ray.is_initialized()
    if owns_ray and todo:
        ray.init(include_dashboard=False, log_to_driver=False)
    try:
        if todo:
            resources, task_device, threads = _task_resources(device)
            remote_run = ray.remote(_run_in_worker).options(
                max_retries=WORKER_DEATH_RETRIES, **resources)
            labels = {}
            for index, spec in todo:
                ref = remote_run.remote(dataclasses.asdict(spec), str(out),
                                        str(data_dir) if data_dir else None, task_device,
                                        suite.checkpoint_every_s, threads)
                labels[ref] = f"[{index}/{total}] {spec.run_name()}"
            print(f"{len(todo)} runs submitted to Ray ({resources['num_gpus']:g} GPU, "
                  f"{resources['num_cpus']:g} CPU each)", file=sys.stderr, flush=True)
            pending = list(labels)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                label = labels[done[0]]
                try:
                    result = ray.get(done[0])
                except Exception as err:  # the task raised: the local loop would have stopped
                    cause = getattr(err, "cause", None) or err
                    errors.append(f"{label}: {type(cause).__name__}: {cause}")
                    print(f"{label}: error: {cause}", file=sys.stderr, flush=True)
                    continue
                failures += result["status"] != "ok"
                print(f"{label}: {_summary(result)}", file=sys.stderr, flush=True)
    finally:
        if owns_ray and ray.is_initialized():
            ray.shutdown()
    print(f"suite {suite.name}: {total} runs, {failures} not ok, {len(errors)} errors, "
          f"{time.perf_counter() - started:.0f} s (ray)", file=sys.stderr)
    from bench.scoring import write_real_text_rows

    write_real_text_rows(suite.runs, out, data_dir)
    for path in write_report(out):
        print(path)
    if errors:
        # Input errors (e.g. a checkpoint written with another config) stop a local suite; here
        # the other runs have finished first, and the errors end the command the same way.
        raise GanbenchError(f"{len(errors)} run(s) could not run: " + "; ".join(errors))
    return 0
