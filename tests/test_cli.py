"""The real CLI end to end: runs, records, reports, and one clear line for every bad input."""

import json
import shutil

import pandas as pd
import pytest

from bench.cli import main
from bench.records import REQUIRED_FIELDS

FAST_EVAL = ["--eval", "num_samples=120", "--eval", "curve_samples=60",
             "--eval", "temperatures=0.8,1.2", "--eval", "disc_acc=false"]
TINY_LSTM = ["--set", "embedding_dim=16", "--set", "hidden_dim=16"]


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def only_record(out_dir):
    records = list(out_dir.rglob("record.json"))
    assert len(records) == 1
    return json.loads(records[0].read_text())


def test_seconds_budget_is_enforced_and_record_complete(tmp_path, capsys):
    # The device asked for explicitly: on a GPU machine "auto" would train on the GPU.
    code, out, err = run_cli(["run", "--variant", "mle_lstm", "--dataset", "oracle", "--budget",
                              "3s", "--seed", "0", "--out", str(tmp_path), "--quiet",
                              "--device", "cpu", *TINY_LSTM, *FAST_EVAL], capsys)
    assert code == 0, err
    record = only_record(tmp_path)
    for name in REQUIRED_FIELDS + ("samples", "curve", "reason"):
        assert name in record
    budget = record["budget"]
    step_seconds = budget["seconds"] / budget["steps"]
    # Stops within 2% of the budget plus one step (the check runs before every step).
    assert 3.0 <= budget["seconds"] <= 3.0 * 1.02 + step_seconds
    assert record["status"] == "ok" and record["seed"] == 0
    assert record["dataset"]["name"] == "oracle" and record["dataset"]["sha256"]
    metrics = record["metrics"]
    for name in ("bleu_2", "bleu_5", "self_bleu_2", "self_bleu_5", "nll_test", "nll_oracle",
                 "train_tokens_per_s", "sample_tokens_per_s", "distinct_1"):
        assert metrics[name] is not None, name
    assert len(record["samples"]) == metrics["num_samples"] == 120
    assert [p["temperature"] for p in record["curve"]] == [0.8, 1.2]
    assert record["timings"]["eval_seconds"] > 0
    assert record["environment"]["torch"] and record["environment"]["device"] == "cpu"
    assert record["config"]["hidden_dim"] == 16  # --set over the oracle's defaults
    assert json.loads(out)["record"].endswith("record.json")


def test_steps_budget_runs_are_identical(tmp_path, capsys, tiny_text_dir):
    metrics = []
    for name in ("a", "b"):
        code, _, err = run_cli(["run", "--variant", "mle_lstm", "--dataset", str(tiny_text_dir),
                                "--budget", "25steps", "--out", str(tmp_path / name), "--quiet",
                                *TINY_LSTM, *FAST_EVAL], capsys)
        assert code == 0, err
        record = only_record(tmp_path / name)
        assert record["budget"]["steps"] == 25
        metrics.append({k: v for k, v in record["metrics"].items() if not k.endswith("_per_s")})
        metrics[-1]["curve"] = record["curve"]
    assert metrics[0] == metrics[1]


def _wrong_checksum_dir(tmp_path, data_dir):
    shutil.copytree(data_dir / "coco", tmp_path / "bad" / "coco")
    path = tmp_path / "bad" / "coco" / "test.txt"
    path.chmod(0o644)
    path.write_text("tampered\n")
    return tmp_path / "bad"


@pytest.mark.parametrize("case", ["empty", "not_utf8", "unknown_variant", "unknown_corpus",
                                  "zero_budget", "abc_budget", "wrong_checksum", "unwritable",
                                  "bad_set"])
