"""The real-text reference row (issue 25): half of the test split scored against the other half,
written by a suite, shown first in each corpus's headline table and in the full table."""

import json

import pytest

from bench.errors import GanbenchError
from bench.scoring import score_real_text


def corpus_folder(tmp_path, test_lines):
    folder = tmp_path / "corpus"
    folder.mkdir(parents=True)
    train = [f"w{i} x{i} y{i} z{i} ." for i in range(60)]
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "test.txt").write_text("\n".join(test_lines) + "\n")
    return folder


def test_halves_are_disjoint_and_identical_text_scores_one(tmp_path):
    # Every test sentence is made of words of its own but the final "." : a sentence scored
    # against itself would match all its n-grams. The halves share only ".", so BLEU-2 is
    # (p1 p2)^(1/2) with p1 = 1/6 (the ".") and p2 = 0 smoothed to 0.1/5 (nltk's method1,
    # METRICS.md), brevity penalty 1 (all lengths 6): sqrt(1/6 x 0.02) = 0.0577.
    distinct = corpus_folder(tmp_path / "a", [f"a{i} b{i} c{i} d{i} e{i} ." for i in range(40)])
    scores = score_real_text(str(distinct), 10)
    assert scores["samples"] == 10 and scores["references"] == 20
    assert scores["bleu_2"] == pytest.approx((1 / 6 * 0.1 / 5) ** 0.5)
    assert scores["self_bleu_2"] == pytest.approx((1 / 6 * 0.1 / 5) ** 0.5)
    # One sentence repeated: real text against real text is a perfect match, and as repetitive
    # as text can be.
    same = corpus_folder(tmp_path / "b", ["a man rides a horse on the beach ."] * 40)
    scores = score_real_text(str(same), 10)
    assert scores["bleu_5"] == pytest.approx(1.0) and scores["self_bleu_5"] == pytest.approx(1.0)
    with pytest.raises(GanbenchError, match="num_samples must be in 2..20"):
        score_real_text(str(same), 21)


SUITE = """
name = "tiny"
variants = ["mle_lstm"]
datasets = ["{dataset}"]
seeds = [0, 1]
budgets = ["5steps"]

[evaluation]
num_samples = 30
temperatures = []
disc_acc = false

[config.mle_lstm]
hidden_dim = 8
"""


def test_a_suite_writes_the_row_once_and_the_report_puts_it_first(tmp_path, tiny_text_dir):
    from bench.cli import main

    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE.format(dataset=tiny_text_dir.as_posix()))
    out = tmp_path / "out"
    assert main(["suite", str(suite), "--out", str(out), "--quiet"]) == 0
    (row_file,) = (out / "real_text").glob("*.json")
    row = json.loads(row_file.read_text())
    assert row["settings"]["num_samples"] == 30 and row["metrics"]["samples"] == 30
    markdown = (out / "results.md").read_text()
    headline, full = markdown.split("## Full table")
    lines = [line for line in headline.splitlines() if line.startswith("| ")]
    assert "bleu_5 ↑" in lines[0] and "nll_test_iv_per_word ↓" in lines[0]
    assert lines[1].startswith("| real text (test half)")  # first row of the corpus
    assert lines[2].startswith("| mle_lstm")
    assert f"{row['metrics']['bleu_5']:.3f}" in lines[1] and " ± " not in lines[1]
    assert "| real text (test half)" in full
    html = (out / "report.html").read_text()
    assert html.index("real text (test half)") < html.index("Full table")
    # A re-run resumes: the row is not computed again.
    before = row_file.stat().st_mtime_ns
    assert main(["suite", str(suite), "--out", str(out), "--quiet"]) == 0
    assert row_file.stat().st_mtime_ns == before


def test_a_broken_row_file_is_one_error_and_no_report(tmp_path, tiny_text_dir):
    from bench.cli import main

    out = tmp_path / "runs"
    assert main(["run", "--variant", "mle_lstm", "--dataset", str(tiny_text_dir), "--budget",
                 "3steps", "--out", str(out), "--quiet", "--set", "hidden_dim=8",
                 "--eval", "num_samples=20", "--eval", "temperatures=", "--eval",
                 "disc_acc=false"]) == 0
    (out / "real_text").mkdir()
    (out / "real_text" / "tiny.json").write_text("{not json")
    assert main(["report", str(out)]) != 0
    assert not (out / "results.md").exists()


def test_score_real_text_from_the_command_line(tmp_path, capsys):
    from bench.cli import main

    folder = corpus_folder(tmp_path, ["a man rides a horse on the beach ."] * 40)
    assert main(["score", "--real-text", "--dataset", str(folder), "--num-samples", "8"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 8 and result["bleu_2"] == pytest.approx(1.0)
    assert main(["score", "--real-text", "--refs", str(folder / "test.txt")]) != 0
