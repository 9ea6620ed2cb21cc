"""Variants run on SeqGAN's oracle through the same code as on the seeded one; a run can start
from an earlier run's generator (how the SeqGAN reproduction starts from its MLE run)."""

from __future__ import annotations

import pytest


def test_mle_lstm_on_seqgan_oracle_records_nll_oracle(tmp_path, run_record, data_dir,
                                                      monkeypatch):
    monkeypatch.setenv("GANBENCH_DATA", str(data_dir))
    record = run_record("mle_lstm", "seqgan_oracle", "2steps", tmp_path, {}, num_samples=200)
    assert record["dataset"]["name"] == "seqgan_oracle"
    assert record["config"]["embedding_dim"] == 32 and record["config"]["hidden_dim"] == 32
    # A generator two steps from random weights samples almost uniform tokens, which the
    # oracle scores about 11.4; its own samples score about 5.74.
    assert 10.8 < record["metrics"]["nll_oracle"] < 11.6
    assert (tmp_path / record["run"] / "artifacts" / "generator.safetensors").exists()


def test_a_run_starts_from_an_earlier_runs_generator(tmp_path, run_record, tiny_text_dir):
    first = run_record("mle_lstm", tiny_text_dir, "60steps", tmp_path / "a", {}, num_samples=20)
    weights = tmp_path / "a" / first["run"] / "artifacts" / "generator.safetensors"
    # One step at a vanishing learning rate: the model is the file's, so its test NLL is the
    # first run's to rounding; a fresh generator would score about log |V| (6.5 nats) here,
    # half a nat above the trained one.
    second = run_record("mle_lstm", tiny_text_dir, "1steps", tmp_path / "b",
                        {"init_generator": weights, "learning_rate": 1e-12}, num_samples=20)
    assert second["metrics"]["nll_test"] == pytest.approx(first["metrics"]["nll_test"],
                                                          abs=1e-5)


def test_init_generator_that_does_not_fit_is_one_line(tmp_path, capsys, tiny_text_dir):
    from bench.cli import main

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    code = main(["run", "--variant", "mle_lstm", "--dataset", str(tiny_text_dir), "--budget",
                 "1steps", "--out", str(tmp_path / "out"), "--quiet",
                 "--set", f"init_generator={bad}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("ganbench: error: init_generator")
    assert not any((tmp_path / "out").glob("*/record.json"))
