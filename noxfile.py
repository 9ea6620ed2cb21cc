"""nox sessions: tests, lint, smoke, bench -- SUITE, report -- DIR, regression.

Every session runs in one shared virtualenv, .nox/ganbench, made on the first call and reused
(torch is a 2 GB install: one copy, installed once, serves smoke, tests and regression). On a
machine without CUDA, torch is pinned to 2.13.0 with PyTorch's CPU wheel index added (a plain
`torch` from PyPI is a multi-GB CUDA build); set GANBENCH_TORCH to choose another torch
requirement (the environment is re-made when the requirement changes).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]

ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg"}
# An extra index, not the only one: where it cannot be reached (an offline mirror, a local wheel
# cache) pip still finds torch on the configured index. Its 2.13.0+cpu sorts above PyPI's 2.13.0.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
SMOKE_OUT = "runs/smoke"  # git-ignored: this machine's output, never the committed reference
SHARED_ENV = Path(".nox") / "ganbench"
INSTALLED_MARK = "ganbench-torch.txt"  # the torch requirement the environment was made with
PROJECT_MARK = "ganbench-pyproject.txt"  # sha256 of the pyproject.toml last installed


def _has_cuda() -> bool:
    return shutil.which("nvidia-smi") is not None


def _torch_requirement() -> list[str]:
    if os.environ.get("GANBENCH_TORCH"):
        return [os.environ["GANBENCH_TORCH"]]
    if _has_cuda():
        return ["torch>=2.3"]
    return ["torch==2.13.0", "--extra-index-url", TORCH_CPU_INDEX]


def shared_env(session: nox.Session) -> dict[str, str]:
    """The environment variables that run commands inside .nox/ganbench, made (or re-made for
    another torch requirement) first."""
    folder = SHARED_ENV.resolve()
    python = folder / "bin" / "python"
    torch = _torch_requirement()
    mark = folder / INSTALLED_MARK
    if not python.exists() or not mark.exists() or mark.read_text() != " ".join(torch):
        session.log(f"making the shared environment {SHARED_ENV} ({' '.join(torch)})")
        shutil.rmtree(folder, ignore_errors=True)
        session.run(sys.executable, "-m", "venv", str(folder), external=True)
        session.run(str(python), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", *torch, external=True)
        mark.write_text(" ".join(torch))
    # The project is installed editable: only a changed pyproject.toml (dependencies, entry
    # points) needs pip again.
    project = folder / PROJECT_MARK
    digest = hashlib.sha256(Path("pyproject.toml").read_bytes()).hexdigest()
    if not project.exists() or project.read_text() != digest:
        session.run(str(python), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", "-e", ".[dev]", external=True)
        project.write_text(digest)
    return {**ENV, "VIRTUAL_ENV": str(folder),
            "PATH": f"{folder / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}


def tool(name: str) -> str:
    """A program of the shared environment, by its full path (sessions have no venv of their
    own for nox to look in)."""
    return str(SHARED_ENV.resolve() / "bin" / name)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """Unit and end-to-end tests, two workers with one torch thread each; skip reasons listed."""
    env = shared_env(session)
    args = session.posargs or ["-n", "2", "-q", "-rs"]
    session.run(tool("pytest"), *args, env={**env, "OMP_NUM_THREADS": "1"}, external=True)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    env = shared_env(session)
    session.run(tool("ruff"), "check", "bench", "baselines", "tests", "noxfile.py", env=env,
                external=True)


@nox.session(venv_backend="none")
def smoke(session: nox.Session) -> None:
    """The smoke suite (oracle + coco, every variant, small budgets), trained and evaluated on
    this machine, and its table. The committed reference is results/reference/smoke."""
    env = shared_env(session)
    out = Path(session.posargs[0] if session.posargs else SMOKE_OUT)
    session.run(tool("ganbench"), "suite", "smoke", "--out", str(out), "--quiet", env=env,
                external=True)
    print((out / "results.md").read_text(encoding="utf-8"))
    session.log(f"table, report.html and plots: {out}/")


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """A full suite: nox -s bench -- standard [OUT_DIR]."""
    env = shared_env(session)
    if not session.posargs:
        session.error("name a suite: nox -s bench -- standard")
    suite = session.posargs[0]
    out = session.posargs[1] if len(session.posargs) > 1 else f"results/{suite}"
    session.run(tool("ganbench"), "suite", suite, "--out", out, env=env, external=True)


@nox.session(venv_backend="none")
def report(session: nox.Session) -> None:
    """Tables and plots of a results folder: nox -s report -- results/standard."""
    env = shared_env(session)
    directory = session.posargs[0] if session.posargs else SMOKE_OUT
    session.run(tool("ganbench"), "report", directory, env=env, external=True)


@nox.session(venv_backend="none")
def regression(session: nox.Session) -> None:
    """CI regression checks (bench/regression.py): golden metrics from committed fixtures, the
    smoke suite in bands (and exactly under a stored numerics fingerprint), speed ratios.
    `-- --update` re-measures and rewrites everything under results/regression/."""
    env = shared_env(session)
    session.run(tool("python"), "-m", "bench.regression", *session.posargs,
                env={**env, "OMP_NUM_THREADS": "1"}, external=True)
