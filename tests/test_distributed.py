"""Data-parallel training through torchrun with two CPU processes (gloo).

The gpt2_mle check is against an independent single-process computation: the same global
batches, each rank's half trained on separately, the two gradients averaged by hand. Two ranks
must end with exactly the weights that computation gives, and the record must count both ranks'
tokens.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bench import distributed
from bench.checkpoint import load_state, save_state
from bench.errors import GanbenchError
from bench.runner import RunOptions, RunSpec, execute, prepare

EVAL_FLAGS = ["--num-samples", "40", "--eval", "curve_samples=20", "--eval", "temperatures=1.0",
              "--eval", "disc_acc=false", "--eval", "reference_metrics=false"]
GPT2_TINY = {"n_layer": 2, "n_embd": 64, "n_head": 2, "batch_size": 8, "dropout": 0.0,
             "bpe_vocab_size": 400, "warmup_steps": 2}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(args: list[str], out: Path) -> dict:
    """``ganbench run`` on two CPU ranks; returns rank 0's record."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--nnodes=1", f"--master_port={free_port()}", "-m", "bench.cli", "run",
               *args, "--threads", "1", "--quiet", "--device", "cpu", "--out", str(out),
               *EVAL_FLAGS]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    records = list(out.rglob("record.json"))
    assert len(records) == 1  # rank 0 alone writes
    return json.loads(records[0].read_text())


def settings(overrides: dict) -> list[str]:
    return [arg for k, v in overrides.items() for arg in ("--set", f"{k}={v}")]


def averaged_by_hand(run, steps: int) -> tuple[dict[str, torch.Tensor], int]:
    """gpt2_mle trained in this one process on two half-batches per step, gradients averaged:
    what two ranks must compute. Returns the generator's weights and the tokens trained on."""
    from baselines.primitives.sequences import RandomBatches

    config = run.config
    torch.manual_seed(run.spec.seed)
    variant = run.variant_class(config, run.corpus, torch.device("cpu"), run.spec.seed)
    params = list(variant.generator.parameters())
    global_batches = RandomBatches(len(variant.train_data), 2 * config.batch_size, run.spec.seed)
    tokens = 0
    for step in range(steps):
        indices = global_batches.next_indices()
        gradients = []
        for half in (indices[0::2], indices[1::2]):
            batch = variant.train_data.select(half)  # a fresh model: no sentence is cut
            variant.generator.train()
            variant.generator.zero_grad(set_to_none=True)
            log_probs = variant.hf.token_log_probs(variant.generator, batch)
            (-log_probs.sum() / batch.num_tokens()).backward()
            gradients.append([p.grad.clone() for p in params])
            tokens += batch.num_tokens()
        for param, first, second in zip(params, *gradients):
            param.grad = (first + second) / 2
        variant._set_learning_rate(variant.optimizer, config.learning_rate, step,
                                   config.warmup_steps)
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        variant.optimizer.step()
    return variant.generator.state_dict(), tokens


