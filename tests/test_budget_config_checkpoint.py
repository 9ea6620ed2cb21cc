from dataclasses import dataclass
from typing import Literal

import pytest
import torch

from bench.budget import Budget, BudgetClock
from bench.checkpoint import load_state, save_state
from bench.config import build_config, field, parse_assignments
from bench.errors import GanbenchError


@pytest.mark.parametrize("text, kind, amount", [
    ("20s", "seconds", 20.0), ("10min", "seconds", 600.0), ("1.5h", "seconds", 5400.0),
    ("200steps", "steps", 200.0), ("1e13flops", "flops", 1e13), (" 7 s ", "seconds", 7.0),
])
def test_budget_parse(text, kind, amount):
    budget = Budget.parse(text)
    assert (budget.kind, budget.amount) == (kind, amount)
    assert Budget.parse(str(budget)) == budget


@pytest.mark.parametrize("text", ["0", "0s", "abc", "-5s", "10parsecs", "", "2.5steps"])
def test_bad_budgets(text):
    with pytest.raises(GanbenchError, match="bad budget"):
        Budget.parse(text)


def test_clock_counts_steps_and_flops_and_pauses(monkeypatch):
    now = [100.0]  # a clock the test moves by hand
    monkeypatch.setattr("bench.budget.time.perf_counter", lambda: now[0])
    clock = BudgetClock(Budget.parse("3steps"), torch.device("cpu"))
    clock.start()
    for _ in range(3):
        assert not clock.exhausted()
        clock.record_step(tokens=10, flops=5.0)
    assert clock.exhausted() and clock.progress() == 1.0
    now[0] += 2.0
    assert clock.elapsed() == 2.0  # running: counts
    clock.pause()
    now[0] += 50.0
    assert clock.elapsed() == 2.0  # paused time does not count
    clock.start()
    now[0] += 0.5
    assert clock.elapsed() == 2.5  # and counting resumes from where it was
    seconds = BudgetClock(Budget.parse("10s"), torch.device("cpu"))
    seconds.start()
    now[0] += 4.0
    assert seconds.progress() == 0.4 and not seconds.exhausted()
    now[0] += 6.0
    assert seconds.exhausted()
    summary = clock.summary()
    assert summary["steps"] == 3 and summary["tokens"] == 30 and summary["flops"] == 15.0
    flops = BudgetClock(Budget.parse("12flops"), torch.device("cpu"))
    flops.record_step(tokens=1, flops=5.0)
    assert flops.progress() == pytest.approx(5 / 12)


def test_the_clock_waits_for_the_device_only_near_a_seconds_budget_end(monkeypatch):
    """On CUDA a reading that must count queued kernels synchronises the device. A steps budget
    never needs one to decide; a seconds budget only from 95% of it on (times set by hand).
    Neither GPU nor CUDA build is needed: the synchronisation is counted, not made."""
    now, syncs = [100.0], []
    monkeypatch.setattr("bench.budget.time.perf_counter", lambda: now[0])
    monkeypatch.setattr("bench.budget.torch.cuda.synchronize", syncs.append)
    cuda = torch.device("cuda")
    steps = BudgetClock(Budget.parse("50steps"), cuda)
    steps.start()  # the start is exact: one wait
    for _ in range(49):
        steps.record_step(tokens=1)
        assert not steps.exhausted() and steps.progress() < 1
    assert len(syncs) == 1
    seconds = BudgetClock(Budget.parse("100s"), cuda)
    seconds.start()
    now[0] += 94.0
    assert seconds.progress() == 0.94 and not seconds.exhausted() and len(syncs) == 2
    now[0] += 2.0  # 96 s: past 95%, each reading waits
    assert seconds.progress() == 0.96 and len(syncs) == 3
    now[0] += 4.0
    assert seconds.exhausted() and len(syncs) == 4
    seconds.pause()  # the seconds charged are always exact
    assert seconds.seconds == 100.0 and len(syncs) == 5


@dataclass
class ToyConfig:
    hidden: int = field(8, "hidden size")
    rate: float = field(0.1, "a rate")
    loss: Literal["bce", "wgan"] = field("bce", "loss kind")
    grid: tuple[float, ...] = field((1.0, 2.0), "a grid")
    path: str | None = field(None, "optional path")
    flag: bool = field(False, "a switch")

    def validate(self):
        if self.hidden < 1:
            raise ValueError("hidden must be at least 1")


