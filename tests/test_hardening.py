"""Bad inputs of every kind (issue 13): each is one line `ganbench: error: ...`, exit code 2, no
traceback, and nothing new in the output folder. Plus one writer per run folder, verified
checkpoints, and a final checkpoint that spares a kill during evaluation the retraining."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from bench.checkpoint import save_state
from bench.cli import main
from bench.locks import try_lock

REPO = Path(__file__).resolve().parent.parent
QUICK_EVAL = ["--eval", "num_samples=20", "--eval", "curve_samples=10", "--eval",
              "temperatures=1.0", "--eval", "disc_acc=false", "--eval", "reference_metrics=false"]
TINY_LSTM = ["--set", "embedding_dim=8", "--set", "hidden_dim=8"]


def run_args(dataset, out, *extra, variant="mle_lstm", budget="4steps") -> list[str]:
    return ["run", "--variant", variant, "--dataset", str(dataset), "--budget", budget,
            "--out", str(out), "--quiet", *QUICK_EVAL, *extra]


def snapshot(folder: Path) -> dict[str, bytes] | None:
    """Every file under folder with its content (None if the folder does not exist)."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(folder.rglob("*"))}


def call_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse exits by itself
        code = exit_.code
    return code, capsys.readouterr().err


def assert_one_line_refusal(code: int, err: str, expect: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("ganbench: error:"), err
    assert "Traceback" not in err
    assert expect.lower() in lines[0].lower(), err


# ---------------------------------------------------------------------------------------------
# The inputs: each case builds its argv from (tmp_path, corpus folder, out folder) and may set
# up files first (a bad record, a damaged checkpoint); `expect` is a piece of the message.

def _corpus_file(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _suite(tmp_path: Path, corpus: Path, **keys: str) -> Path:
    body = {"variants": '["mle_lstm"]', "datasets": f'["{corpus.as_posix()}"]',
            "budgets": '["4steps"]', **keys}
    path = tmp_path / "bad.toml"
    path.write_text("".join(f"{k} = {v}\n" for k, v in body.items()))
    return path


def _good_record() -> dict:
    return {"schema": 1, "run": "r", "variant": "mle_lstm", "label": "mle_lstm", "config": {},
            "dataset": {"name": "coco"}, "seed": 0,
            "budget": {"given": "4steps", "kind": "steps", "amount": 4.0, "steps": 4,
                       "seconds": 0.1},
            "status": "ok", "metrics": {"bleu_5": 0.1, "self_bleu_5": 0.2}, "curve": [],
            "timings": {}, "environment": {}, "samples": ["a b"]}


def _records_folder(tmp_path: Path, **broken) -> Path:
    """A report input: one good record and one with the given fields replaced."""
    folder = tmp_path / "records"
    for name, change in (("good", {}), ("bad", broken)):
        (folder / name).mkdir(parents=True)
        (folder / name / "record.json").write_text(json.dumps({**_good_record(), **change}))
    return folder


def _report(tmp_path, out, **broken) -> list[str]:
    return ["report", str(_records_folder(tmp_path, **broken)), "--out", str(out)]


def _run_dir_checkpoint(tmp_path, corpus, out, damage: Callable[[dict], dict] | None = None,
                        raw: bytes | None = None) -> list[str]:
    """A checkpoint where `run` will look for one: a fresh variant's real state, then damaged
    (or replaced by raw bytes)."""
    from bench.config import config_to_dict
    from bench.runner import CHECKPOINT_FILE, RunOptions, RunSpec, prepare

    argv = run_args(corpus, out, *TINY_LSTM)
    spec = RunSpec("mle_lstm", str(corpus), "4steps", 0,
                   {"embedding_dim": "8", "hidden_dim": "8"})
    run = prepare(spec, RunOptions(out_dir=out))
    path = run.run_dir / CHECKPOINT_FILE
    run.run_dir.mkdir(parents=True)
    if raw is not None:
        path.write_bytes(raw)
        return argv
    variant = run.variant_class(run.config, run.corpus, run.device, 0)
    state = {"variant": variant.state_dict(),
             "clock": {"seconds": 0.0, "steps": 1, "flops": 0.0, "tokens": 1},
             "torch_rng": torch.get_rng_state(), "cuda_rng": None,
             "config": config_to_dict(run.config), "spec": {}}
    save_state(path, damage(state) if damage else state)
    return argv


def _flip_bytes(tmp_path, corpus, out) -> list[str]:
    argv = _run_dir_checkpoint(tmp_path, corpus, out)
    path = next(out.rglob("checkpoint.safetensors"))
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # inside the tensor data, past the header
    path.write_bytes(bytes(data))
    return argv


def _without_checksum(tmp_path, corpus, out) -> list[str]:
    from safetensors.torch import save_file

    argv = _run_dir_checkpoint(tmp_path, corpus, out)
    path = next(out.rglob("checkpoint.safetensors"))
    save_file({"x": torch.zeros(2)}, str(path), metadata={"ganbench_state": "{}"})
    return argv


def _wrong_shape(state: dict) -> dict:
    target = state["variant"]["generator"]  # mle_lstm's model weights
    key = next(k for k, v in target.items() if isinstance(v, torch.Tensor) and v.dim() == 2)
    target[key] = torch.zeros(target[key].shape[0] + 1, target[key].shape[1])
    return state


def _pickle_only_model(tmp_path) -> str:
    folder = tmp_path / "pickled_model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    return str(folder)


def _locked_run(tmp_path, corpus, out, held: list) -> list[str]:
    from bench.runner import RunOptions, RunSpec, prepare

    spec = RunSpec("mle_lstm", str(corpus), "4steps", 0, {})
    run = prepare(spec, RunOptions(out_dir=out))
    held.append(try_lock(run.run_dir))  # as another process would hold it
    return run_args(corpus, out)


def _oracle_samples(tmp_path, lines: list[str]) -> list[str]:
    path = tmp_path / "samples.txt"
    path.write_text("\n".join(lines) + "\n")
    return ["score", "--samples", str(path), "--dataset", "oracle"]


ENORMOUS = "word " * 3000  # 15,000 characters on one line

# (id, class, argv builder, expected piece of the message)
CASES = [
    # 1. validated before anything is written
    ("set_grad_clip_nan", 1, lambda t, c, o, h: run_args(c, o, "--set", "grad_clip=nan"),
     "finite"),
    ("set_lr_inf", 1, lambda t, c, o, h: run_args(c, o, "--set", "learning_rate=inf"), "finite"),
    ("set_mle_fraction_nan", 1, lambda t, c, o, h: run_args(
        c, o, "--set", "mle_fraction=nan", variant="lstm_gan"), "finite"),
    ("set_hidden_dim_huge", 1, lambda t, c, o, h: run_args(c, o, "--set", "hidden_dim=200000"),
     "GiB"),
    ("set_layers_huge", 1, lambda t, c, o, h: run_args(
        c, o, "--set", "n_layer=10000000", variant="gpt2_mle"), "layer"),
    ("eval_curve_samples_huge", 1, lambda t, c, o, h: run_args(
        c, o, "--eval", "curve_samples=1000000000"), "limit"),
    ("set_bpe_vocab_huge", 1, lambda t, c, o, h: run_args(
        c, o, "--set", "bpe_vocab_size=1000000000", variant="gpt2_mle"), "limit"),
    ("set_model_path_missing", 1, lambda t, c, o, h: run_args(
        c, o, "--set", f"model_name_or_path={t}/no/such/model", variant="gpt2_mle"),
     "save_pretrained"),
    ("set_model_hub_offline", 1, lambda t, c, o, h: run_args(
        c, o, "--set", "model_name_or_path=nobody-has/this-model", variant="gpt2_mle"),
     "HF_HUB_OFFLINE"),
    ("set_unknown_field", 1, lambda t, c, o, h: run_args(c, o, "--set", "nosuch=1"),
     "no field"),
    ("set_int_not_whole", 1, lambda t, c, o, h: run_args(c, o, "--set", "hidden_dim=1.5"),
     "int"),
    ("set_no_equals", 1, lambda t, c, o, h: run_args(c, o, "--set", "hidden_dim"), "field=value"),
    ("source_set_nan", 1, lambda t, c, o, h: run_args(
        c, o, "--set", "source_set=learning_rate=nan", variant="synthetic_augmentation"),
     "source_set"),
    ("eval_encoder_unknown", 1, lambda t, c, o, h: run_args(
        c, o, "--eval", "disc_acc=true", "--eval", "disc_acc_encoder=bogus"), "encoder"),
    ("eval_temperature_nan", 1, lambda t, c, o, h: run_args(c, o, "--eval", "temperatures=nan"),
     "finite"),
    ("eval_num_samples_text", 1, lambda t, c, o, h: run_args(c, o, "--eval", "num_samples=abc"),
     "num_samples"),
    ("eval_unknown", 1, lambda t, c, o, h: run_args(c, o, "--eval", "nosuch=1"), "no field"),
    ("budget_1e400steps", 1, lambda t, c, o, h: run_args(c, o, budget="1e400steps"), "at most"),
    ("budget_1e400s", 1, lambda t, c, o, h: run_args(c, o, budget="1e400s"), "at most"),
    ("budget_1e400flops", 1, lambda t, c, o, h: run_args(c, o, budget="1e400flops"), "at most"),
    ("budget_zero", 1, lambda t, c, o, h: run_args(c, o, budget="0s"), "greater than zero"),
    ("budget_unit", 1, lambda t, c, o, h: run_args(c, o, budget="5parsecs"), "bad budget"),
    ("seed_huge", 1, lambda t, c, o, h: run_args(c, o, "--seed", str(2**70)), "seed"),
    ("seed_negative", 1, lambda t, c, o, h: run_args(c, o, "--seed", "-1"), "seed"),
    ("threads_zero", 1, lambda t, c, o, h: run_args(c, o, "--threads", "0"), "threads"),
    ("threads_absurd", 1, lambda t, c, o, h: run_args(c, o, "--threads", "100000"), "threads"),
    ("device_mps", 1, lambda t, c, o, h: run_args(c, o, "--device", "mps"), "device"),
    ("device_meta", 1, lambda t, c, o, h: run_args(c, o, "--device", "meta"), "device"),
    ("device_unknown", 1, lambda t, c, o, h: run_args(c, o, "--device", "tpu9"), "device"),
    ("dataset_dev_zero", 1, lambda t, c, o, h: run_args("/dev/zero", o), "regular file"),
    ("data_dir_is_file", 1, lambda t, c, o, h: run_args("coco", o, "--data-dir",
                                                        str(_corpus_file(t, ["x"]))), "is a file"),
    ("data_dir_train_not_regular", 1, lambda t, c, o, h: run_args(
        "coco", o, "--data-dir", str(_fifo_data_dir(t))), "regular file"),
    ("dataset_unknown", 1, lambda t, c, o, h: run_args("no_such_corpus", o), "unknown corpus"),
    ("checkpoint_every_nan", 1, lambda t, c, o, h: run_args(c, o, "--checkpoint-every", "nan"),
     "checkpoint"),
    ("checkpoint_every_negative", 1, lambda t, c, o, h: run_args(
        c, o, "--checkpoint-every", "-1"), "checkpoint"),
    ("train_subsample_negative", 1, lambda t, c, o, h: run_args(
        c, o, "--train-subsample", "-1"), "train-subsample"),
    ("suite_seed_negative", 1, lambda t, c, o, h: [
        "suite", str(_suite(t, c, seeds="[-1]")), "--out", str(o)], "seed"),
    ("suite_seed_text", 1, lambda t, c, o, h: [
        "suite", str(_suite(t, c, seeds='["a"]')), "--out", str(o)], "seeds"),
    ("suite_subsample_negative", 1, lambda t, c, o, h: [
        "suite", str(_suite(t, c, train_subsample="-2")), "--out", str(o)], "train_subsample"),
    ("suite_checkpoint_every_nan", 1, lambda t, c, o, h: [
        "suite", str(_suite(t, c, checkpoint_every="nan")), "--out", str(o)], "checkpoint"),
    ("suite_budget_overflow", 1, lambda t, c, o, h: [
        "suite", str(_suite(t, c, budgets='["1e400steps"]')), "--out", str(o)], "at most"),
    ("suite_hidden_dim_huge", 1, lambda t, c, o, h: [
        "suite", str(_suite(t, c, config='{mle_lstm = {hidden_dim = 300000}}')), "--out",
        str(o)], "GiB"),
    ("suite_out_is_file", 1, lambda t, c, o, h: [
        "suite", str(_suite(t, c)), "--out", str(_corpus_file(t, ["x"]))], "is a file"),
    ("run_out_is_file", 1, lambda t, c, o, h: run_args(c, _corpus_file(t, ["x"]) / "sub"),
     "is a file"),
    # 2. corpora too small, lines too long
    ("corpus_three_lines", 2, lambda t, c, o, h: run_args(
        _corpus_file(t, ["a b", "c d", "e f"]), o), "at least 4"),
    ("corpus_folder_one_test_line", 2, lambda t, c, o, h: run_args(_split_folder(t, 5, 1), o),
     "too small"),
    ("corpus_subsample_one", 2, lambda t, c, o, h: run_args(c, o, "--train-subsample", "1"),
     "too small"),
    ("corpus_enormous_line", 2, lambda t, c, o, h: run_args(
        _corpus_file(t, ["a b"] * 10 + [ENORMOUS]), o), "limit of 10,000"),
    ("corpus_empty", 2, lambda t, c, o, h: run_args(_corpus_file(t, ["", " "]), o),
     "no non-blank"),
    ("corpus_not_utf8", 2, lambda t, c, o, h: run_args(_binary_file(t), o), "UTF-8"),
    # 3. report: every record checked first, outputs checked
    ("report_budget_string", 3, lambda t, c, o, h: _report(t, o, budget="4steps"), "budget"),
    ("report_seed_text", 3, lambda t, c, o, h: _report(t, o, seed="zero"), "seed"),
    ("report_samples_numbers", 3, lambda t, c, o, h: _report(t, o, samples=[1, 2]), "samples"),
    ("report_curve_string", 3, lambda t, c, o, h: _report(t, o, curve="x"), "curve"),
    ("report_curve_values", 3, lambda t, c, o, h: _report(t, o, curve=[{"bleu_5": "x"}]),
     "curve"),
    ("report_dataset_number", 3, lambda t, c, o, h: _report(t, o, dataset={"name": 3}),
     "dataset"),
    ("report_status_unknown", 3, lambda t, c, o, h: _report(t, o, status="great"), "status"),
    ("report_metric_text", 3, lambda t, c, o, h: _report(t, o, metrics={"bleu_5": "high"}),
     "metric"),
    ("report_out_is_file", 3, lambda t, c, o, h: [
        "report", str(_records_folder(t)), "--out", str(_corpus_file(t, ["x"]))], "is a file"),
    ("report_no_folder", 3, lambda t, c, o, h: ["report", str(t / "nowhere"), "--out", str(o)],
     "no such folder"),
    # 4. one writer per run folder
    ("run_locked_by_another", 4, lambda t, c, o, h: _locked_run(t, c, o, h), "another"),
    # 5. checkpoints verified
    ("checkpoint_flipped_bytes", 5, lambda t, c, o, h: _flip_bytes(t, c, o), "sha256"),
    ("checkpoint_no_variant", 5, lambda t, c, o, h: _run_dir_checkpoint(
        t, c, o, lambda s: {k: v for k, v in s.items() if k != "variant"}), "lacks variant"),
    ("checkpoint_wrong_shape", 5, lambda t, c, o, h: _run_dir_checkpoint(t, c, o, _wrong_shape),
     "shape"),
    ("checkpoint_garbage", 5, lambda t, c, o, h: _run_dir_checkpoint(
        t, c, o, raw=b"\x00" * 64), "not a readable"),
    ("checkpoint_without_checksum", 5, lambda t, c, o, h: _without_checksum(t, c, o),
     "checksum"),
    # 6. no pickle
    ("discriminator_pickle_only", 6, lambda t, c, o, h: run_args(
        c, o, "--set", f"discriminator_name_or_path={_pickle_only_model(t)}",
        variant="gpt2_bert_gan"), "pickle"),
    ("model_pickle_only", 6, lambda t, c, o, h: run_args(
        c, o, "--set", f"model_name_or_path={_pickle_only_model(t)}", variant="gpt2_mle"),
     "safe_serialization"),
    # 8. score's input, argparse
    ("score_oracle_id_too_big", 8, lambda t, c, o, h: _oracle_samples(t, ["1 2 9999", "3 4"]),
     "oracle token id"),
    ("score_oracle_words", 8, lambda t, c, o, h: _oracle_samples(t, ["a man", "3 4"]),
     "oracle token id"),
    ("score_one_sample", 8, lambda t, c, o, h: _oracle_samples(t, ["3 4"]), "at least 2"),
    ("score_dev_zero", 8, lambda t, c, o, h: [
        "score", "--samples", "/dev/zero", "--dataset", "oracle"], "regular file"),
    ("argparse_missing_variant", 8, lambda t, c, o, h: ["run", "--dataset", "coco", "--budget",
                                                        "1s", "--out", str(o)], "--variant"),
    ("argparse_unknown_command", 8, lambda t, c, o, h: ["frobnicate"], "invalid choice"),
    ("argparse_seed_text", 8, lambda t, c, o, h: run_args(c, o, "--seed", "abc"), "int"),
    ("argparse_unknown_option", 8, lambda t, c, o, h: run_args(c, o, "--colour", "red"),
     "unrecognized"),
    # Issue 23's cases: a traceback, a run that never ends, argparse's riddle, a vague name.
    ("run_out_in_proc", 6, lambda t, c, o, h: run_args(c, Path("/proc/nope")),
     "nothing can be created in /proc"),
    ("report_out_in_proc", 6, lambda t, c, o, h: _report(t, Path("/proc/nope")),
     "nothing can be created in /proc"),
    ("suite_out_in_proc", 6, lambda t, c, o, h: [
        "suite", str(_suite(t, c)), "--out", "/proc/nope"], "nothing can be created in /proc"),
    ("budget_flops_unreachable", 2, lambda t, c, o, h: run_args(c, o, budget="1e30flops"),
     "at most 1e+21 flops"),
    ("budget_negative", 2, lambda t, c, o, h: run_args(c, o, budget="-5s"), "bad budget '-5s'"),
    ("dataset_no_such_file", 1, lambda t, c, o, h: run_args("nosuchfile.txt", o),
     "no file or folder of that name exists"),
]


def _split_folder(tmp_path: Path, n_train: int, n_test: int) -> Path:
    folder = tmp_path / "split"
    folder.mkdir()
    (folder / "train.txt").write_text("".join(f"a b {i}\n" for i in range(n_train)))
    (folder / "test.txt").write_text("".join(f"a c {i}\n" for i in range(n_test)))
    return folder


def _fifo_data_dir(tmp_path: Path) -> Path:
    """A data folder whose coco/train.txt is a FIFO: reading it would block forever."""
    folder = tmp_path / "data" / "coco"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "train.txt")
    (folder / "test.txt").write_text("a b\n")
    return tmp_path / "data"


def _binary_file(tmp_path: Path) -> Path:
    path = tmp_path / "binary.txt"
    path.write_bytes(b"ok line\n\xff\xfe bad\n" * 5)
    return path


def test_width_limit_is_sixteen_bytes_per_squared_width():
    from dataclasses import dataclass

    from bench.errors import GanbenchError
    from bench.guards import check_config_sizes

    @dataclass
    class Sizes:
        embedding_dim: int = 10
        hidden_dim: int = 1000  # the widest field is the one estimated
        num_layers: int = 2
        batch_size: int = 10**9  # not a width: never refused for memory

    check_config_sizes(Sizes(), memory_bytes=32_000_000)  # 16 x 2 x 1000^2 bytes: just fits
    with pytest.raises(GanbenchError, match="hidden_dim=1000 with 2 layer"):
        check_config_sizes(Sizes(), memory_bytes=31_999_999)


def test_every_class_has_cases():
    classes = {case[1] for case in CASES}
    assert classes >= {1, 2, 3, 4, 5, 6, 8}
    assert len(CASES) >= 40


@pytest.mark.parametrize("name,kind,build,expect", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line(name, kind, build, expect, tmp_path, capsys,
                                          tiny_text_dir):
    out = tmp_path / "out"
    held: list = []
    argv = build(tmp_path, tiny_text_dir, out, held)
    capsys.readouterr()
    before = snapshot(out)
    try:
        code, err = call_cli(argv, capsys)
    finally:
        for lock in held:
            lock.release()
    assert_one_line_refusal(code, err, expect)
    assert snapshot(out) == before


@pytest.mark.parametrize("argv", [
    ["run", "--variant", "mle_lstm", "--dataset", "/dev/zero", "--budget", "1s"],
    ["run", "--variant", "mle_lstm", "--dataset", "coco", "--budget", "1e400steps"],
    ["run", "--variant", "mle_lstm", "--dataset", "coco", "--budget", "1s", "--threads",
     "100000"],
    ["suite"],
], ids=["dev_zero", "budget_overflow", "threads_absurd", "argparse"])
def test_bad_input_in_a_real_process_has_no_traceback(argv, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "bench.cli", *argv, "--out", str(tmp_path / "o")]
                          if argv != ["suite"] else [sys.executable, "-m", "bench.cli", *argv],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganbench: error:"), done.stderr
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# One writer per run folder

CONCURRENT_SUITE = """
name = "concurrent"
variants = ["mle_lstm"]
datasets = ["{dataset}"]
seeds = [0, 1, 2]
budgets = ["60steps"]
checkpoint_every = 0.05

[evaluation]
num_samples = 20
curve_samples = 10
temperatures = [1.0]
disc_acc = false
reference_metrics = false

[config.mle_lstm]
embedding_dim = 8
hidden_dim = 8
"""


def test_two_processes_on_one_suite_folder_run_each_run_once(tmp_path, tiny_text_dir):
    suite = tmp_path / "suite.toml"
    suite.write_text(CONCURRENT_SUITE.format(dataset=tiny_text_dir.as_posix()))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "bench.cli", "suite", str(suite), "--out", str(out),
               "--quiet", "--threads", "1"]
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], errors
    started = sum(line.endswith(")") and ": running (" in line
                  for err in errors for line in err.splitlines())
    assert started == 3, errors  # every run trained by exactly one of the two
    for log in sorted(out.glob("*/train_log.jsonl")):
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        steps = [row["step"] for row in rows if "valid/nll" not in row]  # training rows
        assert steps == sorted(set(steps)), log
        assert steps[-1] == 60
    assert len(list(out.glob("*/record.json"))) == 3


