"""Proof that the golden regression check catches real bugs: each test plants one realistic bug
in a copy of the code (an exact source edit) and runs the real check on the copy, which must
fail naming the metric the bug breaks; the unchanged copy passes, also under ATen's scalar
kernels (another kernel capability than the pinned AVX2)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# name -> (file, exact source text, its replacement, the golden group the check runs (the one
# the bug breaks: a quicker check than all of them), a text the failure report must contain)
MUTATIONS = {
    "bleu_without_brevity_penalty": (
        "bench/metrics/bleu.py", "brevity_penalty * np.exp(log_mean)", "np.exp(log_mean)",
        "text", "golden coco/bleu_2"),
    "self_bleu_includes_the_hypothesis": (
        "bench/metrics/bleu.py", "    if len(pairs.count) == 0:\n        return own_counts\n",
        "    return own_counts  # its own n-grams count as matches\n", "text",
        "golden coco/self_bleu_2"),
    "lstm_nll_counts_padding": (
        "baselines/primitives/lstm.py", "        counted = targets != PAD\n",
        "        counted = torch.ones_like(targets, dtype=torch.bool)\n", "lstm",
        "golden coco/lstm/nll_test"),
    "gpt2_nll_counts_padding": (
        "baselines/primitives/hf.py", "        flat = self.mask.flatten()\n",
        "        flat = torch.ones_like(self.mask.flatten())\n", "gpt2",
        "golden coco/gpt2/nll_test"),
    "disc_acc_tested_on_its_training_sentences": (
        "bench/metrics/disc_acc.py",
        "test_real=real_test[:n_test], test_generated=generated_test[:n_test]",
        "test_real=real_train[:n_train], test_generated=generated_train[:n_train]",
        "disc_acc", "golden coco/disc_acc"),
    "budget_ignores_construction": (
        "bench/budget.py",
        "        self.construction_seconds += seconds\n        self.seconds += seconds\n",
        "        self.construction_seconds += seconds\n", "budget",
        "golden budget/steps_when_construction_exceeds_budget"),
}


@pytest.fixture(scope="module")
def data_available(data_dir):
    return data_dir


def copy_of_code(folder: Path) -> Path:
    """bench/, baselines/ and the stored golden baseline, where `python -m` finds them first."""
    for package in ("bench", "baselines"):
        shutil.copytree(REPO / package, folder / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "results" / "regression" / "golden",
                    folder / "results" / "regression" / "golden")
    shutil.copy(REPO / "results" / "regression" / "golden.json",
                folder / "results" / "regression" / "golden.json")
    return folder


def golden_check(folder: Path, data_dir: Path, groups: tuple[str, ...] = (), **env: str
                 ) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(folder), "GANBENCH_DATA": str(data_dir),
                   **env}
    command = [sys.executable, "-m", "bench.regression", "--skip-metrics", "--skip-speed"]
    if groups:
        command += ["--golden-groups", *groups]
    return subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True,
                          timeout=600)


def test_the_copy_is_what_runs(tmp_path):
    """The check must run the planted code, not the installed package."""
    folder = copy_of_code(tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import bench, baselines; "
                            "print(bench.__file__); print(baselines.__file__)"],
                           cwd=folder, env={**os.environ, "PYTHONPATH": str(folder)},
                           capture_output=True, text=True, check=True)
    assert all(line.startswith(str(folder)) for line in probe.stdout.split())


@pytest.mark.parametrize("capability", ["pinned", "default"])
def test_unchanged_code_passes(tmp_path, data_available, capability):
    folder = copy_of_code(tmp_path)
    env = {"ATEN_CPU_CAPABILITY": "default"} if capability == "default" else {}
    result = golden_check(folder, data_available, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "golden metrics: 34 values, 0 off" in result.stdout


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_planted_bug_fails_the_check(tmp_path, data_available, name):
    path, original, planted, group, expected = MUTATIONS[name]
    folder = copy_of_code(tmp_path)
    source = (folder / path).read_text(encoding="utf-8")
    assert source.count(original) == 1, f"{path} changed: re-aim the mutation {name}"
    (folder / path).write_text(source.replace(original, planted), encoding="utf-8")
    result = golden_check(folder, data_available, (group,))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "REGRESSION " + expected in result.stderr, result.stderr