def test_bad_input_is_one_line_and_writes_no_record(case, tmp_path, capsys, data_dir):
    out = tmp_path / "out"
    args = {"variant": "mle_lstm", "dataset": "coco", "budget": "2steps"}
    extra = []
    if case == "empty":
        (tmp_path / "empty.txt").write_text("")
        args["dataset"] = str(tmp_path / "empty.txt")
    elif case == "not_utf8":
        (tmp_path / "latin1.txt").write_bytes(b"un caf\xe9\nune autre ligne\n")
        args["dataset"] = str(tmp_path / "latin1.txt")
    elif case == "unknown_variant":
        args["variant"] = "no_such_variant"
    elif case == "unknown_corpus":
        args["dataset"] = "no_such_corpus"
    elif case == "zero_budget":
        args["budget"] = "0"
    elif case == "abc_budget":
        args["budget"] = "abc"
    elif case == "wrong_checksum":
        extra = ["--data-dir", str(_wrong_checksum_dir(tmp_path, data_dir))]
    elif case == "unwritable":
        blocker = tmp_path / "a_file"
        blocker.write_text("")
        out = blocker / "out"  # a folder under a file cannot be made, even by root
    elif case == "bad_set":
        extra = ["--set", "hidden_dim=big"]
    if case != "wrong_checksum":
        extra += ["--data-dir", str(data_dir)]
    code, _, err = run_cli(["run", "--variant", args["variant"], "--dataset", args["dataset"],
                            "--budget", args["budget"], "--out", str(out), "--quiet", *extra],
                           capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganbench: error: "), err
    assert "Traceback" not in err
    assert not list(tmp_path.rglob("record.json"))


def test_report_table_over_seeds(tmp_path, capsys, tiny_text_dir):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        code, _, err = run_cli(["run", "--variant", "mle_lstm", "--dataset", str(tiny_text_dir),
                                "--budget", "10steps", "--seed", str(seed), "--out", str(runs),
                                "--quiet", *TINY_LSTM, *FAST_EVAL], capsys)
        assert code == 0, err
    code, out, err = run_cli(["report", str(runs)], capsys)
    assert code == 0, err
    table = (runs / "results.md").read_text()
    assert "| mle_lstm" in table and "±" in table
    frame = pd.read_csv(runs / "results.csv")
    assert len(frame) == 1 and "bleu_5_low" in frame.columns
    row = frame.iloc[0]
    assert row["seeds"] == 2 and row["variant"].startswith("mle_lstm")
    assert row["bleu_5_low"] <= row["bleu_5"] <= row["bleu_5_high"]
    assert (runs / "report.html").exists()


def test_list_shows_variants_fields_and_corpora(capsys):
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0
    assert "mle_lstm" in out and "hidden_dim" in out and "chinese_poems" in out


def test_score_any_samples_file_as_json(tmp_path, capsys, data_dir, coco):
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    def nltk_bleu_5(hypotheses, references):  # the definition (METRICS.md), independently
        smooth = SmoothingFunction().method1
        return sum(sentence_bleu(references, h, weights=(0.2,) * 5, smoothing_function=smooth)
                   for h in hypotheses) / len(hypotheses)

    samples = tmp_path / "samples.txt"
    # Six sentences: nltk takes half a second for each against the 10,000 test sentences.
    samples.write_text("\n".join(coco.train_text()[:6]) + "\n")
    code, out, err = run_cli(["score", "--samples", str(samples), "--dataset", "coco",
                              "--data-dir", str(data_dir)], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert abs(result["bleu_5"] - nltk_bleu_5(coco.train[:6], coco.test)) < 1e-12
    assert result["copy_rate"] == 1.0  # training sentences, scored as samples
    for name in ("self_bleu_2", "sacrebleu", "sacrebleu_signature", "rouge_l", "distinct_4"):
        assert name in result
    refs = tmp_path / "refs.txt"
    refs.write_text("\n".join(coco.test_text()[:100]) + "\n")
    code, out, _ = run_cli(["score", "--samples", str(samples), "--refs", str(refs)], capsys)
    assert code == 0 and json.loads(out)["references"] == 100
    assert abs(json.loads(out)["bleu_5"] - nltk_bleu_5(coco.train[:6], coco.test[:100])) < 1e-12
    code, _, err = run_cli(["score", "--samples", str(tmp_path / "missing.txt"), "--refs",
                            str(refs)], capsys)
    assert code == 2 and err.startswith("ganbench: error:")


def test_help_names_every_variant_and_shipped_suite_and_list_shows_oracle_sizes(capsys):
    from pathlib import Path

    import baselines

    # Independent of the registry: the variant modules on disk (those that assign VARIANT;
    # adversarial_lstm.py and adversarial_gpt2.py are shared machinery) and the suite files.
    variant_files = {p.stem for p in Path(baselines.__file__).parent.glob("*.py")
                     if not p.stem.startswith("_") and "\nVARIANT = " in p.read_text()}
    assert len(variant_files) == 8
    suite_files = {p.stem for p in (Path(__file__).parents[1] / "bench" / "suites").glob("*.toml")}
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    assert exit_info.value.code == 0
    run_help = capsys.readouterr().out
    assert all(f"  {name}: " in run_help for name in variant_files)
    assert "(default: runs)" in run_help and "(default: auto)" in run_help
    with pytest.raises(SystemExit):
        main(["suite", "--help"])
    suite_help = capsys.readouterr().out
    assert all(f"  {name}: " in suite_help for name in suite_files)
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    # MLE LSTM: 64/128 on real corpora, SeqGAN's 32/32 on the oracle.
    assert "embedding_dim (int in [1, inf), default 64; oracle: 32)" in listing
    assert "hidden_dim (int in [1, inf), default 128; oracle: 32)" in listing
