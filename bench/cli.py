"""The `ganbench` command: list, run, score, report, suite."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import GanbenchError


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line, like every other error of the command."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"ganbench: error: {self.prog}: {message}\n")


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder laid out like ../shared/data (default: $GANBENCH_DATA, "
                             "then ../shared/data, then the download cache)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's; use 1 per process when "
                             "several runs share the cores)")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                     argparse.RawDescriptionHelpFormatter):
    """Defaults after each option's help (unless it says its own, or there is none to say);
    the catalogue epilogs keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


@dataclass(frozen=True)
class CorpusKind:
    """What ``Variant.corpus_defaults`` reads of a corpus: only whether it is the oracle."""

    is_oracle: bool


def oracle_defaults(variant: Any) -> dict[str, Any]:
    """The config values a variant takes on the oracle instead of its dataclass defaults."""
    try:
        return dict(variant.corpus_defaults(CorpusKind(is_oracle=True)))
    except AttributeError:  # a third-party variant that reads more of the corpus
        return {}


def variants_epilog() -> str:
    from bench.registry import discover

    lines = ["variants (every config field and default: ganbench list):"]
    for name, variant in sorted(discover().items()):
        lines.append(f"  {name}: {variant.description}")
    return "\n".join(lines)


def suites_epilog() -> str:
    from bench.suite import shipped_suites

    lines = ["shipped suites (bench/suites/):"]
    for name, path in shipped_suites().items():
        description = ""
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("description"):
                description = line.split("=", 1)[1].strip().strip('"')
                break
        lines.append(f"  {name}: {description}")
    return "\n".join(lines)


def _build_parser(catalogues: bool = False) -> argparse.ArgumentParser:
    """``catalogues``: list the variants and suites in --help (imports every variant, so only
    when help is asked for)."""
    from bench.evaluation import EvalConfig

    parser = _Parser(prog="ganbench", description=(
        "Train registered text-generator variants under fixed compute budgets and measure them "
        "the same way (METRICS.md)."))
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("list", help="variants with their config fields, and corpora")

    run = commands.add_parser("run", help="train one variant on one corpus within a budget",
                              formatter_class=_HelpFormatter,
                              epilog=variants_epilog() if catalogues else None)
    run.add_argument("--variant", required=True, help="a registered variant (listed below)")
    run.add_argument("--dataset", required=True,
                     help="oracle, coco, news, chinese_poems, or a path to a text file/folder")
    run.add_argument("--budget", required=True, help="30s, 10min, 2000steps or 1e13flops")
    run.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    run.add_argument("--out", type=Path, default=Path("runs"), help="parent folder of run dirs")
    run.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="FIELD=VALUE", help="override a variant config field (repeatable)")
    run.add_argument("--eval", dest="eval_overrides", action="append", default=[],
                     metavar="FIELD=VALUE",
                     help="override an evaluation setting "
                          f"({', '.join(EvalConfig.__annotations__)})")
    run.add_argument("--num-samples", type=int, default=None,
                     help="sentences sampled for the metrics (default 1000, capped at the test "
                          "size; 5000 for the papers' tables)")
    run.add_argument("--train-subsample", type=int, default=0,
                     help="low-resource run: use K training sentences (0 = all)")
    run.add_argument("--no-resume", action="store_true",
                     help="ignore a checkpoint left by an interrupted run of the same spec, and "
                          "train again over a finished one")
    run.add_argument("--force", action="store_true",
                     help="train again even if this spec's run is already complete (by "
                          "default a complete run is kept and its record shown)")
    run.add_argument("--checkpoint-every", type=float, default=60.0,
                     help="seconds between resumable checkpoints (default 60)")
    run.add_argument("--label", default="",
                     help="the row name in tables (default: the variant and its overrides)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_run_arguments(run)

    report = commands.add_parser("report", help="tables (and plots) from the records under DIR")
    report.add_argument("directory", type=Path)
    report.add_argument("--out", type=Path, default=None, help="where to write (default: DIR)")
    report.add_argument("--no-plots", action="store_true")

    score = commands.add_parser("score", help="metrics of any file of samples, as JSON")
    what = score.add_mutually_exclusive_group(required=True)
    what.add_argument("--samples", type=Path)
    what.add_argument("--real-text", action="store_true",
                      help="the real-text reference: half of the --dataset's test split scored "
                           "against the other half (--num-samples of them)")
    score.add_argument("--num-samples", type=int, default=1000,
                       help="--real-text: sentences scored (default 1000)")
    score.add_argument("--embeddings", action="store_true",
                       help="--real-text: also the distribution metrics (MiniLM, MAUVE)")
    source = score.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="score against this corpus's test split")
    source.add_argument("--refs", type=Path, help="score against this file of references")
    score.add_argument("--data-dir", type=Path, default=None)
    score.add_argument("--disc-acc", action="store_true",
                       help="also train the fresh classifier (disc_acc) against the references")
    score.add_argument("--seed", type=int, default=0)

    suite = commands.add_parser("suite", help="run a suite file (variants x corpora x seeds x "
                                              "budgets); re-running resumes",
                                formatter_class=_HelpFormatter,
                                epilog=suites_epilog() if catalogues else None)
    suite.add_argument("suite", help="a shipped suite name (listed below) or a TOML file")
    suite.add_argument("--out", type=Path, required=True,
                       help="folder of the run folders and the report")
    suite.add_argument("--executor", default="local", choices=["local", "ray"],
                       help="local: one run after another; ray: runs as Ray tasks")
    suite.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_run_arguments(suite)
    return parser


