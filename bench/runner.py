"""One benchmark run: resolve inputs, train inside the budget, evaluate, write the record.

Everything that can be wrong with the input is checked before the run directory is touched. A
run's record.json is written once, atomically, at the end; a run killed at any moment leaves
either no record or its previous complete one, plus a checkpoint to resume from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench import distributed, records
from bench.budget import Budget, BudgetClock
from bench.checkpoint import load_state, save_state
from bench.config import build_config, config_to_dict
from bench.corpora import Corpus, load_corpus
from bench.distributed import World
from bench.errors import Diverged, GanbenchError, StepAbandoned
from bench.evaluation import EvalConfig, evaluate_variant, status_lines
from bench.registry import get_variant
from bench.variant import Variant

CHECKPOINT_FILE = "checkpoint.safetensors"
TRAIN_LOG_FILE = "train_log.jsonl"
SAMPLES_FILE = "samples.txt"


@dataclass
class RunSpec:
    """Everything that defines a run; the same spec always gives the same run directory."""

    variant: str
    dataset: str
    budget: str
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    train_subsample: int = 0  # 0 = the whole training split; K = a low-resource run
    label: str = ""  # the row name in tables; default: variant and its overrides

    def display_label(self) -> str:
        if self.label:
            return self.label
        if not self.overrides:
            return self.variant
        settings = ",".join(f"{k}={v}" for k, v in sorted(self.overrides.items()))
        return f"{self.variant}[{settings}]"

    def run_name(self) -> str:
        dataset = Path(self.dataset).name if os.sep in self.dataset else self.dataset
        parts = [self.variant, dataset.replace(".", "_")]
        if self.train_subsample:
            parts.append(f"k{self.train_subsample}")
        parts += [Budget.parse(self.budget).__str__(), f"seed{self.seed}"]
        if self.overrides:
            digest = hashlib.sha256(json.dumps(self.overrides, sort_keys=True,
                                               default=str).encode()).hexdigest()[:8]
            parts.append(f"cfg{digest}")
        return "__".join(parts)


@dataclass
class RunOptions:
    out_dir: Path
    data_dir: Path | None = None
    device: str = "auto"
    resume: bool = True
    checkpoint_every_s: float = 60.0
    log_every: int = 10
    quiet: bool = False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GanbenchError(f"bad device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GanbenchError(f"device {name!r} asked for, but CUDA is not available here")
    return device


def check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".ganbench-write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise GanbenchError(f"cannot write to output folder {directory}: "
                            f"{err.strerror or err}") from None


@dataclass
class PreparedRun:
    spec: RunSpec
    variant_class: type[Variant]
    config: Any
    eval_config: EvalConfig
    budget: Budget
    corpus: Corpus
    device: torch.device
    run_dir: Path
    world: World = field(default_factory=World)  # the data-parallel ranks (bench/distributed.py)


def prepare(spec: RunSpec, options: RunOptions, corpus: Corpus | None = None) -> PreparedRun:
    """Validate every input; raises GanbenchError before anything is written."""
    variant_class = get_variant(spec.variant)
    budget = Budget.parse(spec.budget)
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, int) or spec.seed < 0:
        raise GanbenchError(f"bad seed {spec.seed!r}: use a whole number >= 0")
    eval_config = build_config(EvalConfig, spec.evaluation)
    world = distributed.requested_world()
    if world.size > 1 and not getattr(variant_class, "data_parallel", False):
        raise GanbenchError(f"variant {spec.variant!r} does not train data-parallel; run it in "
                            f"one process (torchrun started {world.size})")
    device = resolve_device(options.device)
    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)  # one GPU per rank
    if corpus is None:
        corpus = load_corpus(spec.dataset, options.data_dir)
    if spec.train_subsample:
        corpus = corpus.subsample_train(spec.train_subsample, seed=spec.seed)
    config = build_config(variant_class.Config, spec.overrides,
                          base=variant_class.corpus_defaults(corpus))
    check_writable(options.out_dir)
    return PreparedRun(spec, variant_class, config, eval_config, budget, corpus, device,
                       options.out_dir / spec.run_name(), world)


def _finite_logs(logs: dict[str, float]) -> str | None:
    for name, value in logs.items():
        if isinstance(value, float) and not math.isfinite(value):
            return f"{name} is {value}"
    return None


def _cuda_rng(device: torch.device) -> torch.Tensor | None:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _shared_state(variant: Variant) -> dict[str, Any]:
    """The state every data-parallel rank holds the same: all but the per-rank keys."""
    own = set(getattr(variant, "rank_state_keys", ()))
    return {k: v for k, v in variant.state_dict().items() if k not in own}


def _ranks_agree(variant: Variant) -> bool:
    """Whether every rank's shared state has the same digest (a collective)."""
    return len(set(distributed.gather(distributed.state_digest(_shared_state(variant))))) == 1


