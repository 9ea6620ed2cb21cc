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
from bench.labels import full_label, short_labels
from bench.records import REAL_TEXT_FOLDER, RECORD_FILE, load_record, write_text_atomic
from bench.stats import t_half_width

# Column -> +1 if higher is better, -1 if lower is better, 0 if neither (shown, never marked).
METRIC_COLUMNS: dict[str, int] = {
    **{f"bleu_{n}": 1 for n in range(2, 6)},
    **{f"self_bleu_{n}": -1 for n in range(2, 6)},
    "nll_oracle": -1, "nll_test": -1, "nll_test_per_word": -1, "nll_test_iv_per_word": -1,
    "oov_rate": 0,
    "disc_acc": 0,  # ranked by closeness to 0.5 (METRIC_TARGETS), neither higher nor lower
    "sacrebleu": 1, "rouge_l": 1,
    **{f"distinct_{n}": 1 for n in range(1, 5)},
    "copy_rate": -1,
    "frechet_minilm": -1, "mauve": 1,
    # k-NN measures of the generated distribution (bench/metrics/knn_manifold.py); density is 1
    # when the two distributions match, so it has no better direction.
    "knn_precision": 1, "knn_recall": 1, "knn_coverage": 1, "knn_density": 0,
    "train_seconds": 0, "train_tokens_per_s": 0, "sample_tokens_per_s": 0, "steps": 0,
    "generator_updates": 0, "discriminator_updates": 0,
    # Counted training FLOPs per device-second, and that over the device's bf16 peak (GPUs).
    "train_tflops_per_s": 0, "mfu": 0,
    # How far the last validation NLL rose above the run's best, as a share (bench/selection).
    "valid_rise": 0,
}
# The short table put first for each corpus: the answer a reader looks for (the full table
# follows). mfu shows only on GPUs, nll_oracle only on the oracle (empty columns are dropped).
HEADLINE_COLUMNS = ("nll_oracle", "nll_test_iv_per_word", "bleu_5", "self_bleu_5", "disc_acc",
                    "knn_precision", "knn_recall", "mauve", "steps", "train_tokens_per_s", "mfu")
REAL_TEXT_LABEL = "real text (test half)"
# Metrics whose best value is a target, not an extreme: disc_acc is best at 0.5 (METRICS.md).
METRIC_TARGETS: dict[str, float] = {"disc_acc": 0.5}
GROUP_KEYS = ["dataset", "variant", "budget"]
# Speed columns: they differ between any two runs, even of one deterministic steps budget
# (steps too, under a seconds budget).
TIMING_METRICS = ("train_seconds", "train_tokens_per_s", "sample_tokens_per_s", "steps",
                  "generator_updates", "discriminator_updates", "train_tflops_per_s", "mfu")


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
            row["steps"] = r["budget"].get("steps")
            row["generator_updates"] = r["budget"].get("generator_updates")
            row["discriminator_updates"] = r["budget"].get("discriminator_updates")
            selection = r.get("selection") or {}
            row["valid_rise"] = selection.get("valid_rise")
            row["overfit"] = bool(selection.get("overfit"))
            row["evaluated_best"] = selection.get("evaluated") == "best"
            row["best_before_final_phase"] = bool(selection.get("best_before_final_phase"))
            row["select"] = selection.get("rule", "")
        rows.append(row)
    return pd.DataFrame(rows)


