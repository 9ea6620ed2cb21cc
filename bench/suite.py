"""Suites: variants x corpora x seeds x budgets from a TOML file, run resumably.

Re-running a suite into the same folder skips runs whose record is complete and resumes the
others from their last checkpoint; a run that diverges or fails is recorded and the suite goes
on. Every run is validated (variant, config overrides, budget, corpus) before the first starts.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import build_config

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from bench.corpora import load_corpus
from bench.errors import GanbenchError
from bench.evaluation import EvalConfig
from bench.guards import (
    check_output_folder,
    check_positive_seconds,
    check_seed,
    check_train_subsample,
)
from bench.records import record_complete
from bench.registry import discover
from bench.runner import PreparedRun, RunOptions, RunSpec, execute, prepare, try_claim_run_dir

SUITE_KEYS = {"name", "description", "variants", "datasets", "seeds", "budgets",
              "evaluation", "config", "train_subsample", "checkpoint_every", "runs", "label"}


@dataclass
class Suite:
    name: str
    runs: list[RunSpec]
    description: str = ""
    checkpoint_every_s: float = 60.0
    source: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def shipped_suites() -> dict[str, Path]:
    folder = Path(__file__).parent / "suites"
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def _as_list(value: Any, key: str, kind: type) -> list:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
            raise GanbenchError(f"suite key {key!r} must hold {kind.__name__} values, not {v!r}")
    return values


def _specs_from_block(block: dict[str, Any], defaults: dict[str, Any], where: str
                      ) -> list[RunSpec]:
    unknown = set(block) - SUITE_KEYS
    if unknown:
        raise GanbenchError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    merged = {**defaults, **block}
    for key in ("variants", "datasets", "budgets"):
        if key not in merged:
            raise GanbenchError(f"{where}: missing {key!r}")
    variants = _as_list(merged["variants"], "variants", str)
    datasets = _as_list(merged["datasets"], "datasets", str)
    budgets = [str(b) for b in _as_list(merged["budgets"], "budgets", (str, int, float))]
    seeds = _as_list(merged.get("seeds", [0]), "seeds", int)
    subsamples = _as_list(merged.get("train_subsample", 0), "train_subsample", int)
    evaluation = merged.get("evaluation", {})
    config = merged.get("config", {})
    if not isinstance(evaluation, dict) or not isinstance(config, dict):
        raise GanbenchError(f"{where}: 'evaluation' and 'config' must be tables")
    specs = []
    for variant in variants:
        overrides = config.get(variant, {})
        if not isinstance(overrides, dict):
            raise GanbenchError(f"{where}: config.{variant} must be a table")
        for dataset in datasets:
            for budget in budgets:
                for k in subsamples:
                    for seed in seeds:
                        specs.append(RunSpec(variant, dataset, budget, seed, dict(overrides),
                                             dict(evaluation), k, str(block.get("label", ""))))
    return specs


def load_suite(name_or_file: str) -> Suite:
    """Parse and validate a suite; one clear error for anything wrong in it."""
    shipped = shipped_suites()
    path = shipped.get(name_or_file) or Path(name_or_file)
    if not path.is_file():
        raise GanbenchError(f"unknown suite {name_or_file!r}: shipped are "
                            f"{', '.join(shipped)}, or give a .toml file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise GanbenchError(f"{path}: not valid TOML ({err})") from None
    unknown = set(data) - SUITE_KEYS
    if unknown:
        raise GanbenchError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    defaults = {k: v for k, v in data.items() if k not in ("name", "description", "runs",
                                                            "checkpoint_every", "label")}
    specs: list[RunSpec] = []
    blocks = data.get("runs")
    if blocks is None:
        specs = _specs_from_block(defaults, {}, str(path))
    else:
        if not isinstance(blocks, list):
            raise GanbenchError(f"{path}: 'runs' must be an array of tables ([[runs]])")
        for i, block in enumerate(blocks):
            specs += _specs_from_block(block, defaults, f"{path} [[runs]] #{i + 1}")
    if not specs:
        raise GanbenchError(f"{path}: the suite holds no runs")
    validate_specs(specs, str(path))
    every = data.get("checkpoint_every", 60.0)
    try:
        check_positive_seconds(every, "checkpoint_every")
    except GanbenchError as err:
        raise GanbenchError(f"{path}: {err}") from None
    return Suite(str(data.get("name", path.stem)), specs, str(data.get("description", "")),
                 float(every), path)


def validate_specs(specs: list[RunSpec], where: str) -> None:
    from bench.budget import Budget
    from bench.corpora import NAMED_CORPORA, ORACLE_NAMES

    variants = discover()
    for spec in specs:
        prefix = f"{where}: {spec.variant}/{spec.dataset}"
        if spec.variant not in variants:
            raise GanbenchError(f"{where}: unknown variant {spec.variant!r}; registered are "
                                f"{', '.join(sorted(variants))}")
        try:
            check_seed(spec.seed)
            check_train_subsample(spec.train_subsample)
            Budget.parse(spec.budget)
            build_config(variants[spec.variant].Config, spec.overrides)
            build_config(EvalConfig, spec.evaluation)
        except GanbenchError as err:
            raise GanbenchError(f"{prefix}: {err}") from None
        if spec.dataset not in (*ORACLE_NAMES, *NAMED_CORPORA) and not Path(spec.dataset).exists():
            raise GanbenchError(f"{prefix}: unknown corpus {spec.dataset!r}")


def prepare_all(suite: Suite, options: RunOptions, data_dir: Path | None
                ) -> list[PreparedRun]:
    """Every run checked (corpus, config, sizes) before the first one writes anything; each
    corpus is read once."""
    corpora: dict[str, Any] = {}
    prepared = []
    for spec in suite.runs:
        if spec.dataset not in corpora:
            corpora[spec.dataset] = load_corpus(spec.dataset, data_dir)
        try:
            prepared.append(prepare(spec, options, corpora[spec.dataset]))
        except GanbenchError as err:
            raise GanbenchError(f"{spec.run_name()}: {err}") from None
    return prepared


def eta_text(run_seconds: list[float], remaining: int) -> str:
    """'; ETA ...' for the runs after this one and this one, from the mean run so far."""
    if not run_seconds:
        return ""
    seconds = (remaining + 1) * sum(run_seconds) / len(run_seconds)
    minutes, seconds = divmod(round(seconds), 60)
    return f"; ETA {minutes} min {seconds:02d} s"


def run_suite(name_or_file: str, out: Path, data_dir: Path | None = None, device: str = "auto",
              executor: str = "local", quiet: bool = False) -> int:
    suite = load_suite(name_or_file)
    out = Path(out)
    check_output_folder(out)
    if executor == "ray":
        from bench.ray_executor import run_suite_on_ray

        return run_suite_on_ray(suite, out, data_dir=data_dir, device=device)
    options = RunOptions(out_dir=out, data_dir=data_dir, device=device, resume=True,
                         checkpoint_every_s=suite.checkpoint_every_s, quiet=quiet)
    prepared = prepare_all(suite, options, data_dir)
    total = len(prepared)
    failures = 0
    started = time.perf_counter()
    run_seconds: list[float] = []  # runs executed here (skipped ones cost nothing)
    for index, run in enumerate(prepared, start=1):
        label = f"[{index}/{total}] {run.spec.run_name()}"
        claim = try_claim_run_dir(run)
        if claim is None:
            print(f"{label}: another process is running it, skipped", file=sys.stderr,
                  flush=True)
            continue
        with claim:
            if record_complete(run.run_dir):
                print(f"{label}: complete, skipped", file=sys.stderr, flush=True)
                continue
            print(f"{label}: running ({total - index} after it"
                  f"{eta_text(run_seconds, total - index)})", file=sys.stderr, flush=True)
            run_started = time.perf_counter()
            record = execute(run, options)
            run_seconds.append(time.perf_counter() - run_started)
        if record["status"] != "ok":
            failures += 1
        metrics = record["metrics"]
        summary = ", ".join(f"{k}={metrics[k]:.3f}" for k in ("bleu_5", "self_bleu_5",
                                                              "nll_test") if k in metrics)
        print(f"{label}: {record['status']} in {record['budget']['steps']} steps"
              f"{'; ' + summary if summary else ''}"
              f"{'; ' + str(record['reason']) if record['reason'] else ''}",
              file=sys.stderr, flush=True)
    print(f"suite {suite.name}: {total} runs, {failures} not ok, "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    from bench.report import write_report
    from bench.scoring import write_real_text_rows

    write_real_text_rows(suite.runs, out, data_dir)

    for path in write_report(out):
        print(path)
    return 0