def _kind(row: dict[str, str]) -> str:
    """A field's type, with the interval its values must lie in: 'int in [1, inf)'."""
    return f"{row['type']} in {row['bounds']}" if row["bounds"] else row["type"]


def cmd_list() -> int:
    from bench.config import describe_fields
    from bench.corpora import corpus_names
    from bench.evaluation import EvalConfig
    from bench.registry import discover

    print("Config defaults; where the oracle takes another value, it is shown as 'oracle: X'.")
    for name, variant in sorted(discover().items()):
        print(f"{name}: {variant.description}")
        on_oracle = oracle_defaults(variant)
        for row in describe_fields(variant.Config):
            default = row["default"]
            if row["name"] in on_oracle:
                default += f"; oracle: {on_oracle[row['name']]!r}"
            print(f"    {row['name']} ({_kind(row)}, default {default}): {row['help']}")
    print("evaluation settings (--eval FIELD=VALUE):")
    for row in describe_fields(EvalConfig):
        print(f"    {row['name']} ({_kind(row)}, default {row['default']}): {row['help']}")
    print(f"corpora: {', '.join(corpus_names())}, or a path to a text file or train/test folder")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bench.config import parse_assignments
    from bench.runner import RunOptions, RunSpec, execute_locked, prepare

    evaluation = parse_assignments(args.eval_overrides)
    if args.num_samples is not None:
        evaluation["num_samples"] = args.num_samples
    if args.train_subsample < 0:
        raise GanbenchError("--train-subsample must be >= 0")
    spec = RunSpec(args.variant, args.dataset, args.budget, args.seed,
                   parse_assignments(args.overrides), evaluation, args.train_subsample,
                   args.label)
    options = RunOptions(out_dir=args.out, data_dir=args.data_dir, device=args.device,
                         resume=not args.no_resume, checkpoint_every_s=args.checkpoint_every,
                         quiet=args.quiet)
    run = prepare(spec, options)
    path = run.run_dir / "record.json"
    from bench.records import load_record, record_complete

    if options.resume and not args.force and record_complete(run.run_dir):
        # Like suite: a finished run is kept, never silently trained and overwritten.
        print(f"ganbench: {path} is complete; kept (--force trains it again)",
              file=sys.stderr)
        record = load_record(path)
    else:
        record = execute_locked(run, options)
    if record["status"] != "ok":
        print(f"ganbench: run {record['status']} at step {record['failed_at_step']}: "
              f"{record['reason']} (record: {path})", file=sys.stderr)
        return 1
    shown = {k: round(v, 4) if isinstance(v, float) else v
             for k, v in record["metrics"].items()}
    print(json.dumps({"record": str(path), "budget": record["budget"]["given"],
                      "steps": record["budget"]["steps"], "metrics": shown}, indent=1))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import write_report

    written = write_report(args.directory, args.out, plots=not args.no_plots)
    for path in written:
        print(path)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from bench.scoring import score_file, score_real_text

    if args.real_text:
        if args.dataset is None:
            raise GanbenchError("--real-text needs --dataset")
        result = score_real_text(args.dataset, args.num_samples, args.data_dir,
                                 with_disc_acc=args.disc_acc, with_embeddings=args.embeddings,
                                 seed=args.seed)
    else:
        result = score_file(args.samples, dataset=args.dataset, refs=args.refs,
                            data_dir=args.data_dir, with_disc_acc=args.disc_acc, seed=args.seed)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    return 0


def cmd_suite(args: argparse.Namespace) -> int:
    from bench.suite import run_suite

    return run_suite(args.suite, args.out, data_dir=args.data_dir, device=args.device,
                     executor=args.executor, quiet=args.quiet)


def _set_threads(threads: int | None) -> None:
    from bench.guards import check_threads

    check_threads(threads)
    if threads:
        import torch

        torch.set_num_threads(threads)


VALUE_OPTIONS = ("--budget", "--seed", "--num-samples", "--train-subsample", "--threads",
                 "--checkpoint-every")


def _join_negative_values(arguments: list[str]) -> list[str]:
    """``--budget -5s`` as ``--budget=-5s``: argparse takes any '-' word but a plain negative
    number for an option and says only "expected one argument"; joined, the value reaches
    its own check and gets its own error."""
    joined, index = [], 0
    while index < len(arguments):
        word = arguments[index]
        following = arguments[index + 1] if index + 1 < len(arguments) else None
        if word in VALUE_OPTIONS and following is not None and following.startswith("-") \
                and following[1:2].isdigit():
            joined.append(f"{word}={following}")
            index += 2
            continue
        joined.append(word)
        index += 1
    return joined


def main(argv: list[str] | None = None) -> int:
    # Hub look-ups hang for 46 s before failing offline; nothing here needs the hub unless a
    # user names a hub model, and then they set HF_HUB_OFFLINE=0 themselves.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    arguments = _join_negative_values(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(catalogues=bool({"-h", "--help"} & set(arguments)))
    args = parser.parse_args(arguments)
    handlers = {"list": lambda: cmd_list(), "run": lambda: cmd_run(args),
                "report": lambda: cmd_report(args), "score": lambda: cmd_score(args),
                "suite": lambda: cmd_suite(args)}
    try:
        _set_threads(getattr(args, "threads", None))
        return handlers[args.command]()
    except GanbenchError as err:
        print(f"ganbench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ganbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
