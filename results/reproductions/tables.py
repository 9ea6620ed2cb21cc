"""The reproduction tables (README.md here) from the run records beside this file.

    python results/reproductions/tables.py   # prints the two Markdown tables
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from scipy import stats

HERE = Path(__file__).resolve().parent

# Yu et al. 2017 (SeqGAN), Table 1: NLL_oracle on the synthetic data.
SEQGAN_PUBLISHED = {"random init": 10.310, "MLE (120 epochs)": 9.038, "SeqGAN (from MLE)": 8.736}
# Zhu et al. 2018 (Texygen), the COCO image-caption BLEU table, MLE row.
TEXYGEN_PUBLISHED = {"bleu_2": 0.731, "bleu_3": 0.497, "bleu_4": 0.305, "bleu_5": 0.189}


def records(folder: str) -> list[dict]:
    found = [json.loads(p.read_text()) for p in sorted((HERE / folder).glob("*/record.json"))]
    return [r for r in found if r["status"] == "ok"]


def mean_interval(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.3f} (1 seed)"
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return f"{mean:.3f} ± {half:.3f}"


def seeds_of(runs: list[dict]) -> str:
    return ", ".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"]))


def seqgan_table() -> str:
    runs = records("seqgan_table1")
    lines = ["| row | NLL_oracle, ours | published | nll_test, ours | budget | seeds |",
             "|---|---|---|---|---|---|"]
    for label, published in SEQGAN_PUBLISHED.items():
        rows = [r for r in runs if r["label"] == label]
        if not rows:
            lines.append(f"| {label} | not run | {published:.3f} | | | |")
            continue
        oracle = mean_interval([r["metrics"]["nll_oracle"] for r in rows])
        test = mean_interval([r["metrics"]["nll_test"] for r in rows])
        lines.append(f"| {label} | {oracle} | {published:.3f} | {test} | "
                     f"{rows[0]['budget']['given']} | {seeds_of(rows)} |")
    return "\n".join(lines)


def texygen_table() -> str:
    rows = records("texygen_coco")
    lines = ["| metric | ours | published (Texygen MLE) |", "|---|---|---|"]
    for metric, published in TEXYGEN_PUBLISHED.items():
        ours = mean_interval([r["metrics"][metric] for r in rows]) if rows else "not run"
        lines.append(f"| {metric.replace('_', '-').upper()} | {ours} | {published:.3f} |")
    for metric in ("self_bleu_2", "self_bleu_5", "nll_test"):
        ours = mean_interval([r["metrics"][metric] for r in rows]) if rows else "not run"
        lines.append(f"| {metric} | {ours} | |")
    lines.append(f"\nSeeds: {seeds_of(rows)}; budget {rows[0]['budget']['given']}."
                 if rows else "")
    return "\n".join(lines)


if __name__ == "__main__":
    print(seqgan_table())
    print()
    print(texygen_table())
