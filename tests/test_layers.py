"""The package's imports run one way (pyproject's import-linter layers), and the check can fail."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter's contracts (pyproject.toml) over the package found first on the path: `root`'s."""
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
                           "--config", str(REPO / "pyproject.toml"), "--no-cache"],
                          capture_output=True, text=True, cwd=root, env={"PYTHONPATH": str(root), "PATH": ""}, timeout=120)


def test_imports_follow_the_layers():
    p = lint_imports(REPO)
    assert p.returncode == 0 and "1 kept, 0 broken" in p.stdout, p.stdout[-3000:] + p.stderr[-2000:]


def test_a_planted_upward_import_breaks_the_contract(tmp_path):
    pkg = shutil.copytree(REPO / "rlvr_utils", tmp_path / "rlvr_utils", ignore=shutil.ignore_patterns("__pycache__"))
    with open(pkg / "core" / "stats.py", "a") as f:  # the bottom layer reaching up to the trainer
        f.write("\nfrom ..train import loop  # noqa: E402,F401\n")
    p = lint_imports(tmp_path)
    planted = "rlvr_utils.core.stats -> rlvr_utils.train.loop"
    assert p.returncode != 0 and "BROKEN" in p.stdout and planted in p.stdout, p.stdout[-3000:]


def test_every_module_has_a_layer(tmp_path):
    pkg = shutil.copytree(REPO / "rlvr_utils", tmp_path / "rlvr_utils", ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "newcomer.py").write_text('"""A module nobody placed."""\n')
    p = lint_imports(tmp_path)
    assert p.returncode != 0 and "rlvr_utils.newcomer" in p.stdout, p.stdout[-3000:]
