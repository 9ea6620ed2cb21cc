"""PNG plots of a report: quality-diversity curves, metric vs budget, training curves."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _mean_curve(runs: list[dict[str, Any]], x: str, y: str) -> tuple[list[float], list[float]]:
    points: dict[float, list[tuple[float, float]]] = defaultdict(list)
    for r in runs:
        for p in r.get("curve") or []:
            if p.get(x) is not None and p.get(y) is not None:
                points[p["temperature"]].append((p[x], p[y]))
    temps = sorted(points)
    xs = [sum(a for a, _ in points[t]) / len(points[t]) for t in temps]
    ys = [sum(b for _, b in points[t]) / len(points[t]) for t in temps]
    return xs, ys


def write_plots(records: list[dict[str, Any]], summary: pd.DataFrame, out: Path) -> list[Path]:
    """The report's figures; ``summary`` is its results table (bench.report.summary_table)."""
    plt = _pyplot()
    plot_dir = Path(out) / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    ok = [r for r in records if r["status"] == "ok"]
    by_dataset: dict[str, list[dict]] = defaultdict(list)
    for r in ok:
        by_dataset[r["dataset"]["name"]].append(r)

    for dataset, runs in sorted(by_dataset.items()):
        by_variant: dict[str, list[dict]] = defaultdict(list)
        for r in runs:
            by_variant[f"{r.get('label') or r['variant']} {r['budget']['given']}"].append(r)
        axes_specs = [("self_bleu_5", "bleu_5", "Self-BLEU-5 (lower = more diverse)",
                       "BLEU-5 (higher = better quality)")]
        if any(p.get("nll_oracle") is not None for r in runs for p in r.get("curve") or []):
            axes_specs.append(("nll_test", "nll_oracle", "NLL_test (diversity)",
                               "NLL_oracle (quality)"))
        fig, axes = plt.subplots(1, len(axes_specs), figsize=(6 * len(axes_specs), 4.5),
                                 squeeze=False)
        for ax, (x, y, xlabel, ylabel) in zip(axes[0], axes_specs):
            for label, variant_runs in sorted(by_variant.items()):
                xs, ys = _mean_curve(variant_runs, x, y)
                if xs:
                    ax.plot(xs, ys, marker="o", label=label)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"Quality-diversity over temperature: {dataset} (mean over seeds)")
        fig.tight_layout()
        path = plot_dir / f"curve_{dataset}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

        budgets = {r["budget"]["given"] for r in runs}
        if len(budgets) > 1:
            fig, ax = plt.subplots(figsize=(6, 4.5))
            for variant in sorted({r.get("label") or r["variant"] for r in runs}):
                pts = defaultdict(list)
                for r in runs:
                    if (r.get("label") or r["variant"]) == variant and \
                            r["metrics"].get("bleu_5") is not None:
                        pts[r["budget"]["amount"]].append(r["metrics"]["bleu_5"])
                xs = sorted(pts)
                ax.plot(xs, [sum(pts[x]) / len(pts[x]) for x in xs], marker="o", label=variant)
            ax.set_xscale("log")
            ax.set_xlabel("budget")
            ax.set_ylabel("BLEU-5")
            ax.legend(fontsize=8)
            ax.set_title(f"BLEU-5 vs budget: {dataset}")
            fig.tight_layout()
            path = plot_dir / f"budget_{dataset}.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            written.append(path)

        rows = summary[summary["dataset"] == dataset].reset_index(drop=True)
        path = _metric_bars(plt, rows, dataset, plot_dir)
        if path is not None:
            written.append(path)

        from bench.report import load_train_log

        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        drew = False
        for label, variant_runs in sorted(by_variant.items()):
            log = load_train_log(variant_runs[0])  # first seed: a training curve, not a mean
            steps = [row["step"] for row in log]
            for ax, key in zip(axes, ("train/g_loss", "train/d_acc")):
                values = [row.get(key) for row in log]
                if any(v is not None for v in values):
                    ax.plot(steps, values, label=label)
                    drew = True
        for ax, key in zip(axes, ("train/g_loss", "train/d_acc")):
            ax.set_xlabel("step")
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
        fig.suptitle(f"Training curves: {dataset} (seed of the first run)")
        fig.tight_layout()
        if drew:
            path = plot_dir / f"training_{dataset}.png"
            fig.savefig(path, dpi=90)
            written.append(path)
        plt.close(fig)
    return written


def _metric_bars(plt, table: pd.DataFrame, dataset: str, plot_dir: Path) -> Path | None:
    """nll_test, BLEU-5, Self-BLEU-5 and disc_acc per row: mean with its 95% interval."""
    metrics = [m for m in ("nll_test", "bleu_5", "self_bleu_5", "disc_acc")
               if m in table and table[m].notna().any()]
    if not metrics or len(table) < 2:
        return None
    labels = [f"{v} {b}" for v, b in zip(table["variant"], table["budget"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.5 * len(labels) + 2),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        means = table[metric]
        errors = (table[f"{metric}_high"] - table[f"{metric}_low"]).fillna(0) / 2
        ax.barh(range(len(labels)), means, xerr=errors, color="#1f77b4", alpha=0.8)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels if ax is axes[0][0] else [], fontsize=7)
        ax.set_title(metric)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{dataset}: mean and 95% interval over seeds")
    fig.tight_layout()
    path = plot_dir / f"metrics_{dataset}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
