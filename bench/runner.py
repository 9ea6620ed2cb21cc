"""One benchmark run: resolve inputs, train inside the budget, evaluate, write the record.

Everything that can be wrong with the input is checked before the run directory is touched. A
run's record.json is written once, atomically, at the end; a run killed at any moment leaves
either no record or its previous complete one, plus a checkpoint to resume from.
"""

from __future__ import annotations

import contextlib
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

from bench import accelerator, distributed, guards, locks, records
from bench.budget import Budget, BudgetClock
from bench.checkpoint import check_fits, clean_stale_temporaries, load_state, save_state
from bench.config import build_config, config_to_dict
from bench.corpora import Corpus, load_corpus
from bench.distributed import World
from bench.divergence import nll_divergence
from bench.errors import Diverged, GanbenchError, StepAbandoned
from bench.evaluation import EvalConfig, evaluate_variant, status_lines
from bench.registry import get_variant
from bench.selection import Selection, copy_weights
from bench.step_values import PendingSteps, StepValues
from bench.variant import StepReport, Variant

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
    usage = "use auto, cpu, cuda or cuda:N"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise GanbenchError(f"bad device {name!r}: {usage}") from None
    if device.type not in ("cpu", "cuda"):
        raise GanbenchError(f"device {name!r} is not supported: {usage}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GanbenchError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise GanbenchError(f"device {name!r}: this machine has {torch.cuda.device_count()} "
                            f"CUDA device(s)")
    return device


def check_writable(directory: Path) -> None:
    """Refuses an output folder that is a file or cannot be written; creates nothing."""
    guards.check_output_folder(directory)


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
    guards.check_seed(spec.seed)
    guards.check_train_subsample(spec.train_subsample)
    # 0 = a checkpoint after every step
    guards.check_positive_seconds(options.checkpoint_every_s, "checkpoint interval",
                                  allow_zero=True)
    eval_config = build_config(EvalConfig, spec.evaluation)
    guards.check_eval_config(eval_config)
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
    guards.check_corpus_size(corpus)
    config = build_config(variant_class.Config, spec.overrides,
                          base=variant_class.corpus_defaults(corpus))
    guards.check_config(config)
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


