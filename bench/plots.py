"""PNG plots of a report: quality-diversity curves, metric vs budget, metric bars, training curves.

Every figure of one report gives a variant (a row label) the same colour, names it by its short
label (bench.labels; the full labels are in the report's caption table), keeps its legend outside
the axes, says on each metric axis which way is better, and draws 95% intervals over seeds where
there are several ("1 seed" where there is one). Panels without data are not drawn.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.labels import full_label, short_labels
from bench.records import load_train_log
from bench.stats import t_half_width

if TYPE_CHECKING:
    import pandas as pd

HIGHER = "↑ higher is better"
LOWER = "↓ lower is better"
# Axis names of the metrics plotted, with the direction that is better (METRICS.md).
AXIS_LABELS = {
    "bleu_5": f"BLEU-5, quality ({HIGHER})",
    "self_bleu_5": f"Self-BLEU-5, lack of diversity ({LOWER})",
    "nll_oracle": f"NLL_oracle, quality ({LOWER})",
    "nll_test": f"NLL_test, nats/token ({LOWER})",
    "disc_acc": "disc_acc (closer to 0.5 is better)",
    "knn_precision": f"k-NN precision, quality ({HIGHER})",
    "knn_recall": f"k-NN recall, diversity ({HIGHER})",
}
# train/phase of the phased variants (lstm_gan, seqgan, gpt2_bert_gan); rows without one are MLE.
PHASE_MLE, PHASE_DISC_PRETRAIN, PHASE_ADVERSARIAL = 0.0, 1.0, 2.0
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def variant_colours(labels: list[str]) -> dict[str, Any]:
    """One colour per row label, the same in every figure of a report."""
    from matplotlib import colormaps

    ordered = sorted(set(labels))
    # tab10, then Dark2: 18 colours apart from each other (tab20's pairs of one hue read as one
    # variant).
    palette = list(colormaps["tab10"].colors) + list(colormaps["Dark2"].colors)
    return {label: palette[i % len(palette)] for i, label in enumerate(ordered)}


def seeds_note(n: int) -> str:
    return "1 seed" if n == 1 else f"{n} seeds"


def mean_curve(runs: list[dict[str, Any]], x: str, y: str) -> list[dict[str, float]]:
    """Per temperature: mean x and y over the runs (seeds), their 95% half-widths, and n."""
    points: dict[float, list[tuple[float, float]]] = defaultdict(list)
    for r in runs:
        for p in r.get("curve") or []:
            if p.get(x) is not None and p.get(y) is not None:
                points[p["temperature"]].append((p[x], p[y]))
    out = []
    for t in sorted(points):
        xs = [a for a, _ in points[t]]
        ys = [b for _, b in points[t]]
        out.append({"temperature": t, "x": sum(xs) / len(xs), "y": sum(ys) / len(ys),
                    "x_half": t_half_width(xs), "y_half": t_half_width(ys), "n": len(xs)})
    return out


def file_stem(name: str) -> str:
    """A dataset or label as a file name: names are data, so '/', '..' or '$' in them never
    become a path; a changed name gets a digest so that two names cannot share a file."""
    import hashlib
    import re

    safe = re.sub(r"[^A-Za-z0-9_.@-]", "_", name).lstrip(".") or "_"
    if safe != name:
        safe += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return safe


def _save(fig, path: Path) -> Path:
    # bbox "tight" grows the canvas to hold the legends placed outside the axes.
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _legend_outside(fig, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.92), fontsize=8,
                   frameon=False)


class Series:
    """The runs (seeds) of one table row: a label at a budget, drawn in its label's colour."""

    def __init__(self, label: str, short: str, budget: str, runs: list[dict[str, Any]],
                 colour: Any, marker: str, budget_in_name: bool):
        self.label, self.short, self.budget, self.runs = label, short, budget, runs
        self.colour, self.marker = colour, marker
        self.row_name = f"{short} {budget}" if budget_in_name else short
        self.name = f"{self.row_name} ({seeds_note(self.seeds)})"  # the legend entry

    @property
    def seeds(self) -> int:
        return len({r["seed"] for r in self.runs})


