"""Reports from hand-made records: intervals, best marks, plots, HTML escaping, bad records."""

import json
import math

import pytest

from bench.cli import main
from bench.records import write_json_atomic


def fake_record(variant, seed, bleu_5, dataset="coco", status="ok", curve=None):
    return {
        "schema": 1, "run": f"{variant}__{dataset}__10steps__seed{seed}", "variant": variant,
        "config": {}, "dataset": {"name": dataset}, "seed": seed,
        "budget": {"given": "10steps", "amount": 10, "kind": "steps", "steps": 10},
        "status": status, "reason": None,
        "metrics": {"bleu_5": bleu_5, "self_bleu_5": 0.5, "nll_test": 3.0},
        "curve": curve or [{"temperature": 1.0, "bleu_5": bleu_5, "self_bleu_5": 0.5}],
        "timings": {}, "environment": {}, "samples": ["<script>alert(1)</script> a dog ."],
    }


def write_runs(folder, records):
    for record in records:
        write_json_atomic(folder / record["run"] / "record.json", record)


def test_interval_and_best_mark(tmp_path, capsys):
    # a: bleu_5 = 0.30, 0.32, 0.34 -> mean 0.32, sd 0.02, half = t(0.975, 2) * 0.02 / sqrt(3)
    #    = 4.302653 * 0.011547 = 0.049683. b: 0.10, 0.11, 0.12 -> mean 0.11, half 0.024842.
    # Intervals [0.2703, 0.3697] and [0.0852, 0.1348] are apart: a's bleu_5 is marked best.
    # self_bleu_5 is 0.5 everywhere (zero width, equal): nobody is marked.
    records = [fake_record("a", s, v) for s, v in enumerate((0.30, 0.32, 0.34))]
    records += [fake_record("b", s, v) for s, v in enumerate((0.10, 0.11, 0.12))]
    write_runs(tmp_path, records)
    assert main(["report", str(tmp_path)]) == 0
    capsys.readouterr()
    csv = (tmp_path / "results.csv").read_text().splitlines()
    header = csv[0].split(",")
    row_a = dict(zip(header, csv[1].split(",")))
    assert math.isclose(float(row_a["bleu_5"]), 0.32)
    assert math.isclose(float(row_a["bleu_5_high"]) - 0.32, 0.049683, abs_tol=1e-6)
    markdown = (tmp_path / "results.md").read_text()
    assert "**0.320 ± 0.050**" in markdown
    assert "**0.500" not in markdown
    html = (tmp_path / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert (tmp_path / "plots" / "curve_coco.png").stat().st_size > 1000


def test_overlapping_intervals_are_not_marked(tmp_path, capsys):
    records = [fake_record("a", s, v) for s, v in enumerate((0.30, 0.32, 0.34))]
    records += [fake_record("b", s, v) for s, v in enumerate((0.28, 0.31, 0.33))]
    write_runs(tmp_path, records)
    assert main(["report", str(tmp_path), "--no-plots"]) == 0
    capsys.readouterr()
    assert "**" not in (tmp_path / "results.md").read_text().split("\n\n", 1)[1]


@pytest.mark.parametrize("damage", ["missing_field", "nan_metric", "truncated"])
def test_bad_records_are_one_line_each_and_nothing_is_overwritten(tmp_path, capsys, damage):
    write_runs(tmp_path, [fake_record("a", 0, 0.3), fake_record("a", 1, 0.31)])
    assert main(["report", str(tmp_path), "--no-plots"]) == 0
    before = (tmp_path / "results.md").read_text()
    bad = tmp_path / "a__coco__10steps__seed1" / "record.json"
    if damage == "missing_field":
        record = json.loads(bad.read_text())
        del record["metrics"]
        bad.write_text(json.dumps(record))
    elif damage == "nan_metric":
        bad.write_text(bad.read_text().replace('"bleu_5": 0.31', '"bleu_5": NaN'))
    else:
        bad.write_text(bad.read_text()[:50])
    capsys.readouterr()
    assert main(["report", str(tmp_path), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(bad) in err
    assert len([line for line in err.splitlines() if str(bad) in line]) == 1
    assert (tmp_path / "results.md").read_text() == before


def _chromium():
    import os
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("CI"):
        pytest.fail("CI must install chromium (.ci/run does) for the screenshot test")
    pytest.skip("chromium is not installed (CI installs it)")


def test_html_report_renders_table_and_plots_in_headless_chromium(tmp_path, capsys):
    import subprocess

    from PIL import Image

    browser = _chromium()
    records = [fake_record("a", s, v, curve=[{"temperature": t, "bleu_5": v * t,
                                              "self_bleu_5": 0.4 * t} for t in (0.5, 1.0, 1.5)])
               for s, v in enumerate((0.30, 0.32, 0.34))]
    write_runs(tmp_path, records)
    assert main(["report", str(tmp_path)]) == 0
    capsys.readouterr()
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    "--window-size=1400,1400", (tmp_path / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = Image.open(shot).convert("RGB")
    pixels = list(image.getdata()) if not hasattr(image, "get_flattened_data") else list(
        image.get_flattened_data())
    # matplotlib's first line colour (#1f77b4) appears only if the plot image loaded.
    plot_blue = sum(1 for r, g, b in pixels if abs(r - 31) < 20 and abs(g - 119) < 20
                    and abs(b - 180) < 20)
    dark_text = sum(1 for r, g, b in pixels if r < 80 and g < 80 and b < 80)
    assert plot_blue > 50, "the quality-diversity plot did not render"
    assert dark_text > 500, "the table text did not render"


def test_disc_acc_is_ranked_by_closeness_to_half_not_by_lowness(tmp_path, capsys):
    # a: 0.50, 0.52, 0.54 -> 0.520 ± 0.0497 (t half-width as above); b: 0.20, 0.22, 0.24 ->
    # 0.220 ± 0.0497. Distance to 0.5: a in [0, 0.0697], b in [0.2303, 0.3297]: apart, a is
    # best. "Lower is better" would have marked b.
    records = []
    for variant, values in (("a", (0.50, 0.52, 0.54)), ("b", (0.20, 0.22, 0.24))):
        for seed, value in enumerate(values):
            record = fake_record(variant, seed, 0.3)
            record["metrics"]["disc_acc"] = value
            records.append(record)
    write_runs(tmp_path, records)
    assert main(["report", str(tmp_path), "--no-plots"]) == 0
    capsys.readouterr()
    markdown = (tmp_path / "results.md").read_text()
    assert "**0.520 ± 0.050**" in markdown and "**0.220" not in markdown
    assert "disc_acc →0.5" in markdown and "bleu_5 ↑" in markdown and "nll_test ↓" in markdown


def test_short_labels_keep_only_the_overrides_that_differ():
    from bench.labels import short_labels

    def rec(overrides):
        label = "v[" + ",".join(f"{k}={x}" for k, x in sorted(overrides.items())) + "]"
        return {"variant": "v", "label": label, "overrides": overrides}

    records = [rec({"n_layer": 2, "source": "seqgan", "ratio": 0.5}),
               rec({"n_layer": 2, "source": "seqgan", "ratio": 1.0}),
               rec({"n_layer": 2, "source": "mle_lstm", "ratio": 1.0}),
               {"variant": "w", "label": "w[n_layer=2]", "overrides": {"n_layer": 2}},
               {"variant": "w", "label": "my own name", "overrides": {"n_layer": 3}}]
    assert short_labels(records) == {
        "v[n_layer=2,ratio=0.5,source=seqgan]": "v ratio=0.5 source=seqgan",
        "v[n_layer=2,ratio=1.0,source=seqgan]": "v ratio=1.0 source=seqgan",
        "v[n_layer=2,ratio=1.0,source=mle_lstm]": "v ratio=1.0 source=mle_lstm",
        "w[n_layer=2]": "w", "my own name": "my own name"}


def test_training_curve_segments_never_join_two_phases_or_two_attempts():
    from bench.plots import latest_attempt, phase_segments

    log = [{"step": 1, "seconds": 1.0, "train/g_loss": 8.0, "train/phase": 0.0},
           {"step": 2, "seconds": 2.0, "train/g_loss": 7.0, "train/phase": 0.0},
           {"step": 3, "seconds": 3.0, "train/d_acc": 0.6, "train/phase": 1.0},
           {"step": 4, "seconds": 4.0, "train/g_loss": -0.1, "train/phase": 2.0},
           {"step": 5, "seconds": 5.0, "train/g_loss": 0.2, "train/phase": 2.0},
           # synthetic_augmentation's target model: MLE again, but another model
           {"step": 6, "seconds": 6.0, "train/g_loss": 9.0, "train/phase_augmentation": 2.0}]
    assert phase_segments(log, ("train/g_loss",), "seconds") == [
        (0.0, [1.0, 2.0], [8.0, 7.0]), (2.0, [4.0, 5.0], [-0.1, 0.2]), (0.0, [6.0], [9.0])]
    restarted = [{"step": 1}, {"step": 10}, {"step": 20}, {"step": 1}, {"step": 10}]
    assert [row["step"] for row in latest_attempt(restarted)] == [1, 10]


def test_report_page_groups_by_corpus_links_metrics_doc_and_explains_oracle_ids(tmp_path, capsys):
    from pathlib import Path

    records = [fake_record("a", 0, 0.3, dataset="oracle"), fake_record("b", 0, 0.2),
               fake_record("b", 1, 0.25, dataset="oracle")]
    write_runs(tmp_path, records)
    assert main(["report", str(tmp_path)]) == 0
    capsys.readouterr()
    page = (tmp_path / "report.html").read_text()
    assert page.index("<h2 id='coco'>") < page.index("<h2 id='oracle'>")
    coco, oracle = page.split("<h2 id='oracle'>")
    assert "token ids" in oracle and "token ids" not in coco
    assert "plots/curve_oracle.png" in oracle and "plots/curve_oracle.png" not in coco
    link = page.split("href='")[1].split("'")[0]
    assert link.endswith("docs/METRICS.md")
    target = (tmp_path / link).resolve()
    assert target.read_text() == (Path(__file__).parents[1] / "docs" / "METRICS.md").read_text()
    assert "class='table-box'" in page and "bleu_5 ↑" in page


def test_a_budget_sweep_gets_its_figure_and_one_budget_none(tmp_path, capsys):
    records = []
    for amount in (10, 100):
        for seed in range(2):
            record = fake_record("a", seed, 0.1 + amount / 1000)
            record["budget"] = {"given": f"{amount}steps", "amount": amount, "kind": "steps",
                                "steps": amount}
            record["run"] = f"a__coco__{amount}steps__seed{seed}"
            records.append(record)
    write_runs(tmp_path / "sweep", records)
    write_runs(tmp_path / "single", [fake_record("a", s, 0.3) for s in range(2)])
    assert main(["report", str(tmp_path / "sweep")]) == 0
    assert main(["report", str(tmp_path / "single")]) == 0
    capsys.readouterr()
    assert (tmp_path / "sweep" / "plots" / "budget_coco.png").stat().st_size > 1000
    assert not (tmp_path / "single" / "plots" / "budget_coco.png").exists()
    # no training logs in these records: no training figure rather than an empty one
    assert not (tmp_path / "single" / "plots" / "training_coco.png").exists()


def test_nll_is_never_marked_best_across_vocabularies():
    """A BPE row's nll_test counts its own tokens: against a word-level row no best is marked;
    between two word-level rows (nll_test equal to nll_test_per_word) it is; the per-word NLL
    on in-vocabulary sentences compares across both."""
    import pandas as pd

    from bench.report import best_marks

    def row(variant, per_token, per_word, iv):
        cells = {"dataset": "coco", "variant": variant, "budget": "30s"}
        for name, value in (("nll_test", per_token), ("nll_test_per_word", per_word),
                            ("nll_test_iv_per_word", iv)):
            cells.update({name: value, f"{name}_low": value - 0.01,
                          f"{name}_high": value + 0.01})
        return cells

    mixed = pd.DataFrame([row("mle_lstm", 4.5, 4.5, 4.0), row("gpt2_mle", 3.0, 5.0, 4.3)])
    assert best_marks(mixed) == {(0, "nll_test_iv_per_word")}
    words = pd.DataFrame([row("mle_lstm", 4.5, 4.5, 4.0), row("seqgan", 4.8, 4.8, 4.2)])
    assert best_marks(words) == {(0, "nll_test"), (0, "nll_test_per_word"),
                                 (0, "nll_test_iv_per_word")}


def test_plotted_intervals_stop_at_each_metrics_range():
    """Issue 23: a 2-seed t-interval drew BLEU-5 below 0 and disc_acc beyond 1."""
    from bench.plots import clipped_error

    def flat(error):
        return [error[0][0], error[1][0]]

    # BLEU-5 0.02 +- 0.05: down to 0 (0.02 below), up to 0.07.
    assert flat(clipped_error("bleu_5", 0.02, 0.05)) == pytest.approx([0.02, 0.05])
    assert flat(clipped_error("disc_acc", 0.98, 0.05)) == pytest.approx([0.05, 0.02])
    assert flat(clipped_error("nll_test", 4.0, 0.5)) == pytest.approx([0.5, 0.5])
    assert clipped_error("bleu_5", 0.3, float("nan")) is None  # one seed: no interval


def test_counts_read_as_whole_numbers_in_markdown_and_html(tmp_path, capsys):
    """Steps every seed agrees on read "10", not "10.0"; a mean of unequal counts keeps one
    decimal (10, 11, 13 -> 11.3)."""
    records = [fake_record("a", s, 0.3) for s in range(2)]
    records += [fake_record("b", s, 0.2) for s in range(3)]
    for record, steps in zip(records[2:], (10, 11, 13)):
        record["budget"]["steps"] = steps
    write_runs(tmp_path, records)
    assert main(["report", str(tmp_path), "--no-plots"]) == 0
    capsys.readouterr()
    html = (tmp_path / "report.html").read_text()
    assert "<td>10 ± 0</td>" in html and "10.0" not in html
    assert "11.3 ± " in html and "11.3 ± " in (tmp_path / "results.md").read_text()