def test_build_config_converts_and_validates():
    config = build_config(ToyConfig, parse_assignments(
        ["hidden=16", "rate=1e-3", "loss=wgan", "grid=0.5,1.5", "path=/x", "flag=true"]),
        base={"hidden": 4})
    assert config == ToyConfig(16, 1e-3, "wgan", (0.5, 1.5), "/x", True)
    assert build_config(ToyConfig, base={"hidden": 4}).hidden == 4
    assert build_config(ToyConfig, {"path": "none"}).path is None


@pytest.mark.parametrize("overrides, message", [
    ({"nope": "1"}, "has no field 'nope'"),
    ({"hidden": "abc"}, "must be a int"),
    ({"hidden": "0"}, "at least 1"),
    ({"loss": "mse"}, "must be one of"),
    ({"flag": "maybe"}, "true or false"),
])
def test_bad_config_values(overrides, message):
    with pytest.raises(GanbenchError, match=message):
        build_config(ToyConfig, overrides)


@dataclass
class BoundedConfig:
    layers: int = field(2, "at least one", bounds="[1, inf)")
    rate: float = field(0.1, "positive", bounds="(0, inf)")
    share: float = field(0.5, "a share", bounds="[0, 1)")
    weight: float = field(1.0, "a weight", bounds="[0, 1]")
    temperatures: tuple[float, ...] = field((1.0, 0.5), "each positive", bounds="(0, inf)")


@pytest.mark.parametrize("overrides, message", [
    ({"layers": "1"}, None), ({"layers": "0"}, "layers must be at least 1"),
    ({"rate": "1e-9"}, None), ({"rate": "0"}, "rate must be positive"),
    ({"share": "0"}, None), ({"share": "1"}, r"share must be in \[0, 1\)"),
    ({"weight": "1"}, None), ({"weight": "1.01"}, r"weight must be in \[0, 1\]"),
    ({"weight": "-0.01"}, r"weight must be in \[0, 1\]"),
    ({"temperatures": "1,2"}, None), ({"temperatures": "1,0"}, "temperatures must be positive"),
])
def test_declared_bounds_are_checked_at_their_edges(overrides, message):
    """Each interval by hand at and past its ends: closed ends take the end, open ones not;
    a list is checked item by item."""
    if message is None:
        build_config(BoundedConfig, overrides)
    else:
        with pytest.raises(GanbenchError, match=f"BoundedConfig: {message}"):
            build_config(BoundedConfig, overrides)


def test_malformed_bounds_fail_where_declared():
    with pytest.raises(ValueError, match="write an interval"):
        field(1, "x", bounds="1..2")


def test_every_shipped_default_lies_inside_its_bounds():
    """The defaults of every registered variant's config and of the evaluation settings
    pass their own bounds (a bound written wrong would refuse the default run)."""
    from bench.config import describe_fields
    from bench.evaluation import EvalConfig
    from bench.registry import discover

    configs = [variant.Config for variant in discover().values()] + [EvalConfig]
    bounded = 0
    for config_class in configs:
        build_config(config_class)
        bounded += sum(bool(row["bounds"]) for row in describe_fields(config_class))
    assert bounded > 50  # the bounds are declared, not only accepted


def test_bad_assignment():
    with pytest.raises(GanbenchError, match="field=value"):
        parse_assignments(["hidden"])


def test_checkpoint_round_trip_without_pickle(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    rng = torch.Generator().manual_seed(3)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "rng": rng.get_state(), "step": 7, "name": "x", "pair": (1, 2.5), "none": None}
    path = tmp_path / "ckpt.safetensors"
    save_state(path, state)
    loaded = load_state(path)
    assert loaded["step"] == 7 and loaded["pair"] == (1, 2.5) and loaded["none"] is None
    restored = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=0.1)
    restored.load_state_dict(loaded["optimizer"])
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg"],
                       optimizer.state_dict()["state"][0]["exp_avg"])
    other = torch.Generator()
    other.set_state(loaded["rng"])
    assert torch.equal(torch.rand(3, generator=other), torch.rand(3, generator=rng))
    assert not list(tmp_path.glob("*.tmp"))  # atomic: no temp file left behind


def test_damaged_checkpoint_is_one_clear_error(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    path.write_bytes(b"garbage")
    with pytest.raises(GanbenchError, match="not a readable GANBench checkpoint"):
        load_state(path)