def _series_of(runs: list[dict[str, Any]], short: dict[str, str], colours: dict[str, Any]
               ) -> list[Series]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in runs:
        groups[(full_label(r), r["budget"]["given"])].append(r)
    budgets = sorted({b for _, b in groups}, key=lambda b: min(
        r["budget"]["amount"] for r in runs if r["budget"]["given"] == b))
    out = []
    for (label, budget), members in sorted(groups.items()):
        out.append(Series(label, short[label], budget, members, colours[label],
                          MARKERS[budgets.index(budget) % len(MARKERS)], len(budgets) > 1))
    return out


def write_plots(records: list[dict[str, Any]], summary: pd.DataFrame, out: Path) -> list[Path]:
    """The report's figures; ``summary`` is its results table (bench.report.summary_table)."""
    plt = _pyplot()
    # Labels and dataset names are data: "$x$" in one prints as written, never as mathtext.
    with plt.rc_context({"text.parse_math": False}):
        return _write_plots(plt, records, summary, Path(out) / "plots")


def _write_plots(plt, records: list[dict[str, Any]], summary: pd.DataFrame, plot_dir: Path
                 ) -> list[Path]:
    plot_dir.mkdir(parents=True, exist_ok=True)
    ok = [r for r in records if r["status"] == "ok"]
    short = short_labels(records)
    colours = variant_colours([full_label(r) for r in records])
    by_dataset: dict[str, list[dict]] = defaultdict(list)
    for r in ok:
        by_dataset[r["dataset"]["name"]].append(r)
    written: list[Path | None] = []
    for dataset, runs in sorted(by_dataset.items()):
        series = _series_of(runs, short, colours)
        written.append(_curve_figure(plt, series, dataset, plot_dir))
        if len({r["budget"]["given"] for r in runs}) > 1:
            written.append(_budget_figure(plt, series, dataset, plot_dir))
        rows = summary[summary["dataset"] == dataset].reset_index(drop=True)
        written.append(_metric_bars(plt, rows, dataset, plot_dir, short, colours))
        written.append(_training_figure(plt, series, dataset, plot_dir))
        written.append(_overfitting_figure(plt, series, dataset, plot_dir))
    return [path for path in written if path is not None]


def _curve_figure(plt, series: list[Series], dataset: str, plot_dir: Path) -> Path | None:
    """Quality against diversity over the temperature grid; T written at every point."""
    specs = [("self_bleu_5", "bleu_5")]
    if any(p.get("nll_oracle") is not None for s in series for r in s.runs
           for p in r.get("curve") or []):
        specs.append(("nll_test", "nll_oracle"))
    if any(p.get("knn_precision") is not None for s in series for r in s.runs
           for p in r.get("curve") or []):
        specs.append(("knn_recall", "knn_precision"))
    curves = [[(s, mean_curve(s.runs, x, y)) for s in series] for x, y in specs]
    panels = [(spec, drawn) for spec, drawn in zip(specs, curves) if any(c for _, c in drawn)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.8), squeeze=False)
    for ax, ((x, y), drawn) in zip(axes[0], panels):
        # T written on one curve only, the most spread out one: every curve has the same grid,
        # in the same order, and labels on several nearby curves overprint each other.
        widest = max((c for c in drawn if c[1]), key=lambda c: _spread(c[1]), default=None)
        for s, points in drawn:
            if not points:
                continue
            xs, ys = [p["x"] for p in points], [p["y"] for p in points]
            errors = s.seeds > 1
            ax.errorbar(xs, ys, xerr=_curve_bars(points, x, "x") if errors else None,
                        yerr=_curve_bars(points, y, "y") if errors else None,
                        color=s.colour, marker=s.marker, markersize=4, linewidth=1.3,
                        elinewidth=0.7, capsize=2, alpha=0.9, label=s.name)
            if widest is not None and s is widest[0]:
                for p in points:
                    ax.annotate(f"T={p['temperature']:g}", (p["x"], p["y"]), fontsize=6.5,
                                color="#333", xytext=(3, 3), textcoords="offset points")
        x_label = "NLL_test, diversity (↓ lower is better)" if x == "nll_test" else AXIS_LABELS[x]
        ax.set_xlabel(x_label)
        ax.set_ylabel(AXIS_LABELS[y])
        ax.grid(alpha=0.3)
    _legend_outside(fig, axes[0][0])
    fig.suptitle(f"{dataset}: quality against diversity over sampling temperature T\n"
                 "(mean over seeds, 95% interval bars; T marked on one curve, every curve has "
                 "the same grid)", fontsize=10)
    fig.tight_layout()
    path = _save(fig, plot_dir / f"curve_{file_stem(dataset)}.png")
    plt.close(fig)
    return path


