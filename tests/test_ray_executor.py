"""The Ray executor on a local two-CPU Ray instance: the same records as the local loop, complete
runs skipped, an interrupted run resumed from its checkpoint."""

from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from bench.records import load_record  # noqa: E402
from bench.report import is_timing_column  # noqa: E402
from bench.runner import RunOptions, prepare  # noqa: E402
from bench.suite import load_suite, run_suite  # noqa: E402

SUITE = """
name = "ray-test"
variants = ["mle_lstm"]
datasets = ["{dataset}"]
seeds = [0, 1]
budgets = ["40steps"]
checkpoint_every = 60

[evaluation]
num_samples = 40
curve_samples = 20
temperatures = [1.0]
disc_acc = false
reference_metrics = false

[config.mle_lstm]
embedding_dim = 16
hidden_dim = 16
"""


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def table(out: Path) -> pd.DataFrame:
    frame = pd.read_csv(out / "results.csv")
    return frame[[c for c in frame.columns if not is_timing_column(c)]]


def interrupt_after(run, steps: int) -> None:
    """Make the run's variant stop (as if killed) after ``steps`` steps, checkpointing each."""

    class Stopping(run.variant_class):
        def train_step(self, progress):
            if getattr(self, "_steps_here", 0) == steps:
                raise KeyboardInterrupt
            self._steps_here = getattr(self, "_steps_here", 0) + 1
            return super().train_step(progress)

    run.variant_class = Stopping


def test_ray_suite_matches_local_skips_complete_and_resumes(tmp_path, tiny_text_dir, local_ray,
                                                             capsys):
    from bench.runner import execute

    suite_file = tmp_path / "suite.toml"
    suite_file.write_text(SUITE.format(dataset=tiny_text_dir.as_posix()))
    suite = load_suite(str(suite_file))

    local = tmp_path / "local"
    assert run_suite(str(suite_file), local, executor="local", quiet=True) == 0

    # Seed 1 is interrupted at step 15 in this process, leaving a checkpoint to resume from.
    on_ray = tmp_path / "ray"
    options = RunOptions(out_dir=on_ray, checkpoint_every_s=0.0, quiet=True)
    interrupted = prepare(suite.runs[1], options)
    interrupt_after(interrupted, 15)
    with pytest.raises(KeyboardInterrupt):
        execute(interrupted, options)
    assert (interrupted.run_dir / "checkpoint.safetensors").exists()
    capsys.readouterr()

    assert run_suite(str(suite_file), on_ray, executor="ray") == 0
    records = [load_record(on_ray / spec.run_name() / "record.json") for spec in suite.runs]
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert [r["budget"]["steps"] for r in records] == [40, 40]
    assert records[0]["resumed_from_step"] is None
    assert records[1]["resumed_from_step"] == 15
    assert records[0]["environment"]["torch_threads"] == 1  # one thread per CPU task
    # Steps budgets are deterministic: a resumed run on Ray ends where an uninterrupted local
    # run ends.
    pd.testing.assert_frame_equal(table(on_ray), table(local))

    # Everything is complete now: a second call runs nothing and leaves the records alone.
    before = {p: p.read_bytes() for p in on_ray.rglob("record.json")}
    capsys.readouterr()
    assert run_suite(str(suite_file), on_ray, executor="ray") == 0
    assert capsys.readouterr().err.count("complete, skipped") == 2
    assert {p: p.read_bytes() for p in on_ray.rglob("record.json")} == before


def test_a_run_that_cannot_start_does_not_stop_the_others(tmp_path, tiny_text_dir, local_ray):
    from bench.checkpoint import save_state
    from bench.errors import GanbenchError

    suite_file = tmp_path / "suite.toml"
    suite_file.write_text(SUITE.format(dataset=tiny_text_dir.as_posix())
                          .replace('budgets = ["40steps"]', 'budgets = ["10steps"]'))
    suite = load_suite(str(suite_file))
    out = tmp_path / "out"
    # Seed 0 left a checkpoint written with another config: an input error, as in the local loop.
    save_state(out / suite.runs[0].run_name() / "checkpoint.safetensors", {"config": {"x": 1}})
    with pytest.raises(GanbenchError, match="1 run.*written with another config"):
        run_suite(str(suite_file), out, executor="ray")
    assert not (out / suite.runs[0].run_name() / "record.json").exists()
    assert load_record(out / suite.runs[1].run_name() / "record.json")["status"] == "ok"
    assert (out / "results.csv").exists()
