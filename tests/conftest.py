"""Shared test setup: offline hub, one torch thread per worker, the shared corpora."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("GANBENCH_DATA") or REPO.parent / "shared" / "data")


def pytest_configure(config):
    import torch

    # Two torch processes with two threads each run 4x slower on 2 cores (pytest-xdist).
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (SHARED_DATA / "coco" / "train.txt").exists():
        pytest.fail(f"the shared corpora are missing: {SHARED_DATA} (set GANBENCH_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def coco(data_dir):
    from bench.corpora import load_corpus

    return load_corpus("coco", data_dir)


@pytest.fixture(scope="session")
def news(data_dir):
    from bench.corpora import load_corpus

    return load_corpus("news", data_dir)


@pytest.fixture(scope="session")
def oracle_corpus():
    from bench.corpora import load_oracle

    return load_oracle()


@pytest.fixture
def tiny_corpus(coco):
    """300 coco training sentences and 200 test sentences: seconds to train on."""
    from bench.corpora import Corpus

    return Corpus("coco_tiny", coco.train[:300], coco.test[:200], coco.tokenization)


@pytest.fixture
def tiny_text_dir(tmp_path, coco) -> Path:
    """A user corpus folder (train.txt / test.txt) cut from coco."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "train.txt").write_text("\n".join(coco.train_text()[:300]) + "\n")
    (folder / "test.txt").write_text("\n".join(coco.test_text()[:200]) + "\n")
    return folder


@pytest.fixture
def run_record(capsys):
    """Runs `ganbench run` in-process with a quick evaluation (no disc_acc, no reference
    metrics) and returns its record; the run must exit 0."""

    def run(variant: str, dataset, budget: str, out, settings: dict, num_samples: int = 40
            ) -> dict:
        import json

        from bench.cli import main

        sets = [arg for name, value in settings.items() for arg in ("--set", f"{name}={value}")]
        code = main(["run", "--variant", variant, "--dataset", str(dataset), "--budget", budget,
                     "--out", str(out), "--quiet", *sets,
                     "--eval", f"num_samples={num_samples}", "--eval", "curve_samples=20",
                     "--eval", "temperatures=1.0", "--eval", "disc_acc=false",
                     "--eval", "reference_metrics=false"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return json.loads(Path(json.loads(captured.out)["record"]).read_text())

    return run


@pytest.fixture
def divergence():
    """Why a training step's report ends its run, read as the harness reads it at a sync point
    (bench.runner, bench.step_values); None where it does not."""
    from bench.runner import _first_divergence
    from bench.step_values import PendingSteps

    def read(report) -> str | None:
        pending = PendingSteps()
        pending.add(1, report)
        return _first_divergence(pending.drain())[0]

    return read