def _spread(points: list[dict[str, float]]) -> float:
    """How far a curve's points lie apart (the span of x plus the span of y)."""
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    return (max(xs) - min(xs)) + (max(ys) - min(ys))


def _curve_bars(points: list[dict[str, float]], metric: str, axis: str
                ) -> list[list[float]] | None:
    """The curve's error bars on one axis ("x" or "y"), cut at the metric's range."""
    parts = [clipped_error(metric, p[axis], p[f"{axis}_half"]) for p in points]
    if any(part is None for part in parts):
        return None
    return [[part[0][0] for part in parts], [part[1][0] for part in parts]]


def _budget_figure(plt, series: list[Series], dataset: str, plot_dir: Path) -> Path | None:
    by_label: dict[str, list[Series]] = defaultdict(list)
    for s in series:
        by_label[s.label].append(s)
    fig, ax = plt.subplots(figsize=(6.2, 4.5))
    for members in by_label.values():
        points = []
        for s in members:
            values = [r["metrics"]["bleu_5"] for r in s.runs
                      if r["metrics"].get("bleu_5") is not None]
            if values:
                points.append((s.runs[0]["budget"]["amount"], sum(values) / len(values),
                               t_half_width(values), len(values)))
        if not points:
            continue
        points.sort()
        seeds = {n for *_, n in points}
        ax.errorbar([p[0] for p in points], [p[1] for p in points],
                    yerr=[0.0 if p[2] != p[2] else p[2] for p in points], marker="o",
                    color=members[0].colour, capsize=2,
                    label=f"{members[0].short} ({seeds_note(min(seeds))})")
    if not ax.lines:
        plt.close(fig)
        return None
    kind = series[0].runs[0]["budget"]["kind"]
    ax.set_xscale("log")
    # Plain tick labels: the log axis's own are mathtext, which the report turns off (names
    # are data, never markup).
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"budget ({kind}, log scale)")
    ax.set_ylabel(AXIS_LABELS["bleu_5"])
    ax.grid(alpha=0.3)
    _legend_outside(fig, ax)
    ax.set_title(f"{dataset}: BLEU-5 against budget")
    fig.tight_layout()
    path = _save(fig, plot_dir / f"budget_{file_stem(dataset)}.png")
    plt.close(fig)
    return path


# Where each plotted metric can lie: a t-interval from few seeds can reach past it (BLEU-5
# below 0, disc_acc above 1), and a plot draws no value a metric cannot take.
METRIC_RANGES = {"bleu_5": (0.0, 1.0), "self_bleu_5": (0.0, 1.0), "disc_acc": (0.0, 1.0),
                 "knn_precision": (0.0, 1.0), "knn_recall": (0.0, 1.0),
                 "nll_test": (0.0, float("inf")), "nll_oracle": (0.0, float("inf"))}


def clipped_error(metric: str, mean: float, half: float) -> list[list[float]] | None:
    """[[below], [above]] error lengths of mean ± half, cut at the metric's range; None for no
    interval (one seed)."""
    if half != half:  # NaN
        return None
    low, high = METRIC_RANGES.get(metric, (-float("inf"), float("inf")))
    return [[mean - max(low, mean - half)], [min(high, mean + half) - mean]]


