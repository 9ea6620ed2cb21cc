"""The regression check fails on a perturbed metric and on a slowed hot path, passes otherwise."""

import json
import os
import subprocess
import sys

import pytest

from bench.regression import (
    compare_metrics,
    compare_speed,
    compare_with_baselines,
    metrics_baselines,
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


def test_each_cpu_model_is_checked_against_its_own_baseline():
    """The pinned kernels still round differently on different CPU models (seqgan coco's
    nll_test 13.41 on an Intel Xeon, 11.41 on an AMD EPYC): a CPU with its own baseline is held
    to it, even where another CPU's would pass; a new model passes by matching any one."""
    baselines = {"AMD EPYC": {"run": {"nll_test": 11.41}},
                 "Intel Xeon": {"run": {"nll_test": 13.41}}}
    intel_run, amd_run = {"run": {"nll_test": 13.41}}, {"run": {"nll_test": 11.41}}
    assert compare_with_baselines(intel_run, baselines, "Intel Xeon") == ("Intel Xeon", [])
    used, problems = compare_with_baselines(amd_run, baselines, "Intel Xeon")
    assert used == "Intel Xeon" and len(problems) == 1 and "13.41" in problems[0]
    assert compare_with_baselines(amd_run, baselines, "Other CPU") == ("AMD EPYC", [])
    used, problems = compare_with_baselines({"run": {"nll_test": 12.4}}, baselines, "Other")
    assert len(problems) == 1  # matches neither: the closest one's problem is reported
    # A flat file (before per-CPU baselines) is one unnamed CPU's baseline.
    assert metrics_baselines(amd_run) == {"unnamed CPU": amd_run}
    assert metrics_baselines({"by_cpu": baselines}) == baselines


def test_speed_ratios_pair_ours_with_reference():
    run = {"benchmarks": [
        {"extra_info": {"pair": "p", "role": "ours"}, "stats": {"min": 3.0, "median": 4.0}},
        {"extra_info": {"pair": "p", "role": "ref"}, "stats": {"min": 2.0, "median": 2.1}},
        {"extra_info": {}, "stats": {"min": 9.0, "median": 9.0}},
    ]}
    assert speed_ratios(run) == {"p": 1.5}
    assert compare_speed({"p": 3.5}, {"p": 1.2}) == []  # within x3
    assert "p" in compare_speed({"p": 3.7}, {"p": 1.2})[0]


def test_smoke_child_runs_pinned_kernels():
    """The smoke's child process really runs ATen's AVX2 kernels, whatever this CPU offers (an
    AVX-512 machine runs AVX512 kernels by default). MKL's branch is not observable from
    Python (libtorch does not export mkl_cbwr_get)."""
    import torch

    from bench.regression import smoke_environment

    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("the pinned code path needs an x86 CPU with AVX2")
    probe = ("import torch; print(torch.backends.cpu.get_cpu_capability()); "
             "print(torch.backends.mkl.is_available())")
    child = subprocess.run([sys.executable, "-c", probe], env=smoke_environment(),
                           capture_output=True, text=True, timeout=120, check=True)
    assert child.stdout.split() == ["AVX2", "True"]


def regression(args, cwd, env_extra=None):
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "bench.regression", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_perturbed_metric_fails_the_regression_session(tmp_path, tiny_text_dir):
    from bench.cli import main

    runs = tmp_path / "runs"
    assert main(["run", "--variant", "mle_lstm", "--dataset", str(tiny_text_dir), "--budget",
                 "5steps", "--out", str(runs), "--quiet", "--set", "hidden_dim=8",
                 "--eval", "num_samples=40", "--eval", "temperatures=", "--eval",
                 "disc_acc=false"]) == 0
    common = ["--skip-speed", "--smoke-dir", str(runs), "--baseline-dir", str(tmp_path / "b")]
    assert regression([*common, "--update"], tmp_path).returncode == 0
    passing = regression(common, tmp_path)
    assert passing.returncode == 0, passing.stderr
    baseline_path = tmp_path / "b" / "metrics_baseline.json"
    baseline = json.loads(baseline_path.read_text())
    (own,) = baseline["by_cpu"].values()  # --update stored this CPU's baseline alone
    run = next(iter(own))
    own[run]["bleu_4"] += 0.05  # a deliberate perturbation beyond the 0.01 tolerance
    baseline_path.write_text(json.dumps(baseline))
    failing = regression(common, tmp_path)
    assert failing.returncode == 1
    assert "REGRESSION" in failing.stderr and "bleu_4" in failing.stderr


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
    common = ["--skip-metrics", "--benchmarks", str(bench_file), "--baseline-dir",
              str(tmp_path / "b"), "--speed-threshold", "3"]
    assert regression([*common, "--update"], tmp_path).returncode == 0
    stored = json.loads((tmp_path / "b" / "speed_baseline.json").read_text())
    assert 0.2 < stored["toy"] < 5  # the same work on both sides
    assert regression(common, tmp_path).returncode == 0
    slowed = regression(common, tmp_path, {"TOY_SLOWDOWN": "10"})  # the hot path 10x slower
    assert slowed.returncode == 1
    assert "speed toy" in slowed.stderr