def real_text_table(directory: Path) -> pd.DataFrame:
    """The real-text reference rows a suite wrote (bench.scoring.write_real_text_rows), shaped
    like summary_table's rows: one value each, no interval; empty if there are none."""
    rows = []
    for path in sorted((Path(directory) / REAL_TEXT_FOLDER).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            dataset, metrics = data["dataset"], data["metrics"]
            n = data["settings"]["num_samples"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise GanbenchError(f"{path}: not a real-text row ({err})") from None
        row = {"dataset": dataset, "variant": REAL_TEXT_LABEL, "budget": "-", "seeds": "-",
               "runs_ok": "-", "notes": f"N = {n} test sentences scored against the other "
                                        "half of the test split"}
        for metric in METRIC_COLUMNS:
            if _is_number(metrics.get(metric)):
                row.update({metric: float(metrics[metric]), f"{metric}_low": math.nan,
                            f"{metric}_high": math.nan})
        rows.append(row)
    return pd.DataFrame(rows)


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per group: seeds, runs ok, and for each metric mean / low / high."""
    metrics = [c for c in METRIC_COLUMNS if c in frame.columns and frame[c].notna().any()]
    rows = []
    for key, group in frame.groupby(GROUP_KEYS, sort=True):
        row = dict(zip(GROUP_KEYS, key))
        ok = group[group["status"] == "ok"]
        row["seeds"] = int(ok["seed"].nunique())
        row["runs_ok"] = f"{len(ok)}/{len(group)}"
        row["notes"] = row_notes(ok)
        for metric in metrics:
            values = ok[metric].dropna() if metric in ok else pd.Series(dtype=float)
            mean = float(values.mean()) if len(values) else math.nan
            half = t_half_width(values)
            row[metric] = mean
            row[f"{metric}_low"] = mean - half if not math.isnan(half) else math.nan
            row[f"{metric}_high"] = mean + half if not math.isnan(half) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


# Seeds of one row whose steps differ by more than this share of the fewest: under a seconds
# budget the machine's load, not the method, changed the work done.
STEPS_SPREAD = 0.2


def row_notes(ok: pd.DataFrame) -> str:
    """The row's selection rule, how many seeds were evaluated at their best validation point
    rather than their last, and flags: validation NLL rose past the margin from its best
    (over-fit), the best validation point lay before the final phase (a GAN's best generator
    by validation NLL is its pre-adversarial one), and seeds that took different work."""
    if ok.empty:
        return ""
    n, parts = len(ok), []
    steps = ok["steps"].dropna() if "steps" in ok else pd.Series(dtype=float)
    if len(steps) > 1 and steps.min() > 0 and steps.max() > (1 + STEPS_SPREAD) * steps.min():
        parts.append(f"⚠ steps {int(steps.min())}-{int(steps.max())}: the load changed the work")
    if "select" not in ok:
        return "; ".join(parts)
    rules = sorted(set(ok["select"].dropna()) - {""})
    if rules:
        parts.insert(0, f"{'/'.join(rules)}: best {int(ok['evaluated_best'].sum())}/{n}")
    if ok["overfit"].any():
        parts.append(f"⚠ over-fit {int(ok['overfit'].sum())}/{n}")
    if ok["best_before_final_phase"].any():
        parts.append(f"best valid before final phase {int(ok['best_before_final_phase'].sum())}"
                     f"/{n}")
    return "; ".join(parts)


def _distance_interval(low: float, high: float, target: float) -> tuple[float, float]:
    """The interval of |x - target| for x in [low, high]."""
    far = max(abs(low - target), abs(high - target))
    near = 0.0 if low <= target <= high else min(abs(low - target), abs(high - target))
    return near, far


# nll_test counts the model's own tokens and nll_test_per_word maps unknown words to one token, so
# neither compares across tokenizers (METRICS.md): a best is marked only among rows that all score
# in the corpus's word vocabulary, where the two are the same number.
VOCABULARY_DEPENDENT = ("nll_test", "nll_test_per_word")


def one_vocabulary(group: pd.DataFrame) -> bool:
    """Whether every row of a dataset's group scores NLL per word of the corpus vocabulary."""
    if not {"nll_test", "nll_test_per_word"} <= set(group.columns):
        return False
    per_token, per_word = group["nll_test"], group["nll_test_per_word"]
    return bool(per_token.notna().all() and ((per_token - per_word).abs() < 1e-9).all())


def best_marks(table: pd.DataFrame) -> set[tuple[int, str]]:
    """(row, metric) pairs whose interval is strictly better than every other's in the dataset;
    for a metric with a target (disc_acc), better is closer to the target."""
    marks = set()
    for metric, direction in METRIC_COLUMNS.items():
        if (direction == 0 and metric not in METRIC_TARGETS) or metric not in table:
            continue
        for _, group in table.groupby("dataset"):
            valid = group[group[metric].notna()]
            if len(valid) < 2 or valid[f"{metric}_low"].isna().any():
                continue
            if metric in VOCABULARY_DEPENDENT and not one_vocabulary(valid):
                continue
            if metric in METRIC_TARGETS:
                target = METRIC_TARGETS[metric]
                best = (valid[metric] - target).abs().idxmin()
                near_far = {i: _distance_interval(valid.at[i, f"{metric}_low"],
                                                  valid.at[i, f"{metric}_high"], target)
                            for i in valid.index}
                separated = all(near_far[best][1] < near_far[i][0] for i in valid.index
                                if i != best)
            else:
                best = valid[metric].idxmax() if direction > 0 else valid[metric].idxmin()
                others = valid.drop(index=best)
                if direction > 0:
                    separated = (valid.at[best, f"{metric}_low"] >
                                 others[f"{metric}_high"]).all()
                else:
                    separated = (valid.at[best, f"{metric}_high"] <
                                 others[f"{metric}_low"]).all()
            if separated:
                marks.add((best, metric))
    return marks


def column_heading(metric: str) -> str:
    """A metric's column name with the direction that is better: ↑, ↓, or →0.5."""
    if metric in METRIC_TARGETS:
        return f"{metric} →{METRIC_TARGETS[metric]:g}"
    arrow = {1: " ↑", -1: " ↓"}.get(METRIC_COLUMNS.get(metric, 0), "")
    return metric + arrow


# Counts and rates read as whole numbers (a mean over seeds keeps one decimal of a count).
CELL_DIGITS = {"steps": 1, "generator_updates": 1, "discriminator_updates": 1,
               "train_tokens_per_s": 0, "sample_tokens_per_s": 0}


def _format_cell(mean: float, low: float, high: float, digits: int | None = None) -> str:
    if math.isnan(mean):
        return ""
    if digits is None:
        digits = 1 if abs(mean) >= 100 else 3
    if math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(high - low) / 2:.{digits}f}"


def display_table(table: pd.DataFrame, short: dict[str, str] | None = None) -> pd.DataFrame:
    """Formatted cells, best values in bold, headings with their direction; ``short`` maps a
    row's full label to the name shown (bench.labels.short_labels)."""
    marks = best_marks(table)
    metrics = [c for c in METRIC_COLUMNS if c in table.columns]
    shown = table[GROUP_KEYS + ["seeds", "runs_ok"]
                  + (["notes"] if "notes" in table else [])].copy()
    if short:
        shown["variant"] = [short.get(v, v) for v in shown["variant"]]
    for metric in metrics:
        cells = []
        for index, row in table.iterrows():
            digits = CELL_DIGITS.get(metric)
            if digits == 1 and float(row[metric]).is_integer():
                digits = 0  # a count every seed agrees on: 30, not 30.0
            cell = _format_cell(row[metric], row[f"{metric}_low"], row[f"{metric}_high"],
                                digits)
            cells.append(f"**{cell}**" if (index, metric) in marks else cell)
        shown[column_heading(metric)] = cells
    return shown


def label_captions(short: dict[str, str]) -> list[tuple[str, str]]:
    """(short, full) for every label shortened in the tables and plots."""
    return sorted((name, full) for full, name in short.items() if name != full)


def write_report(directory: Path, out: Path | None = None, plots: bool = True) -> list[Path]:
    """Every record checked first; then all outputs rendered into a hidden staging folder
    inside ``out`` and moved into place only once all of them exist (never a partial report)."""
    from bench.guards import check_output_folder

    out = Path(out) if out else Path(directory)
    check_output_folder(out, "report folder")
    records = find_records(directory)
    real_text = real_text_table(directory)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with _staging_folder(out) as staging:
            staged = _render_report(records, staging, plots, published_to=out,
                                    real_text=real_text)
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


def with_real_text(shown: pd.DataFrame, real_text: pd.DataFrame) -> pd.DataFrame:
    """The displayed rows with each corpus's real-text row first (its cells have no interval
    and no bold: it is a reference, not a competitor)."""
    if real_text.empty:
        return shown
    reference = display_table(real_text)
    reference = reference[reference["dataset"].isin(set(shown["dataset"]))]
    merged = pd.concat([reference, shown], ignore_index=True).fillna("")
    merged = merged[list(shown.columns)
                    + [c for c in reference.columns if c not in shown.columns]]
    first = merged["variant"] != REAL_TEXT_LABEL
    order = sorted(range(len(merged)), key=lambda i: (merged.at[i, "dataset"], bool(first[i])))
    return merged.loc[order].reset_index(drop=True)


def headline(shown: pd.DataFrame) -> pd.DataFrame:
    """The headline columns of the displayed rows (those a corpus fills)."""
    headings = [column_heading(m) for m in HEADLINE_COLUMNS]
    keep = [h for h in headings if h in shown.columns and (shown[h].astype(str) != "").any()]
    return shown[["dataset", "variant", "budget", "seeds", *keep]]


def _render_report(records: list[dict[str, Any]], out: Path, plots: bool,
                   published_to: Path, real_text: pd.DataFrame | None = None) -> list[Path]:
    """Every output written into ``out`` (the staging folder); links that leave the report
    are made from ``published_to``, where the files will be."""
    table = summary_table(records_frame(records))
    short = short_labels(records)
    shown = with_real_text(display_table(table, short),
                           real_text if real_text is not None else pd.DataFrame())
    written = []
    captions = label_captions(short)
    headlines = "".join(
        f"## {dataset}\n\n"
        + headline(shown[shown["dataset"] == dataset]).drop(columns="dataset").to_markdown(
            index=False) + "\n\n" for dataset in sorted(shown["dataset"].unique()))
    markdown = ("Mean ± 95% t-interval half-width over seeds; **bold** marks a best value "
                "whose interval separates it from every other row of its dataset. ↑ higher "
                "is better, ↓ lower is better, →0.5 closer to 0.5 is better. *notes*: the "
                "rule that chose the evaluated generator and how many seeds it took at their "
                "best validation point instead of their last; ⚠ over-fit: validation NLL "
                "ended more than 2% above its best (valid_rise is that rise); *best valid "
                "before final phase*: the lowest validation NLL came before the variant's "
                "last phase (for a GAN: its MLE warm-up), see docs/METRICS.md; ⚠ steps: the "
                "seeds' steps differ by more than 20% (a seconds budget on a loaded machine; "
                "prefer a steps or FLOPs budget there). The *real text* row scores test "
                "sentences as if a model had written them: each metric's value for real "
                "text.\n\n" + headlines + "## Full table\n\n"
                + shown.to_markdown(index=False) + "\n")
    if captions:
        markdown += ("\nFull labels (every override of the row):\n\n"
                     + pd.DataFrame(captions, columns=["variant", "label"]).to_markdown(
                         index=False) + "\n")
    write_text_atomic(out / "results.md", markdown)
    write_text_atomic(out / "results.csv", table.to_csv(index=False))
    written += [out / "results.md", out / "results.csv"]
    figures: list[Path] = []
    if plots:
        from bench.plots import write_plots

        figures = write_plots(records, table, out)
        written += figures
    write_text_atomic(out / "report.html",
                      render_html(shown, records, figures, out, short, published_to))
    written.append(out / "report.html")
    return written


METRICS_DOC = Path(__file__).resolve().parents[1] / "docs" / "METRICS.md"
FIGURE_HEADINGS = {"curve": "Quality against diversity over temperature",
                   "budget": "BLEU-5 against budget", "metrics": "Main metrics per row",
                   "training": "Training curves",
                   "overfitting": "Training loss and validation NLL (over-fitting in view)"}
ORACLE_SAMPLES_NOTE = (
    "Oracle samples are sequences of token ids of the synthetic oracle LSTM (vocabulary 5,000, "
    "length 20): the oracle has no words, so an id such as 4021 is the token itself. They are "
    "scored by the oracle's NLL (nll_oracle) and by BLEU over ids against the oracle's test "
    "sequences.")
STYLE = """
body{font-family:sans-serif;margin:1.5em 2em;max-width:1500px;color:#222}
.table-box{overflow:auto;max-height:75vh;border:1px solid #ccc;margin:0.5em 0 1.5em}
table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ddd;padding:3px 6px;white-space:nowrap;text-align:right}
th{background:#f0f0f0;position:sticky;top:0}
td:first-child{white-space:normal;min-width:9em;max-width:22em;text-align:left}
figure{margin:0.5em 0 1.5em}figure img{max-width:100%;height:auto;border:1px solid #eee}
pre{background:#f6f6f6;padding:6px;white-space:pre-wrap;font-size:12px}
.note{color:#555;font-size:13px}
"""


def _metrics_link(out: Path) -> str:
    """docs/METRICS.md of the checkout, relative to the report (so the link survives a move of
    the checkout, and works from a file:// page)."""
    return Path(os.path.relpath(METRICS_DOC, Path(out).resolve())).as_posix()


def _figure_kind(figure: Path) -> str:
    return figure.stem.split("_", 1)[0]


def render_html(shown: pd.DataFrame, records: list[dict[str, Any]], figures: list[Path],
                out: Path, short: dict[str, str] | None = None,
                published_to: Path | None = None) -> str:
    """One self-contained page, a section per corpus: its table rows (scrolling in their own
    box), its plots full width under headings, and a few samples per row (escaped). Figures
    are linked relative to ``out``, the metric definitions from ``published_to`` (default
    ``out``): where the page will be read."""
    short = short or {}
    esc = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>GANBench report</title>",
             f"<style>{STYLE}</style></head><body><h1>GANBench report</h1>",
             "<p class='note'>Mean ± 95% t-interval half-width over seeds (seeds: their number;"
             " one seed has no interval). <b>Bold</b>: a best value whose interval separates it "
             "from every other row of its corpus. ↑ higher is better, ↓ lower is better, "
             "→0.5 closer to 0.5 is better (disc_acc). Every metric is defined in "
             f"<a href='{esc(_metrics_link(published_to or out))}'>docs/METRICS.md</a>.</p>"]
    datasets = sorted(shown["dataset"].unique())
    if len(datasets) > 1:
        parts.append("<p>Corpora: " + " · ".join(
            f"<a href='#{esc(d)}'>{esc(d)}</a>" for d in datasets) + "</p>")
    for dataset in datasets:
        rows = shown[shown["dataset"] == dataset].drop(columns="dataset")
        rows = rows.loc[:, [c for c in rows.columns if (rows[c].astype(str) != "").any()]]
        headline_html, table_html = (
            re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", frame.to_html(index=False, escape=True))
            for frame in (headline(shown[shown["dataset"] == dataset]).drop(columns="dataset"),
                          rows))
        parts += [f"<h2 id='{esc(dataset)}'>{esc(dataset)}</h2>",
                  f"<div class='table-box'>{headline_html}</div>",
                  f"<h3>Full table: {esc(dataset)}</h3>",
                  f"<div class='table-box'>{table_html}</div>"]
        for figure in figures:
            if figure.stem.split("_", 1)[-1] != dataset:
                continue
            heading = FIGURE_HEADINGS.get(_figure_kind(figure), figure.stem)
            parts.append(f"<h3>{esc(heading)}: {esc(dataset)}</h3><figure><img src='"
                         f"{esc(figure.relative_to(out).as_posix())}' alt='{esc(figure.stem)}'>"
                         "</figure>")
        parts.append(_samples_html(records, dataset, short))
    captions = label_captions(short)
    if captions:
        parts.append("<h2>Full labels</h2><p class='note'>Tables and plots name a row by its "
                     "variant and the overrides that differ between its rows; its full label "
                     "lists every override.</p><div class='table-box'><table><tr><th>shown as"
                     "</th><th>full label</th></tr>" + "".join(
                         f"<tr><td>{esc(a)}</td><td>{esc(b)}</td></tr>" for a, b in captions)
                     + "</table></div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _samples_html(records: list[dict[str, Any]], dataset: str, short: dict[str, str]) -> str:
    """The first 5 samples of each row's first seed; failed runs say why."""
    runs = [r for r in records if r["dataset"]["name"] == dataset]
    parts = [f"<h3>Samples: {html.escape(dataset)} (first 5 of the first seed of each row)</h3>"]
    if any(r["dataset"]["name"].split("@")[0] == "oracle" for r in runs):
        parts.append(f"<p class='note'>{html.escape(ORACLE_SAMPLES_NOTE)}</p>")
    first_seed: dict[tuple[str, str], dict[str, Any]] = {}
    for r in sorted(runs, key=lambda r: r["seed"]):
        first_seed.setdefault((full_label(r), r["budget"]["given"]), r)
    for (label, budget), r in sorted(first_seed.items()):
        name = f"{short.get(label, label)} {budget}, seed {r['seed']}"
        status = "" if r["status"] == "ok" else f" ({r['status']}: {r.get('reason')})"
        text = "\n".join(r.get("samples", [])[:5])
        parts.append(f"<h4>{html.escape(name + status)}</h4><pre>{html.escape(text)}</pre>")
    return "\n".join(parts)
