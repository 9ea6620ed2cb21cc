"""nox sessions: tests, lint, smoke, bench -- SUITE, report -- DIR, regression.

Each session has its own virtualenv under .nox/, reused on later calls. On a machine without
CUDA, torch is pinned to 2.13.0 with PyTorch's CPU wheel index added (a plain `torch` from PyPI is
a multi-GB CUDA build); set GANBENCH_TORCH to choose another torch requirement.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg"}
# An extra index, not the only one: where it cannot be reached (an offline mirror, a local wheel
# cache) pip still finds torch on the configured index. Its 2.13.0+cpu sorts above PyPI's 2.13.0.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
SMOKE_OUT = "runs/smoke"  # git-ignored: this machine's output, never the committed reference


def _has_cuda() -> bool:
    return shutil.which("nvidia-smi") is not None


def install(session: nox.Session) -> None:
    if os.environ.get("GANBENCH_TORCH"):
        session.install(os.environ["GANBENCH_TORCH"])
    elif _has_cuda():
        session.install("torch>=2.3")
    else:
        session.install("torch==2.13.0", "--extra-index-url", TORCH_CPU_INDEX)
    session.install("-e", ".[dev]")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and end-to-end tests, two workers with one torch thread each."""
    install(session)
    args = session.posargs or ["-n", "2", "-q"]
    session.run("pytest", *args, env={**ENV, "OMP_NUM_THREADS": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", "bench", "baselines", "tests", "noxfile.py")


@nox.session
def smoke(session: nox.Session) -> None:
    """The smoke suite (oracle + coco, every variant, small budgets), trained and evaluated on
    this machine, and its table. The committed reference is results/reference/smoke."""
    install(session)
    out = Path(session.posargs[0] if session.posargs else SMOKE_OUT)
    session.run("ganbench", "suite", "smoke", "--out", str(out), "--quiet", env=ENV)
    print((out / "results.md").read_text(encoding="utf-8"))
    session.log(f"table, report.html and plots: {out}/")


@nox.session
def bench(session: nox.Session) -> None:
    """A full suite: nox -s bench -- standard [OUT_DIR]."""
    install(session)
    if not session.posargs:
        session.error("name a suite: nox -s bench -- standard")
    suite = session.posargs[0]
    out = session.posargs[1] if len(session.posargs) > 1 else f"results/{suite}"
    session.run("ganbench", "suite", suite, "--out", out, env=ENV)


@nox.session
def report(session: nox.Session) -> None:
    """Tables and plots of a results folder: nox -s report -- results/standard."""
    install(session)
    directory = session.posargs[0] if session.posargs else SMOKE_OUT
    session.run("ganbench", "report", directory, env=ENV)


@nox.session
def regression(session: nox.Session) -> None:
    """CI regression checks: smoke metrics vs results/regression/baseline.json, and speed
    ratios vs results/regression/speed_baseline.json. `-- --update` rewrites the baselines."""
    install(session)
    session.run("python", "-m", "bench.regression", *session.posargs,
                env={**ENV, "OMP_NUM_THREADS": "1"})
