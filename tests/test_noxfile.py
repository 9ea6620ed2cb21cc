"""The README's first command writes this machine's smoke run where no committed result lives."""

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def _constant(name):
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"noxfile.py defines no {name}")


def test_smoke_output_is_git_ignored_and_apart_from_the_committed_reference():
    out = _constant("SMOKE_OUT")
    assert not out.startswith("results")
    assert (ROOT / "results" / "reference" / "smoke" / "results.md").exists()
    check = subprocess.run(["git", "check-ignore", "-q", f"{out}/x/record.json"], cwd=ROOT)
    if check.returncode == 128:
        pytest.skip("not a git checkout")
    assert check.returncode == 0, f"{out} is not git-ignored"


def test_the_cpu_torch_pin_adds_the_cpu_index_without_replacing_pypi():
    source = (ROOT / "noxfile.py").read_text()
    assert _constant("TORCH_CPU_INDEX") == "https://download.pytorch.org/whl/cpu"
    assert '"--extra-index-url", TORCH_CPU_INDEX' in source and "--index-url" not in source.replace(
        "--extra-index-url", "")


def test_every_session_runs_in_the_one_shared_environment():
    """Issue 23: `nox -s tests` built a second 2 GB environment and installed torch again.
    Every session now has no venv of its own and calls shared_env (.nox/ganbench)."""
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    sessions = [node for node in tree.body if isinstance(node, ast.FunctionDef)
                and any("session" in ast.unparse(d) for d in node.decorator_list)]
    assert {s.name for s in sessions} >= {"tests", "lint", "smoke", "regression"}
    for session in sessions:
        decorator = " ".join(ast.unparse(d) for d in session.decorator_list)
        assert "venv_backend='none'" in decorator, session.name
        assert "shared_env(session)" in ast.unparse(session), session.name
    assert 'Path(".nox") / "ganbench"' in (ROOT / "noxfile.py").read_text()
