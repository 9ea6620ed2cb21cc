"""Reports: the records under a folder -> tables (Markdown, CSV, HTML) and PNG plots.

Each table row is one variant x dataset x budget: the mean over seeds with a 95% t-interval. A
column's best value is marked only where its interval separates it from every other row's
(METRICS.md: two variants are called different only where the intervals say so).
"""

from __future__ import annotations

import contextlib
import html
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import GanbenchError
from bench.records import RECORD_FILE, load_record, write_text_atomic

# Column -> +1 if higher is better, -1 if lower is better, 0 if neither (shown, never marked).
METRIC_COLUMNS: dict[str, int] = {
    **{f"bleu_{n}": 1 for n in range(2, 6)},
    **{f"self_bleu_{n}": -1 for n in range(2, 6)},
    "nll_oracle": -1, "nll_test": -1, "nll_test_per_word": -1,
    "disc_acc": -1,
    "sacrebleu": 1, "rouge_l": 1,
    **{f"distinct_{n}": 1 for n in range(1, 5)},
    "copy_rate": -1,
    "frechet_minilm": -1, "mauve": 1,
    "train_seconds": 0, "train_tokens_per_s": 0, "sample_tokens_per_s": 0,
}
GROUP_KEYS = ["dataset", "variant", "budget"]
# Speed columns: they differ between any two runs, even of one deterministic steps budget.
TIMING_METRICS = ("train_seconds", "train_tokens_per_s", "sample_tokens_per_s")


def is_timing_column(column: str) -> bool:
    """True for a speed column of a results table (its _low/_high interval columns too)."""
    return column.startswith(TIMING_METRICS)


def find_records(directory: Path) -> list[dict[str, Any]]:
    """All records under directory; every unreadable one is reported, and nothing is written."""
    directory = Path(directory)
    if not directory.is_dir():
        raise GanbenchError(f"{directory}: no such folder")
    paths = sorted(directory.rglob(RECORD_FILE))
    loaded, errors = [], []
    for path in paths:
        try:
            record = load_record(path)
        except GanbenchError as err:
            errors.append(str(err))
            continue
        problem = record_shape_problem(record)
        if problem:
            errors.append(f"{path}: {problem}")
            continue
        record["_path"] = str(path)
        loaded.append(record)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise GanbenchError(f"bad record, no report written: {errors[0]}{more}")
    if not loaded:
        raise GanbenchError(f"{directory}: no {RECORD_FILE} found under it")
    return loaded


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def record_shape_problem(record: dict[str, Any]) -> str | None:
    """What is wrong with a record's shape for the tables and plots, or None. Names (variant,
    label, dataset) may hold any text: they are rendered as data, never as markup or paths."""
    budget, dataset = record["budget"], record["dataset"]
    if not isinstance(record["variant"], str):
        return "variant must be a string"
    if record.get("label") is not None and not isinstance(record["label"], str):
        return "label must be a string"
    if not isinstance(dataset, dict) or not isinstance(dataset.get("name"), str):
        return "dataset must be an object with a string name"
    if isinstance(record["seed"], bool) or not isinstance(record["seed"], int):
        return f"seed must be a whole number, not {record['seed']!r}"
    if not isinstance(budget, dict) or not isinstance(budget.get("given"), str):
        return "budget must be an object with a string 'given'"
    if not _is_number(budget.get("amount")) or budget["amount"] <= 0:
        return "budget amount must be a positive number"
    for key in ("seconds", "steps"):
        if budget.get(key) is not None and not _is_number(budget[key]):
            return f"budget {key} must be a number"
    samples = record.get("samples", [])
    if not isinstance(samples, list) or not all(isinstance(s, str) for s in samples):
        return "samples must be a list of strings"
    curve = record.get("curve", [])
    if not isinstance(curve, list) or not all(isinstance(p, dict) for p in curve):
        return "curve must be a list of objects"
    for point in curve:
        for name, value in point.items():
            if value is not None and not _is_number(value):
                return f"curve value {name} is not a finite number: {value!r}"
    if record.get("run") is not None and not isinstance(record["run"], str):
        return "run must be a string"
    return None


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in records:
        dataset = r["dataset"]["name"] if isinstance(r["dataset"], dict) else r["dataset"]
        row = {"dataset": dataset, "variant": r.get("label") or r["variant"],
               "budget": r["budget"]["given"],
               "seed": r["seed"], "status": r["status"]}
        if r["status"] == "ok":
            row.update({k: v for k, v in r["metrics"].items() if k in METRIC_COLUMNS})
            # The training time actually spent, beside the budget given: equal compute is the
            # premise of every comparison, so an overrun must show in the table.
            row["train_seconds"] = r["budget"].get("seconds")
        rows.append(row)
    return pd.DataFrame(rows)