def _metric_bars(plt, table: pd.DataFrame, dataset: str, plot_dir: Path, short: dict[str, str],
                 colours: dict[str, Any]) -> Path | None:
    """nll_oracle (on an oracle), nll_test, BLEU-5, Self-BLEU-5 and disc_acc per row: mean (dot)
    with its 95% interval. Dots, not bars from zero: the rows differ by far less than their
    distance from zero."""
    metrics = [m for m in ("nll_oracle", "nll_test", "bleu_5", "self_bleu_5", "disc_acc")
               if m in table and table[m].notna().any()]
    if not metrics or len(table) < 2:
        return None
    several_budgets = table["budget"].nunique() > 1
    names = [short.get(v, v) + (f" {b}" if several_budgets else "")
             for v, b in zip(table["variant"], table["budget"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics) + 2.5,
                                                       0.42 * len(names) + 1.8),
                             squeeze=False, sharey=True)
    positions = list(range(len(names)))[::-1]  # first row on top
    for ax, metric in zip(axes[0], metrics):
        for y, (_, row) in zip(positions, table.iterrows()):
            mean = row[metric]
            if mean != mean:  # NaN: the metric does not apply to this row
                continue
            half = (row[f"{metric}_high"] - row[f"{metric}_low"]) / 2
            ax.errorbar([mean], [y], xerr=clipped_error(metric, mean, half), fmt="o",
                        color=colours.get(row["variant"], "grey"), capsize=3, markersize=6)
            if int(row["seeds"]) <= 2:
                # A t-interval from 2 seeds has 1 degree of freedom (t = 12.7): say so.
                note = "1 seed" if int(row["seeds"]) == 1 else "2 seeds: t = 12.7"
                ax.annotate(note, (mean, y), xytext=(5, 4), textcoords="offset points",
                            fontsize=6.5, color="#444")
        if metric == "disc_acc":
            ax.axvline(0.5, color="black", linewidth=0.8, linestyle=":")
            low, high = ax.get_xlim()
            ax.set_xlim(max(low, -0.02), min(high, 1.02))  # an accuracy
        ax.set_title(AXIS_LABELS[metric], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_yticks(positions)
    axes[0][0].set_yticklabels(names, fontsize=8)
    axes[0][0].set_ylim(-0.6, len(names) - 0.4)
    note = "mean and 95% interval over seeds"
    if "nll_test_per_word" in table and table["nll_test_per_word"].notna().any():
        note += ("; NLL_test is per model token: rows that tokenize differently do not "
                 "compare (nll_test_per_word does)")
    fig.suptitle(f"{dataset}: {note}", fontsize=10)
    fig.tight_layout()
    path = _save(fig, plot_dir / f"metrics_{file_stem(dataset)}.png")
    plt.close(fig)
    return path


def latest_attempt(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the run's history: where a log's step goes back (a run restarted from an
    earlier checkpoint, or from scratch, appends to the same file), the rows it replays are
    dropped."""
    kept: list[dict[str, Any]] = []
    for row in log:
        while kept and kept[-1]["step"] >= row["step"]:
            kept.pop()
        kept.append(row)
    return kept


def phase_segments(log: list[dict[str, Any]], keys: tuple[str, ...], x_key: str
                   ) -> list[tuple[float, list[float], list[float]]]:
    """(phase, xs, ys) for each unbroken run of rows of one phase that log one of ``keys`` (the
    first present counts): a line never joins two phases, nor the two models of
    synthetic_augmentation (its own phase key)."""
    segments: list[tuple[float, list[float], list[float]]] = []
    previous = None
    for row in log:
        phase = float(row.get("train/phase", PHASE_MLE))
        where = (phase, row.get("train/phase_augmentation"))
        value = next((row[k] for k in keys if row.get(k) is not None), None)
        if value is None:
            previous = None
            continue
        if where != previous:
            segments.append((phase, [], []))
            previous = where
        segments[-1][1].append(row[x_key])
        segments[-1][2].append(value)
    return segments


def _training_figure(plt, series: list[Series], dataset: str, plot_dir: Path) -> Path | None:
    """The first seed of each row: MLE loss, adversarial generator loss and the variant's own
    discriminator accuracy, each in its own panel (the losses are different quantities)."""
    steps_budgets = all(s.runs[0]["budget"]["kind"] == "steps" for s in series)
    x_key, x_label = ("step", "training step") if steps_budgets else (
        "seconds", "training time (s)")
    # GPT-2 variants log their losses under their own names.
    panels = [
        (("train/g_loss", "train/g_mle_loss"), {PHASE_MLE},
         f"MLE phase: generator loss, nats/token ({LOWER})"),
        (("train/g_loss", "train/g_pg_loss"), {PHASE_ADVERSARIAL},
         f"adversarial phase: generator loss ({LOWER} for the generator;\n"
         "each variant's own objective, not comparable across variants)"),
        (("train/d_acc",), {PHASE_DISC_PRETRAIN, PHASE_ADVERSARIAL},
         "variant's own discriminator accuracy (diagnostic;\n0.5 = it is fooled)"),
    ]
    drawn = []
    for keys, phases, title in panels:
        lines = []
        for s in series:
            log = latest_attempt(load_train_log(s.runs[0]))
            for phase, xs, ys in phase_segments(log, keys, x_key):
                if phase in phases:
                    lines.append((s, xs, ys))
        if lines:
            drawn.append((title, lines))
    if not drawn:
        return None
    fig, axes = plt.subplots(1, len(drawn), figsize=(5.4 * len(drawn), 4.3), squeeze=False)
    for ax, (title, lines) in zip(axes[0], drawn):
        labelled, seen = set(), {}
        for s, xs, ys in lines:
            name = s.row_name  # one seed is drawn: the legend gives no seed count
            # Variants that share their MLE phase (same seed, same sizes) draw the same curve:
            # the later one dashed over it, and said in the legend, not hidden.
            same_as = seen.setdefault((tuple(xs), tuple(ys)), name)
            dashed = same_as != name
            label = None if name in labelled else (
                f"{name} (same curve as {same_as})" if dashed else name)
            ax.plot(xs, ys, color=s.colour, linewidth=1.2, marker="." if len(xs) < 3 else None,
                    linestyle=(0, (4, 3)) if dashed else "-", label=label)
            labelled.add(name)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    handles = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    ordered = sorted(handles)
    fig.legend([handles[label] for label in ordered], ordered, loc="upper left",
               bbox_to_anchor=(1.0, 0.9), fontsize=8, frameon=False)
    fig.suptitle(f"{dataset}: training curves (first seed of each row)")
    fig.tight_layout()
    path = _save(fig, plot_dir / f"training_{file_stem(dataset)}.png")
    plt.close(fig)
    return path


TRAIN_LOSS_KEYS = ("train/g_loss", "train/g_mle_loss")


def _overfitting_figure(plt, series: list[Series], dataset: str, plot_dir: Path
                        ) -> Path | None:
    """Over-fitting in view (METRICS.md, Validation and selection): per row, its first seed's
    MLE training loss and validation NLL against the step, both in nats per model token, with
    the evaluated step marked."""
    panels = []
    for s in series:
        run = s.runs[0]
        points = run.get("validation") or []
        if not points:
            continue
        log = latest_attempt(load_train_log(run))
        # The LSTMs log their MLE loss as train/g_loss in the MLE phase; GPT-2 as g_mle_loss.
        lstm_key, gpt2_key = TRAIN_LOSS_KEYS
        train = [(row["step"], row[lstm_key]) for row in log
                 if lstm_key in row and row.get("train/phase", 0) == PHASE_MLE]
        if not train:
            train = [(row["step"], row[gpt2_key]) for row in log if gpt2_key in row]
        panels.append((s, train, points, run.get("selection") or {}))
    if not panels:
        return None
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (s, train, points, selection) in zip(axes.flat, panels):
        if train:
            ax.plot([x for x, _ in train], [y for _, y in train], color=s.colour, alpha=0.45,
                    linewidth=1.0, label="training loss (MLE steps)")
        ax.plot([p["step"] for p in points], [p["valid_nll"] for p in points], color=s.colour,
                marker=".", linewidth=1.6, label="validation NLL")
        if selection.get("evaluated_step") is not None:
            ax.axvline(selection["evaluated_step"], color="#444", linestyle=":", linewidth=1,
                       label=f"evaluated ({selection.get('rule', '')})")
        note = " (over-fit)" if selection.get("overfit") else ""
        ax.set_title(f"{s.row_name}{note}", fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"nats per model token ({LOWER})", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(f"{dataset}: training loss and validation NLL (first seed of each row)")
    fig.tight_layout()
    path = _save(fig, plot_dir / f"overfitting_{file_stem(dataset)}.png")
    plt.close(fig)
    return path