def test_a_dead_holder_releases_its_lock(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from bench.locks import try_lock; "
                               f"lock = try_lock({str(folder)!r}); print('held', flush=True); "
                               "time.sleep(60)"],
                              env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert try_lock(folder) is None
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    lock = try_lock(folder)
    assert lock is not None
    lock.release()


# ---------------------------------------------------------------------------------------------
# Checkpoints: verified, and written when training ends

KILL_IN_EVALUATION = """
import os, signal, sys
import bench.runner
def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
bench.runner.evaluate_variant = killed
from bench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_during_evaluation_resumes_without_retraining(tmp_path, tiny_text_dir, capsys,
                                                          monkeypatch):
    from baselines.mle_lstm import MLELSTM

    args = [*run_args(tiny_text_dir, tmp_path / "killed", *TINY_LSTM, budget="30steps"),
            "--checkpoint-every", "1000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", KILL_IN_EVALUATION, *args], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    run_dir = next((tmp_path / "killed").iterdir())
    assert (run_dir / "checkpoint.safetensors").exists()
    assert not (run_dir / "record.json").exists()
    stale = run_dir / ".checkpoint.safetensors.killed.tmp"
    stale.write_bytes(b"half a checkpoint")  # what a write killed part-way leaves

    # A damaged copy is refused in one line, and --no-resume is the way past it.
    damaged = tmp_path / "damaged" / run_dir.name
    damaged.mkdir(parents=True)
    data = bytearray((run_dir / "checkpoint.safetensors").read_bytes())
    data[-5] ^= 0x01  # in the tensor bytes, past the header
    (damaged / "checkpoint.safetensors").write_bytes(bytes(data))
    damaged_args = [*args[:args.index("--out") + 1], str(tmp_path / "damaged"),
                    *args[args.index("--out") + 2:]]
    code, err = call_cli(damaged_args, capsys)
    assert_one_line_refusal(code, err, "sha256")

    steps_trained = []
    original = MLELSTM.train_step

    def counted(self, progress):
        steps_trained.append(progress)
        return original(self, progress)

    monkeypatch.setattr(MLELSTM, "train_step", counted)
    code, err = call_cli(args, capsys)
    assert code == 0, err
    record = json.loads((run_dir / "record.json").read_text())
    assert steps_trained == []  # resumed at the end of training: evaluation only
    assert record["resumed_from_step"] == 30 and record["budget"]["steps"] == 30
    assert not stale.exists()
    assert not (run_dir / "checkpoint.safetensors").exists()

    code, err = call_cli([*damaged_args, "--no-resume"], capsys)
    assert code == 0, err
    assert len(steps_trained) == 30
    fresh = json.loads((damaged / "record.json").read_text())
    assert fresh["resumed_from_step"] is None
    # The resumed evaluation is the uninterrupted one's: same weights, same sampling seeds.
    for name in ("bleu_5", "self_bleu_5", "nll_test"):
        assert record["metrics"][name] == fresh["metrics"][name], name


def test_outputs_follow_the_umask(tmp_path, tiny_text_dir, capsys):
    old = os.umask(0o022)
    try:
        code, err = call_cli(run_args(tiny_text_dir, tmp_path / "out", *TINY_LSTM), capsys)
        assert code == 0, err
        run_dir = next((tmp_path / "out").iterdir())
        assert call_cli(["report", str(tmp_path / "out"), "--no-plots"], capsys)[0] == 0
    finally:
        os.umask(old)
    for path in [run_dir / "record.json", run_dir / "samples.txt",
                 tmp_path / "out" / "results.md", tmp_path / "out" / "report.html"]:
        assert path.stat().st_mode & 0o777 == 0o644, path
    assert not list((tmp_path / "out").glob(".report-staging-*"))


def test_report_names_are_data(tmp_path, capsys):
    folder = tmp_path / "records"
    record = _good_record()
    record.update(label="<b>x</b> $\\alpha$", dataset={"name": "$a$/<i>b</i>"},
                  samples=["<script>alert(1)</script>"])
    (folder / "r").mkdir(parents=True)
    (folder / "r" / "record.json").write_text(json.dumps(record))
    code, err = call_cli(["report", str(folder), "--no-plots"], capsys)
    assert code == 0, err
    page = (folder / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt; $\\alpha$" in page
    assert sorted(p.name for p in folder.iterdir()) == ["r", "report.html", "results.csv",
                                                        "results.md"]


def test_plot_names_are_data(tmp_path, capsys):
    """A dataset named like a path and a label that is broken mathtext: the plots are written
    flat under plots/ and the label drawn as text (mathtext would raise on '$\\frac$')."""
    folder = tmp_path / "records"
    record = _good_record()
    record.update(label="$\\frac$ x", dataset={**record["dataset"], "name": "../$a$/b"},
                  curve=[{"temperature": 1.0, "bleu_5": 0.1, "self_bleu_5": 0.2}])
    (folder / "r").mkdir(parents=True)
    (folder / "r" / "record.json").write_text(json.dumps(record))
    code, err = call_cli(["report", str(folder)], capsys)
    assert code == 0, err
    plots = list((folder / "plots").iterdir())
    assert plots and all(p.is_file() and p.suffix == ".png" for p in plots)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records"]


def test_a_finished_run_is_kept_not_trained_again(tmp_path, tiny_text_dir, capsys):
    """Issue 23: `ganbench run` over a complete record of the same spec showed it retrained
    (225-245 s each time). Now it returns the record untouched; --force trains again."""
    import time

    out = tmp_path / "out"
    argv = run_args(tiny_text_dir, out, *TINY_LSTM, "--num-samples", "20", "--eval",
                    "temperatures=", "--eval", "disc_acc=false")
    code, err = call_cli(argv, capsys)
    assert code == 0, err
    record_path = next(out.glob("*/record.json"))
    written, stamp = record_path.read_bytes(), record_path.stat().st_mtime_ns
    started = time.perf_counter()
    code, err = call_cli(argv, capsys)
    assert code == 0 and "is complete; kept" in err
    assert time.perf_counter() - started < 5
    assert record_path.read_bytes() == written and record_path.stat().st_mtime_ns == stamp
    code, err = call_cli([*argv, "--force"], capsys)
    assert code == 0 and record_path.stat().st_mtime_ns != stamp