def test_gpt2_mle_on_two_ranks_equals_one_process_averaging_gradients(tmp_path,
                                                                      tiny_text_dir):
    steps = 6
    record = torchrun(["--variant", "gpt2_mle", "--dataset", str(tiny_text_dir), "--budget",
                       f"{steps}steps", *settings(GPT2_TINY)], tmp_path / "runs")
    assert record["status"] == "ok", record["reason"]
    assert record["environment"]["world_size"] == 2
    assert record["environment"]["ranks_in_sync"] is True
    assert record["budget"]["steps"] == steps

    spec = RunSpec("gpt2_mle", str(tiny_text_dir), f"{steps}steps", 0, GPT2_TINY)
    run = prepare(spec, RunOptions(out_dir=tmp_path / "reference"))
    expected, tokens = averaged_by_hand(run, steps)
    # The budget and the throughput count both ranks' tokens.
    assert record["budget"]["tokens"] == tokens
    assert record["metrics"]["train_tokens_per_s"] == pytest.approx(
        tokens / record["timings"]["train_seconds"])

    trained = load_file(str(next((tmp_path / "runs").rglob("generator/model.safetensors"))))
    torch.manual_seed(0)
    initial = run.variant_class(run.config, run.corpus, torch.device("cpu"), 0)
    initial = initial.generator.state_dict()
    assert set(trained) <= set(expected)
    moved = max(float((trained[k] - initial[k]).abs().max()) for k in trained)
    assert moved > 1e-3  # training moved the weights far more than the tolerance below
    for name, weight in trained.items():
        torch.testing.assert_close(weight, expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_gpt2_bert_gan_on_two_ranks_stays_in_sync_through_every_phase(tmp_path,
                                                                      tiny_text_dir):
    overrides = {"n_layer": 1, "n_embd": 32, "n_head": 2, "batch_size": 8, "bpe_vocab_size": 400,
                 "d_layers": 1, "d_hidden": 32, "d_heads": 2, "d_intermediate": 64,
                 "d_vocab_size": 400, "num_groups": 2, "group_size": 4, "mle_fraction": 0.34,
                 "d_warmup_fraction": 0.33, "baseline": "moving", "ppo_epochs": 2}
    # Checkpoints after every step: the per-rank streams are gathered into rank 0's file.
    record = torchrun(["--variant", "gpt2_bert_gan", "--dataset", str(tiny_text_dir),
                       "--budget", "9steps", "--checkpoint-every", "0", *settings(overrides)],
                      tmp_path / "runs")
    assert record["status"] == "ok", record["reason"]
    assert record["environment"]["world_size"] == 2
    # Weights, optimisers, samplers, the moving baseline and the discriminator's tokenizer
    # (whose training is not deterministic) are the same on both ranks at the end.
    assert record["environment"]["ranks_in_sync"] is True
    assert record["last_train_logs"]["train/phase"] == 2.0  # it reached the adversarial phase


def test_single_process_helpers_are_no_ops():
    assert distributed.current_world() == distributed.World()
    indices = torch.arange(10)
    assert torch.equal(distributed.shard(indices), indices)
    param = torch.nn.Parameter(torch.ones(3))
    param.grad = torch.full((3,), 2.0)
    distributed.average_gradients([param])
    assert torch.equal(param.grad, torch.full((3,), 2.0))
    assert distributed.broadcast_from_main([1.0, 0.5]) == [1.0, 0.5]
    assert distributed.sum_over_ranks([3.0]) == [3.0]
    assert distributed.rank_seed(7, 0) == 7
    assert distributed.rank_seed(7, 1) not in (7, distributed.rank_seed(7, 2))
    state = {"w": torch.zeros(2), "step": 3}
    assert distributed.state_digest(state) == distributed.state_digest(
        {"step": 3, "w": torch.zeros(2)})
    assert distributed.state_digest(state) != distributed.state_digest(
        {"w": torch.tensor([0.0, 1e-30]), "step": 3})


def test_a_variant_without_data_parallel_support_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    spec = RunSpec("mle_lstm", "oracle", "5steps")
    with pytest.raises(GanbenchError, match="does not train data-parallel"):
        prepare(spec, RunOptions(out_dir=tmp_path))
    assert not any(tmp_path.iterdir())


def test_a_checkpoint_of_another_world_size_is_not_resumed(tmp_path, tiny_text_dir):
    spec = RunSpec("mle_lstm", str(tiny_text_dir), "20steps", 0,
                   {"embedding_dim": 8, "hidden_dim": 8})
    options = RunOptions(out_dir=tmp_path, checkpoint_every_s=0.0, quiet=True)
    run = prepare(spec, options)

    class Stopping(run.variant_class):
        def train_step(self, progress):
            if progress >= 0.25:
                raise KeyboardInterrupt
            return super().train_step(progress)

    run.variant_class = Stopping
    with pytest.raises(KeyboardInterrupt):
        execute(run, options)
    checkpoint = run.run_dir / "checkpoint.safetensors"
    save_state(checkpoint, {**load_state(checkpoint), "world_size": 2})
    with pytest.raises(GanbenchError, match="written by 2 process"):
        execute(prepare(spec, options), options)