def _save_checkpoint(run: PreparedRun, variant: Variant, clock: BudgetClock) -> None:
    """Written by rank 0; with several ranks a collective (they all checkpoint the same step),
    because rank 0's file also keeps every rank's own random streams."""
    variant_state = variant.state_dict()
    state = {
        "variant": variant_state,
        "clock": {"seconds": clock.elapsed(), "steps": clock.steps, "flops": clock.flops,
                  "tokens": clock.tokens},
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": _cuda_rng(run.device),
        "config": config_to_dict(run.config),
        "spec": dataclasses.asdict(run.spec),
    }
    if run.world.size > 1:
        own_keys = getattr(variant, "rank_state_keys", ())
        state["world_size"] = run.world.size
        state["ranks"] = distributed.gather({
            "variant": {k: variant_state[k] for k in own_keys},
            "torch_rng": state["torch_rng"], "cuda_rng": state["cuda_rng"]})
        if not run.world.is_main:
            return
    save_state(run.run_dir / CHECKPOINT_FILE, state)


def _truncate_log(path: Path, last_step: int) -> None:
    """Drop log rows written after the checkpoint we resume from (they will be redone)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= last_step]
    records.write_text_atomic(path, "".join(line + "\n" for line in kept))


def _decide(world: World, clock: BudgetClock, checkpoint_due: bool) -> tuple[bool, float, bool]:
    """(budget exhausted, progress, checkpoint now): rank 0's clock decides for every rank, so
    that all ranks take the same phases, checkpoint together and stop at the same step."""
    decision = [float(clock.exhausted()), clock.progress(), float(checkpoint_due)]
    if world.size > 1:
        decision = distributed.broadcast_from_main(decision)
    return bool(decision[0]), decision[1], bool(decision[2])


def _progress_bar(run: PreparedRun, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(total=100, desc=f"{run.spec.variant}/{run.corpus.name} seed {run.spec.seed}",
                unit="%", disable=quiet or None, leave=False, file=sys.stderr,
                bar_format="{desc}: {percentage:3.0f}% of budget |{bar}| {elapsed} {postfix}")


def execute(run: PreparedRun, options: RunOptions) -> dict[str, Any]:
    """Train, evaluate and write the record; returns the record (status ok/diverged/failed).

    Under torchrun (bench/distributed.py) every rank trains; rank 0 alone writes files and
    evaluates, the other ranks return a record without metrics after training.
    """
    world = run.world
    main = world.is_main
    record_path = run.run_dir / records.RECORD_FILE
    checkpoint_path = run.run_dir / CHECKPOINT_FILE
    if main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        # A stale record must not read as this run's result if this run dies.
        record_path.unlink(missing_ok=True)
    distributed.join(world, run.device)

    torch.manual_seed(run.spec.seed)
    variant = run.variant_class(run.config, run.corpus, run.device, run.spec.seed)
    if world.size > 1:
        # Weights are the same on every rank; dropout masks must not be.
        torch.manual_seed(distributed.rank_seed(run.spec.seed, world.rank))
    clock = BudgetClock(run.budget, run.device)
    resumed_from = None
    if options.resume and checkpoint_path.exists():
        state = load_state(checkpoint_path)
        if state.get("config") != config_to_dict(run.config):
            raise GanbenchError(f"{checkpoint_path}: written with another config; "
                                "delete it or use --no-resume")
        written_by = int(state.get("world_size", 1))
        if written_by != world.size:
            raise GanbenchError(f"{checkpoint_path}: written by {written_by} process(es), not "
                                f"{world.size}; resume with as many or use --no-resume")
        variant_state, random_state = state["variant"], state
        if world.size > 1:
            random_state = state["ranks"][world.rank]
            variant_state = {**variant_state, **random_state["variant"]}
        variant.load_state_dict(variant_state)
        clock = BudgetClock(run.budget, run.device, **state["clock"])
        torch.set_rng_state(random_state["torch_rng"])
        if random_state.get("cuda_rng") is not None and run.device.type == "cuda":
            torch.cuda.set_rng_state(random_state["cuda_rng"], run.device)
        resumed_from = clock.steps
        if main:
            _truncate_log(run.run_dir / TRAIN_LOG_FILE, clock.steps)
    elif not options.resume and main:
        checkpoint_path.unlink(missing_ok=True)
        (run.run_dir / TRAIN_LOG_FILE).unlink(missing_ok=True)
    if world.size > 1 and not _ranks_agree(variant):
        raise GanbenchError("the data-parallel ranks built different variants (weights, "
                            "tokenizers or samplers differ); is the corpus the same on all?")

    status, reason, failed_step = "ok", None, None
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    bar = _progress_bar(run, options.quiet or not main)
    last_checkpoint = time.monotonic()
    last_logs: dict[str, float] = {}
    log_path = run.run_dir / TRAIN_LOG_FILE if main else Path(os.devnull)
    log_handle = log_path.open("a", encoding="utf-8")
    try:
        clock.start()
        stop, progress, _ = _decide(world, clock, checkpoint_due=False)
        if world.size == 1:
            # Long steps check the clock from inside (Variant.budget_spent). Data-parallel ranks
            # must stop at the same step, so they keep to the between-steps decision alone.
            variant.progress_now = clock.progress
        while not stop:
            try:
                report = variant.train_step(progress)
            except StepAbandoned:
                break  # the budget ran out inside the step; its partial work is dropped
            bad = _finite_logs(report.logs)
            tokens, flops, ranks_bad = report.tokens, report.flops, float(bad is not None)
            if world.size > 1:
                # The budget counts the work of all ranks.
                tokens, flops, ranks_bad = distributed.sum_over_ranks([tokens, flops, ranks_bad])
            clock.record_step(int(tokens), flops)
            last_logs = report.logs
            if bad:
                raise Diverged(bad)
            if ranks_bad:
                raise Diverged("a training log is not finite on another data-parallel rank")
            if main and (clock.steps % options.log_every == 0 or clock.steps == 1):
                log_handle.write(json.dumps({"step": clock.steps, "seconds": clock.elapsed(),
                                             "progress": clock.progress(), **report.logs}) + "\n")
            bar.n = round(100 * clock.progress())
            bar.set_postfix_str(f"step {clock.steps}", refresh=False)
            bar.update(0)
            checkpoint_due = time.monotonic() - last_checkpoint >= options.checkpoint_every_s
            stop, progress, checkpoint_due = _decide(world, clock, checkpoint_due)
            if checkpoint_due:
                clock.pause()
                log_handle.flush()
                _save_checkpoint(run, variant, clock)
                last_checkpoint = time.monotonic()
                clock.start()
        clock.pause()
    except Diverged as err:
        clock.pause()
        status, reason, failed_step = "diverged", err.reason, clock.steps
    except (KeyboardInterrupt, GanbenchError):
        raise
    except Exception as err:  # a bug or resource error: recorded, the suite goes on
        clock.pause()
        status, reason, failed_step = "failed", f"{type(err).__name__}: {err}", clock.steps
        error_file = "error.txt" if main else f"error_rank{world.rank}.txt"
        run.run_dir.mkdir(parents=True, exist_ok=True)
        (run.run_dir / error_file).write_text(traceback.format_exc())
    finally:
        bar.close()
        log_handle.close()
    train_seconds = clock.elapsed()

    ranks_in_sync = None
    if world.size > 1:
        # After a failure the ranks are at different collectives: only the others' exits (and
        # torchrun stopping the rest) can end them, so no more collectives then.
        if status != "failed":
            ranks_in_sync = _ranks_agree(variant)
            if not ranks_in_sync and status == "ok":
                status, reason = "failed", "the data-parallel ranks ended with different states"
        distributed.leave()
        if not main:
            return {"status": status, "rank": world.rank, "reason": reason,
                    "failed_at_step": failed_step, "budget": clock.summary(), "metrics": {}}

    metrics: dict[str, Any] = {}
    curve: list = []
    samples: list[str] = []
    eval_timings: dict[str, Any] = {}
    eval_started = time.perf_counter()
    if status == "ok":
        try:
            metrics, curve, samples, eval_timings = evaluate_variant(
                variant, run.corpus, run.eval_config, run.spec.seed,
                None if options.quiet else status_lines(sys.stderr))
            metrics["train_tokens_per_s"] = clock.tokens / max(train_seconds, 1e-9)
            records.write_text_atomic(run.run_dir / SAMPLES_FILE,
                                      "".join(s + "\n" for s in samples))
            variant.save_artifacts(run.run_dir / "artifacts")
        except (KeyboardInterrupt, GanbenchError):
            raise
        except Exception as err:
            status, reason = "failed", f"evaluation: {type(err).__name__}: {err}"
            (run.run_dir / "error.txt").write_text(traceback.format_exc())
    eval_seconds = time.perf_counter() - eval_started

    record = {
        "schema": records.SCHEMA_VERSION,
        "run": run.spec.run_name(),
        "variant": run.spec.variant,
        "label": run.spec.display_label(),
        "config": config_to_dict(run.config),
        "overrides": run.spec.overrides,
        "dataset": {**run.corpus.describe(), "argument": run.spec.dataset,
                    "train_subsample": run.spec.train_subsample},
        "seed": run.spec.seed,
        "budget": clock.summary(),
        "status": status,
        "reason": reason,
        "failed_at_step": failed_step,
        "resumed_from_step": resumed_from,
        "metrics": metrics,
        "curve": curve,
        "last_train_logs": last_logs,
        "evaluation": config_to_dict(run.eval_config),
        "timings": {"train_seconds": train_seconds, "eval_seconds": eval_seconds,
                    **eval_timings},
        "environment": {**records.environment(run.device), "world_size": world.size,
                        **({"ranks_in_sync": ranks_in_sync} if world.size > 1 else {})},
        "started_at": started_at,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "samples": samples,
    }
    records.write_json_atomic(record_path, record)
    # The record is final: the checkpoint is only for resuming and can go.
    checkpoint_path.unlink(missing_ok=True)
    return record


def run_one(spec: RunSpec, options: RunOptions, corpus: Corpus | None = None) -> dict[str, Any]:
    return execute(prepare(spec, options, corpus), options)


def remove_run(run_dir: Path) -> None:
    shutil.rmtree(run_dir, ignore_errors=True)