def t_half_width(values: pd.Series) -> float:
    from scipy import stats

    n = values.count()
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per group: seeds, runs ok, and for each metric mean / low / high."""
    metrics = [c for c in METRIC_COLUMNS if c in frame.columns and frame[c].notna().any()]
    rows = []
    for key, group in frame.groupby(GROUP_KEYS, sort=True):
        row = dict(zip(GROUP_KEYS, key))
        ok = group[group["status"] == "ok"]
        row["seeds"] = int(ok["seed"].nunique())
        row["runs_ok"] = f"{len(ok)}/{len(group)}"
        for metric in metrics:
            values = ok[metric].dropna() if metric in ok else pd.Series(dtype=float)
            mean = float(values.mean()) if len(values) else math.nan
            half = t_half_width(values)
            row[metric] = mean
            row[f"{metric}_low"] = mean - half if not math.isnan(half) else math.nan
            row[f"{metric}_high"] = mean + half if not math.isnan(half) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def best_marks(table: pd.DataFrame) -> set[tuple[int, str]]:
    """(row, metric) pairs whose interval is strictly better than every other's in the dataset."""
    marks = set()
    for metric, direction in METRIC_COLUMNS.items():
        if direction == 0 or metric not in table:
            continue
        for _, group in table.groupby("dataset"):
            valid = group[group[metric].notna()]
            if len(valid) < 2 or valid[f"{metric}_low"].isna().any():
                continue
            best = valid[metric].idxmax() if direction > 0 else valid[metric].idxmin()
            others = valid.drop(index=best)
            if direction > 0:
                separated = (valid.at[best, f"{metric}_low"] > others[f"{metric}_high"]).all()
            else:
                separated = (valid.at[best, f"{metric}_high"] < others[f"{metric}_low"]).all()
            if separated:
                marks.add((best, metric))
    return marks


def _format_cell(mean: float, low: float, high: float) -> str:
    if math.isnan(mean):
        return ""
    digits = 1 if abs(mean) >= 100 else 3
    if math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(high - low) / 2:.{digits}f}"


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    marks = best_marks(table)
    metrics = [c for c in METRIC_COLUMNS if c in table.columns]
    shown = table[GROUP_KEYS + ["seeds", "runs_ok"]].copy()
    for metric in metrics:
        cells = []
        for index, row in table.iterrows():
            cell = _format_cell(row[metric], row[f"{metric}_low"], row[f"{metric}_high"])
            cells.append(f"**{cell}**" if (index, metric) in marks else cell)
        shown[metric] = cells
    return shown


def write_report(directory: Path, out: Path | None = None, plots: bool = True) -> list[Path]:
    """Every record checked first; then all outputs rendered into a hidden staging folder
    inside ``out`` and moved into place only once all of them exist (never a partial report)."""
    from bench.guards import check_output_folder

    out = Path(out) if out else Path(directory)
    check_output_folder(out, "report folder")
    records = find_records(directory)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with _staging_folder(out) as staging:
            staged = _render_report(records, staging, plots)
            return _publish(staged, staging, out)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if still empty: nothing was published
        raise


@contextlib.contextmanager
def _staging_folder(out: Path) -> Iterator[Path]:
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".report-staging-"))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staged: list[Path], staging: Path, out: Path) -> list[Path]:
    """Move the staged files into out (each rename atomic), with the user's umask."""
    from bench.records import fsync_folder, umask_mode

    published = []
    for path in staged:
        target = out / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path, umask_mode())
        os.replace(path, target)
        published.append(target)
    fsync_folder(out)
    return published


def _render_report(records: list[dict[str, Any]], out: Path, plots: bool) -> list[Path]:
    table = summary_table(records_frame(records))
    shown = display_table(table)
    written = []
    markdown = ("Mean ± 95% t-interval half-width over seeds; **bold** marks a best value "
                "whose interval separates it from every other row of its dataset.\n\n"
                + shown.to_markdown(index=False) + "\n")
    write_text_atomic(out / "results.md", markdown)
    write_text_atomic(out / "results.csv", table.to_csv(index=False))
    written += [out / "results.md", out / "results.csv"]
    figures: list[Path] = []
    if plots:
        from bench.plots import write_plots

        figures = write_plots(records, table, out)
        written += figures
    write_text_atomic(out / "report.html", render_html(shown, records, figures, out))
    written.append(out / "report.html")
    return written


def render_html(shown: pd.DataFrame, records: list[dict[str, Any]], figures: list[Path],
                out: Path) -> str:
    """One self-contained page: the table, the plots, and a few samples per run (escaped)."""
    # Best values, bold in Markdown, become <b> here (the cells themselves are escaped).
    table_html = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>",
                        shown.to_html(index=False, escape=True))
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>GANBench report</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
             "font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:48%;"
             "margin:4px}pre{background:#f6f6f6;padding:6px;white-space:pre-wrap}</style>",
             "</head><body><h1>GANBench report</h1>",
             "<p>Mean ± 95% interval over seeds. Metric definitions: METRICS.md.</p>",
             table_html, "<h2>Plots</h2>"]
    for figure in figures:
        parts.append(f"<img src='{html.escape(figure.relative_to(out).as_posix())}' "
                     f"alt='{html.escape(figure.stem)}'>")
    parts.append("<h2>Samples (first 5 per run)</h2>")
    for r in sorted(records, key=lambda r: r.get("run", "")):
        text = "\n".join(r.get("samples", [])[:5])
        parts.append(f"<h3>{html.escape(str(r.get('run', r['variant'])))} "
                     f"({html.escape(r['status'])})</h3><pre>{html.escape(text)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def load_train_log(record: dict[str, Any]) -> list[dict[str, Any]]:
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
