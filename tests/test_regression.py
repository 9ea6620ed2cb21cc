"""The regression check fails on a perturbed metric, a metric outside its band and a slowed hot
path, passes otherwise; bands are worked out by hand. (Planted bugs in the metric code:
test_regression_mutations.py.)"""

import json
import os
import subprocess
import sys

import pytest

from bench.regression import (
    band_key,
    band_of,
    bands_from_samples,
    compare_bands,
    compare_metrics,
    compare_speed,
    speed_ratios,
    tolerance_for,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_metric_comparison_uses_stated_tolerances():
    baseline = {"run": {"bleu_5": 0.30, "nll_test": 4.00, "status_ok": 1.0}}
    assert tolerance_for("bleu_5") == 0.01 and tolerance_for("self_bleu_3") == 0.01
    assert compare_metrics({"run": {"bleu_5": 0.305, "nll_test": 4.01, "status_ok": 1.0}},
                           baseline) == []
    problems = compare_metrics({"run": {"bleu_5": 0.32, "nll_test": 4.0, "status_ok": 1.0}},
                               baseline)
    assert len(problems) == 1 and "bleu_5" in problems[0]
    assert compare_metrics({}, baseline) == ["run: missing from this run"]
    assert "status_ok" in compare_metrics(
        {"run": {"bleu_5": 0.30, "nll_test": 4.0, "status_ok": 0.0}}, baseline)[0]


def test_bands_worked_by_hand():
    # Stable (MLE) runs: seed 0 +- 4 sd. Samples 5.0, 5.1, 5.2: sd 0.1, so 5.0 +- 0.4.
    low, high = band_of([5.0, 5.1, 5.2], 5.0, stable=True, floor=0.02)
    assert (round(low, 9), round(high, 9)) == (4.6, 5.4)
    # ... never narrower than the floor: one sample, sd 0.
    assert band_of([5.0], 5.0, stable=True, floor=0.02) == (4.98, 5.02)
    # Adversarial runs: the range 0.10..0.30 widened by its width (0.2) on each side.
    low, high = band_of([0.10, 0.30, 0.20], 0.20, stable=False, floor=0.005)
    assert (round(low, 9), round(high, 9)) == (-0.1, 0.5)
    low, high = band_of([0.5, 0.5], 0.5, stable=False, floor=0.03)
    assert (round(low, 9), round(high, 9)) == (0.47, 0.53)


def test_bands_from_samples_and_their_check():
    samples = {"mle_lstm/coco": {"nll_test": [5.0, 5.1, 5.2], "bleu_5": [0.1, 0.1, 0.1]},
               "seqgan/coco": {"nll_test": [7.0, 9.0], "unbanded": [1.0, 2.0]}}
    seed0 = {"mle_lstm/coco": {"nll_test": 5.0, "bleu_5": 0.1},
             "seqgan/coco": {"nll_test": 7.0, "unbanded": 1.0}}
    bands = bands_from_samples(samples, seed0)
    assert set(bands["seqgan/coco"]) == {"nll_test"}  # no floor, no band
    assert bands["seqgan/coco"]["nll_test"]["low"] == 5.0
    assert bands["seqgan/coco"]["nll_test"]["high"] == 11.0
    assert bands["mle_lstm/coco"]["bleu_5"]["kind"] == "seed0 +- sd"
    assert band_key("seqgan__coco__30steps__seed0__cfg2ac91d5e") == "seqgan/coco"
    inside = {"mle_lstm__coco__30steps__seed0": {"nll_test": 5.3, "bleu_5": 0.104,
                                                  "status_ok": 1.0},
              "seqgan__coco__30steps__seed0__cfgab": {"nll_test": 9.9, "status_ok": 1.0}}
    assert compare_bands(inside, bands) == []
    outside = {**inside, "seqgan__coco__30steps__seed0__cfgab": {"nll_test": 11.2,
                                                                  "status_ok": 1.0}}
    (problem,) = compare_bands(outside, bands)
    assert "nll_test = 11.2000, outside its band [5.0000, 11.0000]" in problem
    not_ok = {**inside, "mle_lstm__coco__30steps__seed0": {"nll_test": float("nan"),
                                                            "bleu_5": 0.1, "status_ok": 0.0}}
    problems = compare_bands(not_ok, bands)
    assert any("did not end ok" in p for p in problems)
    assert any("nll_test missing or not finite" in p for p in problems)
    assert compare_bands({}, bands) == ["mle_lstm/coco: missing from this run",
                                        "seqgan/coco: missing from this run"]


def test_speed_ratios_pair_ours_with_reference():
    run = {"benchmarks": [
        {"extra_info": {"pair": "p", "role": "ours"}, "stats": {"min": 3.0, "median": 4.0}},
        {"extra_info": {"pair": "p", "role": "ref"}, "stats": {"min": 2.0, "median": 2.1}},
        {"extra_info": {}, "stats": {"min": 9.0, "median": 9.0}},
    ]}
    assert speed_ratios(run) == {"p": 1.5}
    assert compare_speed({"p": 3.5}, {"p": 1.2}) == []  # within x3
    assert "p" in compare_speed({"p": 3.7}, {"p": 1.2})[0]


def test_smoke_child_runs_pinned_kernels(monkeypatch):
    """The smoke's child process really runs ATen's AVX2 kernels, whatever this CPU offers (an
    AVX-512 machine runs AVX512 kernels by default). MKL's branch is not observable from
    Python (libtorch does not export mkl_cbwr_get)."""
    import torch

    from bench.regression import smoke_environment

    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("the pinned code path needs an x86 CPU with AVX2")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    probe = ("import torch; print(torch.backends.cpu.get_cpu_capability()); "
             "print(torch.backends.mkl.is_available())")
    child = subprocess.run([sys.executable, "-c", probe], env=smoke_environment(),
                           capture_output=True, text=True, timeout=120, check=True)
    assert child.stdout.split() == ["AVX2", "True"]
    # A setting of the caller's own wins: the regression check runs under another kernel
    # capability when asked (ATEN_CPU_CAPABILITY=default: ATen's scalar kernels).
    other = subprocess.run([sys.executable, "-c", probe],
                           env={**smoke_environment(), "ATEN_CPU_CAPABILITY": "default"},
                           capture_output=True, text=True, timeout=120, check=True)
    assert other.stdout.split()[0] == "DEFAULT"
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    assert smoke_environment()["ATEN_CPU_CAPABILITY"] == "default"


def regression(args, cwd, env_extra=None):
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "bench.regression", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_perturbed_metric_fails_the_regression_session(tmp_path, tiny_text_dir):
    """--update stores this platform's exact baseline under its fingerprint and the bands; a
    metric moved beyond the exact tolerance fails, and so does one moved out of its band on a
    platform with no exact baseline (whose output says that only bands were checked)."""
    from bench.cli import main

    runs = tmp_path / "runs"
    assert main(["run", "--variant", "mle_lstm", "--dataset", str(tiny_text_dir), "--budget",
                 "5steps", "--out", str(runs), "--quiet", "--set", "hidden_dim=8",
                 "--eval", "num_samples=40", "--eval", "temperatures=", "--eval",
                 "disc_acc=false"]) == 0
    common = ["--skip-speed", "--skip-golden", "--smoke-dir", str(runs), "--baseline-dir",
              str(tmp_path / "b")]
    assert regression([*common, "--update", "--band-dirs", str(runs)], tmp_path).returncode == 0
    passing = regression(common, tmp_path)
    assert passing.returncode == 0, passing.stderr
    assert "smoke exact checks: fingerprint" in passing.stdout
    baseline_path = tmp_path / "b" / "metrics_baseline.json"
    baseline = json.loads(baseline_path.read_text())
    (fingerprint,) = baseline["exact"]  # --update stored this platform's numerics alone
    run = next(iter(baseline["exact"][fingerprint]["runs"]))
    baseline["exact"][fingerprint]["runs"][run]["bleu_4"] += 0.05  # beyond the 0.01 tolerance
    baseline_path.write_text(json.dumps(baseline))
    failing = regression(common, tmp_path)
    assert failing.returncode == 1
    assert "REGRESSION" in failing.stderr and "bleu_4" in failing.stderr
    # Another platform's numerics: no exact baseline, no fallback; the bands still hold it.
    baseline["exact"] = {"0123456789abcdef": baseline["exact"][fingerprint]}
    baseline_path.write_text(json.dumps(baseline))
    bands_only = regression(common, tmp_path)
    assert bands_only.returncode == 0, bands_only.stderr
    assert "band checks only" in bands_only.stdout
    (band,) = baseline["bands"].values()
    band["bleu_4"]["low"] += 0.5  # the run's bleu_4 is now below its band
    baseline_path.write_text(json.dumps(baseline))
    out_of_band = regression(common, tmp_path)
    assert out_of_band.returncode == 1 and "outside its band" in out_of_band.stderr


SLOWABLE_BENCHMARK = '''
import os, pytest

def work(n):
    return sum(i * i for i in range(n))

@pytest.mark.benchmark(group="toy")
def test_ours(benchmark):
    benchmark.extra_info.update({"pair": "toy", "role": "ours"})
    slowdown = int(os.environ.get("TOY_SLOWDOWN", "1"))
    benchmark(work, 20000 * slowdown)

@pytest.mark.benchmark(group="toy")
def test_reference(benchmark):
    benchmark.extra_info.update({"pair": "toy", "role": "ref"})
    benchmark(work, 20000)
'''


def test_slowed_hot_path_fails_the_regression_session(tmp_path):
    bench_file = tmp_path / "bench_toy.py"
    bench_file.write_text(SLOWABLE_BENCHMARK)
    # A wide threshold and a 10x slow-down: the toy timings are milliseconds on a machine that
    # may be busy, so the unslowed check must not trip on noise, and the slowed one must trip.
    common = ["--skip-metrics", "--skip-golden", "--benchmarks", str(bench_file), "--baseline-dir",
              str(tmp_path / "b"), "--speed-threshold", "3"]
    assert regression([*common, "--update"], tmp_path).returncode == 0
    stored = json.loads((tmp_path / "b" / "speed_baseline.json").read_text())
    assert 0.2 < stored["toy"] < 5  # the same work on both sides
    assert regression(common, tmp_path).returncode == 0
    slowed = regression(common, tmp_path, {"TOY_SLOWDOWN": "10"})  # the hot path 10x slower
    assert slowed.returncode == 1
    assert "speed toy" in slowed.stderr


def test_golden_comparison_and_groups_by_hand():
    from bench.golden import compare_golden, group_of
    from bench.golden import tolerance_for as golden_tolerance

    stored = {"coco/bleu_2": 0.25, "coco/lstm/nll_test": 5.0, "coco/disc_acc": 0.80}
    # Counting metrics exact, NLL to 1e-6, disc_acc to 0.05.
    assert golden_tolerance("coco/self_bleu_5") == 0.0 and golden_tolerance("x/nll_test") == 1e-6
    assert compare_golden({"coco/bleu_2": 0.25, "coco/lstm/nll_test": 5.0000009,
                           "coco/disc_acc": 0.84}, stored) == []
    problems = compare_golden({"coco/bleu_2": 0.25 + 1e-12, "coco/lstm/nll_test": 5.000002,
                               "coco/disc_acc": 0.86, "coco/new": 1.0}, stored)
    assert [p.split()[1] for p in problems] == ["coco/bleu_2", "coco/disc_acc",
                                                "coco/lstm/nll_test", "coco/new:"]
    assert compare_golden({}, {"coco/bleu_2": 0.25}) == [
        "golden coco/bleu_2: missing (expected 0.25)"]
    assert [group_of(n) for n in ("coco/bleu_2", "coco/rouge_l", "coco/disc_acc",
                                  "coco/lstm/oov_rate", "coco/gpt2/nll_test",
                                  "oracle/nll_oracle", "oracle/lstm/nll_test",
                                  "budget/charged_construction")] == [
        "text", "text", "disc_acc", "lstm", "gpt2", "oracle", "oracle", "budget"]


def test_numerics_fingerprint_is_stable_and_moves_with_the_kernels():
    """The same process settings give the same fingerprint (it keys exact baselines); ATen's
    scalar kernels round differently from its vector ones, and the fingerprint says so."""
    import torch

    probe = "from bench.golden import numerics_fingerprint as f; print(f())"
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    env.pop("ATEN_CPU_CAPABILITY", None)

    def fingerprint(**extra):
        return subprocess.run([sys.executable, "-c", probe], env={**env, **extra},
                              capture_output=True, text=True, timeout=120,
                              check=True).stdout.strip()

    first = fingerprint()
    assert len(first) == 16 and fingerprint() == first
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        assert fingerprint(ATEN_CPU_CAPABILITY="default") != first
