"""Suites: validation errors, and SIGKILL at several moments followed by a resume that ends with
the same table as an uninterrupted run (steps budgets are deterministic)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.errors import GanbenchError
from bench.report import is_timing_column
from bench.suite import load_suite

SUITE = """
name = "resume-test"
variants = ["mle_lstm"]
datasets = ["{dataset}"]
seeds = [0, 1]
budgets = ["{budget}"]
checkpoint_every = 0.05

[evaluation]
num_samples = 60
curve_samples = 30
temperatures = [1.0]
disc_acc = false
reference_metrics = false

[config.mle_lstm]
embedding_dim = 16
hidden_dim = 16
"""


def write_suite(tmp_path: Path, dataset: Path, budget: str = "120steps") -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.format(dataset=dataset.as_posix(), budget=budget))
    return path


def start_suite(suite: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "bench.cli", "suite", str(suite), "--out",
                             str(out), "--quiet", "--threads", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(predicate, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def table(out: Path) -> pd.DataFrame:
    frame = pd.read_csv(out / "results.csv")
    return frame[[c for c in frame.columns if not is_timing_column(c)]]


def test_sigkill_at_several_moments_then_resume_equals_uninterrupted(tmp_path, tiny_text_dir):
    suite = write_suite(tmp_path, tiny_text_dir)
    reference = tmp_path / "reference"
    assert start_suite(suite, reference).wait(timeout=300) == 0

    out = tmp_path / "killed"
    moments = [
        lambda: bool(list(out.rglob("checkpoint.safetensors"))),  # mid-training, checkpointed
        lambda: len(list(out.rglob("record.json"))) >= 1,  # between runs
    ]
    kept_records = {}
    for moment in moments:
        process = start_suite(suite, out)
        reached = wait_for(moment, process)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert reached, "the suite ended before the kill moment"
        for record in out.rglob("record.json"):
            kept_records.setdefault(record, record.read_bytes())
    # A kill during startup, before anything is written.
    process = start_suite(suite, out)
    time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()

    resumed = start_suite(suite, out)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr.decode()
    log = stderr.decode()
    assert "complete, skipped" in log  # the finished run was not redone
    for record, content in kept_records.items():
        assert record.read_bytes() == content  # completed records untouched
    pd.testing.assert_frame_equal(table(out), table(reference))


@pytest.mark.parametrize("content, message", [
    ("variants = [\"mle_lstm\"]\ndatasets = [\"coco\"]\n", "missing 'budgets'"),
    ("variants = [\"nope\"]\ndatasets = [\"coco\"]\nbudgets = [\"1s\"]\n", "unknown variant"),
    ("variants = [\"mle_lstm\"]\ndatasets = [\"coco\"]\nbudgets = [\"abc\"]\n", "bad budget"),
    ("variants = [\"mle_lstm\"]\ndatasets = [\"coco\"]\nbudgets = [\"1s\"]\n"
     "[config.mle_lstm]\nhidden_dim = \"wide\"\n", "hidden_dim must be a int"),
    ("variants = [\"mle_lstm\"]\ndatasets = [\"nowhere\"]\nbudgets = [\"1s\"]\n",
     "unknown corpus"),
    ("variants = [\"mle_lstm\"\n", "not valid TOML"),
    ("colour = \"blue\"\n", "unknown key"),
])
def test_bad_suite_files_are_one_clear_error(tmp_path, content, message, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(GanbenchError, match=message):
        load_suite(str(path))
    out = tmp_path / "out"
    assert main(["suite", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ganbench: error:")
    assert not out.exists()


def test_shipped_suites_validate():
    for name in ("smoke", "standard", "gpu"):
        suite = load_suite(name)
        assert suite.runs