def _save_checkpoint(run: PreparedRun, variant: Variant, clock: BudgetClock,
                     selection: Selection) -> None:
    """Written by rank 0; with several ranks a collective (they all checkpoint the same step),
    because rank 0's file also keeps every rank's own random streams."""
    variant_state = variant.state_dict()
    state = {
        "variant": variant_state,
        "clock": clock.state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": _cuda_rng(run.device),
        "config": config_to_dict(run.config),
        "spec": dataclasses.asdict(run.spec),
        "selection": selection.state(),
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


@dataclass
class TrainOutcome:
    """How the train loop ended: status ok/diverged/failed, why, and at which step."""

    status: str = "ok"
    reason: str | None = None
    failed_step: int | None = None
    last_logs: dict[str, float] = field(default_factory=dict)


@dataclass
class EvalOutcome:
    metrics: dict[str, Any] = field(default_factory=dict)
    curve: list = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _open_run_dir(run: PreparedRun) -> None:
    """Make the run directory; a stale record must not read as this run's result if it dies."""
    if run.world.is_main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        (run.run_dir / records.RECORD_FILE).unlink(missing_ok=True)
    distributed.join(run.world, run.device)


def _build_variant(run: PreparedRun) -> tuple[Variant, float]:
    """The variant and the seconds its construction took (tokenizer training, corpus encoding,
    a source variant): those count in seconds budgets."""
    # The first optimiser a process builds imports torch._dynamo (seconds), and the first
    # GPT-2 run imports transformers: one-offs of the process, not this variant's work, so
    # they are paid before the construction clock starts.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    run.variant_class.import_libraries(run.config)
    construction = BudgetClock(run.budget, run.device, world_size=run.world.size)
    construction.start()
    torch.manual_seed(run.spec.seed)
    variant = run.variant_class(run.config, run.corpus, run.device, run.spec.seed)
    construction.pause()
    if run.world.size > 1:
        # Weights are the same on every rank; dropout masks must not be.
        torch.manual_seed(distributed.rank_seed(run.spec.seed, run.world.rank))
    return variant, construction.seconds


def _resume(run: PreparedRun, options: RunOptions, variant: Variant,
            construction_seconds: float, selection: Selection
            ) -> tuple[BudgetClock, int | None]:
    """The clock to train on and the step resumed from (None for a fresh start): restores the
    variant, clock and random streams from the checkpoint if there is one and resuming is on;
    with resuming off, drops any old checkpoint and log. A fresh clock is charged the
    construction; a resumed one already holds the first construction's charge."""
    world = run.world
    checkpoint_path = run.run_dir / CHECKPOINT_FILE
    clock = BudgetClock(run.budget, run.device, world_size=world.size)
    resumed_from = None
    clock.charge_construction(construction_seconds)
    if options.resume and checkpoint_path.exists():
        state = load_state(checkpoint_path)
        if state.get("config") != config_to_dict(run.config):
            raise GanbenchError(f"{checkpoint_path}: written with another config; "
                                "delete it or use --no-resume")
        written_by = int(state.get("world_size", 1))
        if written_by != world.size:
            raise GanbenchError(f"{checkpoint_path}: written by {written_by} process(es), not "
                                f"{world.size}; resume with as many or use --no-resume")
        check_fits(checkpoint_path, state,
                   _shared_state(variant) if world.size > 1 else variant.state_dict())
        variant_state, random_state = state["variant"], state
        if world.size > 1:
            random_state = state["ranks"][world.rank]
            variant_state = {**variant_state, **random_state["variant"]}
        variant.load_state_dict(variant_state)
        clock = BudgetClock(run.budget, run.device, world_size=world.size, **state["clock"])
        if state.get("selection") is not None:
            selection.load_state(state["selection"])
        torch.set_rng_state(random_state["torch_rng"])
        if random_state.get("cuda_rng") is not None and run.device.type == "cuda":
            torch.cuda.set_rng_state(random_state["cuda_rng"], run.device)
        resumed_from = clock.steps
        if world.is_main:
            _truncate_log(run.run_dir / TRAIN_LOG_FILE, clock.steps)
    elif not options.resume and world.is_main:
        checkpoint_path.unlink(missing_ok=True)
        (run.run_dir / TRAIN_LOG_FILE).unlink(missing_ok=True)
    if world.size > 1 and not _ranks_agree(variant):
        raise GanbenchError("the data-parallel ranks built different variants (weights, "
                            "tokenizers or samplers differ); is the corpus the same on all?")
    return clock, resumed_from


def _count_step(run: PreparedRun, clock: BudgetClock, report: StepReport,
                pending: PendingSteps, outcome: TrainOutcome) -> None:
    """Charge one step to the clock and queue its values (bench.step_values). A single process
    reads them later, at its sync points; data-parallel ranks read them now, since every rank
    must stop at the same step when any diverges (raises Diverged on every rank)."""
    pending.add(clock.steps + 1, report)
    tokens, flops, bad, ranks_bad = report.tokens, report.flops, None, 0.0
    if run.world.size > 1:
        values = pending.drain()
        bad, _ = _first_divergence(values)
        # The budget counts the work of all ranks.
        tokens, flops, ranks_bad = distributed.sum_over_ranks([tokens, flops,
                                                                float(bad is not None)])
        if not bad:
            outcome.last_logs = values[-1].logs
    clock.record_step(int(tokens), flops, report.generator_updates,
                      report.discriminator_updates)
    if bad:
        raise Diverged(bad)
    if ranks_bad:
        raise Diverged("a training log is not finite, or a loss diverged, on another "
                       "data-parallel rank")


def _first_divergence(values: list[StepValues]) -> tuple[str | None, int | None]:
    """(why, at which step) the first diverged step of ``values`` diverged (one of the
    variant's checks failed, a log not finite, or the MLE loss past its bound,
    bench.divergence), or (None, None)."""
    for step in values:
        bad = (step.failure() or _finite_logs(step.logs)
               or nll_divergence(step.nll, step.nll_vocab_size, step.step))
        if bad:
            return bad, step.step
    return None, None


def _read_steps(pending: PendingSteps, outcome: TrainOutcome) -> None:
    """Read the pending steps' values and check them in step order (raises Diverged at the
    first bad one); the last one's logs become the outcome's."""
    values = pending.drain()
    bad, step = _first_divergence(values)
    if bad:
        raise Diverged(bad, step)
    if values:
        outcome.last_logs = values[-1].logs


def _log_step(log_handle, clock: BudgetClock, logs: dict[str, float]) -> None:
    log_handle.write(json.dumps({"step": clock.steps, "seconds": clock.elapsed(),
                                 "progress": clock.progress(), **logs}) + "\n")


def _validate(run: PreparedRun, variant: Variant, clock: BudgetClock, selection: Selection,
              log_handle, progress: float) -> None:
    """A validation point off the budget's clock (METRICS.md), logged beside training."""
    if not run.world.is_main or not run.corpus.valid:
        return
    clock.pause()
    point = selection.measure(variant, run.corpus, clock.steps, progress)
    if point is not None:
        log_handle.write(json.dumps({"step": point.step, "seconds": clock.elapsed(),
                                     "progress": point.progress, "valid/nll": point.valid_nll,
                                     "valid/phase": point.phase}) + "\n")
    clock.start()


def _train_loop(run: PreparedRun, options: RunOptions, variant: Variant, clock: BudgetClock,
                outcome: TrainOutcome, log_handle, selection: Selection) -> None:
    """Call train_step until the budget is spent, logging, validating and checkpointing on the
    way."""
    world, main = run.world, run.world.is_main
    bar = _progress_bar(run, options.quiet or not main)
    last_checkpoint = time.monotonic()
    logged_step = 0
    kernels = accelerator.attention_kernels(run.device)
    pending = PendingSteps()  # step values still on the device (bench.step_values)
    try:
        kernels.__enter__()
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
            _count_step(run, clock, report, pending, outcome)
            if main and (clock.steps % options.log_every == 0 or clock.steps == 1):
                _read_steps(pending, outcome)
                _log_step(log_handle, clock, outcome.last_logs)
                logged_step = clock.steps
            bar.n = round(100 * clock.progress())
            bar.set_postfix_str(f"step {clock.steps}", refresh=False)
            bar.update(0)
            checkpoint_due = time.monotonic() - last_checkpoint >= options.checkpoint_every_s
            stop, progress, checkpoint_due = _decide(world, clock, checkpoint_due)
            if not stop and selection.due(progress):
                _read_steps(pending, outcome)  # no validation of a diverged generator
                _validate(run, variant, clock, selection, log_handle, progress)
            if checkpoint_due:
                clock.pause()
                _read_steps(pending, outcome)  # no checkpoint of a diverged generator
                log_handle.flush()
                _save_checkpoint(run, variant, clock, selection)
                last_checkpoint = time.monotonic()
                clock.start()
        clock.pause()
        _read_steps(pending, outcome)
        if main and clock.steps and logged_step != clock.steps:
            # The last step is always in the log, whatever the cadence.
            _log_step(log_handle, clock, outcome.last_logs)
    finally:
        kernels.__exit__(None, None, None)
        bar.close()


def _train(run: PreparedRun, options: RunOptions, variant: Variant,
           clock: BudgetClock, selection: Selection) -> TrainOutcome:
    """Train inside the budget; a divergence or an unexpected error becomes the outcome's
    status (the suite goes on), bad input and interrupts propagate. A run that ends ok gets
    its final validation point."""
    outcome = TrainOutcome()
    main = run.world.is_main
    log_path = run.run_dir / TRAIN_LOG_FILE if main else Path(os.devnull)
    with log_path.open("a", encoding="utf-8") as log_handle:
        try:
            _train_loop(run, options, variant, clock, outcome, log_handle, selection)
            if selection.points > 0:
                _validate(run, variant, clock, selection, log_handle, 1.0)
                clock.pause()
        except Diverged as err:
            clock.pause()
            outcome.status, outcome.reason, outcome.failed_step = (
                "diverged", err.reason, err.step or clock.steps)
        except (KeyboardInterrupt, GanbenchError):
            raise
        except Exception as err:  # a bug or resource error: recorded, the suite goes on
            clock.pause()
            outcome.status, outcome.failed_step = "failed", clock.steps
            outcome.reason = f"{type(err).__name__}: {err}"
            error_file = "error.txt" if main else f"error_rank{run.world.rank}.txt"
            run.run_dir.mkdir(parents=True, exist_ok=True)
            (run.run_dir / error_file).write_text(traceback.format_exc())
    if outcome.status == "ok":
        # Evaluation is the longest phase: a run killed during it resumes here, untrained.
        _save_checkpoint(run, variant, clock, selection)
    return outcome


def _leave_ranks(run: PreparedRun, variant: Variant, outcome: TrainOutcome) -> bool | None:
    """With several ranks: check they ended in one state (a failed run skips the collective:
    after a failure the ranks are at different collectives, and only the others' exits can end
    them) and leave the group. Returns whether they agree (None in one process)."""
    if run.world.size == 1:
        return None
    ranks_in_sync = None
    if outcome.status != "failed":
        ranks_in_sync = _ranks_agree(variant)
        if not ranks_in_sync and outcome.status == "ok":
            outcome.status = "failed"
            outcome.reason = "the data-parallel ranks ended with different states"
    distributed.leave()
    return ranks_in_sync


def _select_generator(run: PreparedRun, variant: Variant, selection: Selection) -> None:
    """Loads the generator the selection rule picks; both the best and the last generator are
    kept in artifacts/selection/ (safetensors) when they differ."""
    module = variant.generator_module()
    last = copy_weights(module.state_dict(), "cpu") if module is not None else None
    if selection.apply(variant) is None or not selection.best:
        return
    from safetensors.torch import save_file

    folder = run.run_dir / "artifacts" / "selection"
    folder.mkdir(parents=True, exist_ok=True)
    save_file(last, str(folder / "last_generator.safetensors"))
    save_file(copy_weights(selection.best["weights"], "cpu"),
              str(folder / "best_valid_generator.safetensors"))


def _evaluate(run: PreparedRun, variant: Variant, clock: BudgetClock, train_seconds: float,
              outcome: TrainOutcome, quiet: bool, selection: Selection) -> EvalOutcome:
    """Metrics, curve and samples of a run that trained ok, of the generator the selection rule
    picks; writes samples and artifacts. An error here fails the run (outcome.status) instead
    of raising."""
    result = EvalOutcome()
    eval_started = time.perf_counter()
    if outcome.status == "ok":
        try:
            _select_generator(run, variant, selection)
            with accelerator.attention_kernels(run.device):
                result.metrics, result.curve, result.samples, result.timings = (
                    evaluate_variant(variant, run.corpus, run.eval_config, run.spec.seed,
                                     None if quiet else status_lines(sys.stderr)))
            result.metrics["train_tokens_per_s"] = clock.tokens / max(train_seconds, 1e-9)
            # METRICS.md, Throughput: counted FLOPs per device-second, against the peak.
            device_seconds = max(clock.device_seconds(), 1e-9)
            result.metrics["train_tflops_per_s"] = clock.flops / device_seconds / 1e12
            result.metrics["mfu"] = accelerator.model_flops_utilisation(
                clock.flops, device_seconds, run.device)
            records.write_text_atomic(run.run_dir / SAMPLES_FILE,
                                      "".join(s + "\n" for s in result.samples))
            variant.save_artifacts(run.run_dir / "artifacts")
        except (KeyboardInterrupt, GanbenchError):
            raise
        except Exception as err:
            outcome.status = "failed"
            outcome.reason = f"evaluation: {type(err).__name__}: {err}"
            (run.run_dir / "error.txt").write_text(traceback.format_exc())
    result.seconds = time.perf_counter() - eval_started
    return result


def _build_record(run: PreparedRun, clock: BudgetClock, outcome: TrainOutcome,
                  evaluation: EvalOutcome, train_seconds: float, resumed_from: int | None,
                  ranks_in_sync: bool | None, started_at: str,
                  selection: Selection) -> dict[str, Any]:
    return {
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
        "status": outcome.status,
        "reason": outcome.reason,
        "failed_at_step": outcome.failed_step,
        "resumed_from_step": resumed_from,
        "metrics": evaluation.metrics,
        "curve": evaluation.curve,
        "selection": selection.summary(clock.steps),
        "validation": [vars(point) for point in selection.history],
        "last_train_logs": outcome.last_logs,
        "evaluation": config_to_dict(run.eval_config),
        "timings": {"train_seconds": train_seconds, "eval_seconds": evaluation.seconds,
                    "valid_seconds": selection.seconds,
                    **evaluation.timings},
        "environment": {**records.environment(run.device), "world_size": run.world.size,
                        **({"ranks_in_sync": ranks_in_sync} if run.world.size > 1 else {})},
        "started_at": started_at,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "samples": evaluation.samples,
    }


def _write_record(run: PreparedRun, record: dict[str, Any]) -> None:
    records.write_json_atomic(run.run_dir / records.RECORD_FILE, record)
    # The record is final: the checkpoint is only for resuming and can go.
    (run.run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)


def execute(run: PreparedRun, options: RunOptions) -> dict[str, Any]:
    """Train, evaluate and write the record; returns the record (status ok/diverged/failed).

    Under torchrun (bench/distributed.py) every rank trains; rank 0 alone writes files and
    evaluates, the other ranks return a record without metrics after training.
    """
    _open_run_dir(run)
    variant, construction_seconds = _build_variant(run)
    selection = Selection(run.eval_config.select, run.eval_config.valid_points)
    clock, resumed_from = _resume(run, options, variant, construction_seconds, selection)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    outcome = _train(run, options, variant, clock, selection)
    train_seconds = clock.elapsed()
    ranks_in_sync = _leave_ranks(run, variant, outcome)
    if not run.world.is_main:
        return {"status": outcome.status, "rank": run.world.rank, "reason": outcome.reason,
                "failed_at_step": outcome.failed_step, "budget": clock.summary(),
                "metrics": {}}
    evaluation = _evaluate(run, variant, clock, train_seconds, outcome,
                           quiet=options.quiet or not run.world.is_main, selection=selection)
    record = _build_record(run, clock, outcome, evaluation, train_seconds, resumed_from,
                           ranks_in_sync, started_at, selection)
    _write_record(run, record)
    return record


def try_claim_run_dir(run: PreparedRun):
    """A context holding the run folder's lock (bench/locks.py), with the temporaries of killed
    writes cleaned once it is held; None when another process holds it. Only the process that
    writes the folder locks it (rank 0 under torchrun)."""
    if not run.world.is_main:
        return contextlib.nullcontext()
    lock = locks.try_lock(run.run_dir)
    return None if lock is None else _holding(lock)


@contextlib.contextmanager
def _holding(lock: locks.RunLock):
    try:
        clean_stale_temporaries(lock.run_dir)
        yield lock
    finally:
        lock.release()


def claim_run_dir(run: PreparedRun):
    """try_claim_run_dir, or one line (RunLocked) if another process is writing the run."""
    claim = try_claim_run_dir(run)
    if claim is None:
        raise locks.RunLocked(f"{run.run_dir}: another ganbench process is writing this run "
                              f"now; wait for it to finish")
    return claim


def execute_locked(run: PreparedRun, options: RunOptions) -> dict[str, Any]:
    """execute() as the run folder's only writer; RunLocked if another process has it."""
    with claim_run_dir(run):
        return execute(run, options)


def run_one(spec: RunSpec, options: RunOptions, corpus: Corpus | None = None) -> dict[str, Any]:
    return execute_locked(prepare(spec, options, corpus), options)


def remove_run(run_dir: Path) -> None:
    shutil.rmtree(run_dir, ignore_errors=True)
