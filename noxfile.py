"""nox sessions: tests, lint, smoke, bench -- SUITE, report -- DIR, regression.

Each session has its own virtualenv under .nox/, reused on later calls. On a machine without
CUDA, torch is pinned to the local CPU build first (a plain `torch` requirement
would pull a multi-GB CUDA build); set GANBENCH_TORCH to choose another torch requirement.
"""

from __future__ import annotations

import os
import shutil

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg"}


def _has_cuda() -> bool:
    return shutil.which("nvidia-smi") is not None


def install(session: nox.Session) -> None:
    torch_requirement = os.environ.get("GANBENCH_TORCH") or (
        "torch>=2.3" if _has_cuda() else "torch==2.13.0")
    session.install(torch_requirement)
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
    """The smoke suite (oracle + coco, every variant, small budgets) and its report."""
    install(session)
    out = session.posargs[0] if session.posargs else "results/smoke"
    session.run("ganbench", "suite", "smoke", "--out", out, "--quiet", env=ENV)
    session.log(f"table: {out}/results.md")


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
    directory = session.posargs[0] if session.posargs else "results/smoke"
    session.run("ganbench", "report", directory, env=ENV)


@nox.session
def regression(session: nox.Session) -> None:
    """CI regression checks: smoke metrics vs results/regression/baseline.json, and speed
    ratios vs results/regression/speed_baseline.json. `-- --update` rewrites the baselines."""
    install(session)
    session.run("python", "-m", "bench.regression", *session.posargs,
                env={**ENV, "OMP_NUM_THREADS": "1"})
