"""Kernels forked from a warm process (rlvr_utils.grid.kernels): a kernel is the grid process's child, as a Popen'd
one is, starts with the training notebook's imports done, runs torch's threads, draws fresh random streams, and
with forking turned off is started as jupyter_client starts it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from rlvr_utils.core import interrupts
from rlvr_utils.grid import kernels
from rlvr_utils.grid.cell import execute_notebook

pytestmark = pytest.mark.slow

PROBE = [
    "import os, sys, random\n"
    "print(json_line := __import__('json').dumps({'pid': os.getpid(), 'ppid': os.getppid(),\n"
    "    'cmdline': open('/proc/self/cmdline', 'rb').read().decode().replace('\\x00', ' '),\n"
    "    'warm': 'transformers.models.llama.modeling_llama' in sys.modules, 'probe': os.environ.get('PROBE'),\n"
    "    'random': random.random(), 'argv': sys.argv}))",
    # torch's thread pool starts in the kernel (a pool forked from the zygote would hang here)
    "import torch\ntorch.set_num_threads(2)\nx = torch.randn(256, 256)\nprint(float((x @ x).sum()) == float((x @ x).sum()))",
    "import matplotlib.pyplot as plt\nplt.plot([0, 1])\nplt.show()",
    # a file left open where IPython's own reset at exit does not close it (a module's global): its buffered tail is
    # written when the kernel ends, as module teardown writes it
    "sys.left_open = open(os.environ['PROBE'] + '.txt', 'w')\nsys.left_open.write('tail')",
]


def _probe(tmp_path: Path, name: str, **env: str) -> tuple[dict, nbformat.NotebookNode]:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in PROBE])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src, out = tmp_path / f"{name}.ipynb", tmp_path / f"{name}.out.ipynb"
    nbformat.write(nb, src)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        execute_notebook(src, out, {}, forked=True)
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    ran = nbformat.read(out, as_version=4)
    return json.loads(ran.cells[0].outputs[0]["text"]), ran


def test_forked_kernels_are_our_children_warm_and_fresh(tmp_path):
    first, ran = _probe(tmp_path, "a", PROBE=str(tmp_path / "a"))
    second, _ = _probe(tmp_path, "b", PROBE=str(tmp_path / "b"))  # another environment: another zygote, the first closed
    third, _ = _probe(tmp_path, "c", PROBE=str(tmp_path / "b"))  # the same one again
    for k in (first, second, third):
        assert "rlvr_utils.grid.kernels" in k["cmdline"] and k["warm"], k  # forked from the zygote, imports done
        assert k["ppid"] == os.getpid(), k  # adopted: our child, as a Popen'd kernel is (locks, Ctrl-C, exit_with_parent)
        assert k["argv"][0].endswith("ipykernel_launcher.py") and "-f" in k["argv"], k
    assert (first["probe"], second["probe"]) == (str(tmp_path / "a"), str(tmp_path / "b"))  # each its own environment
    assert (tmp_path / "a.txt").read_text() == "tail"
    assert len({first["random"], second["random"], third["random"]}) == 3  # fresh streams, not the zygote's
    assert ran.cells[1].outputs[0]["text"].strip() == "True"
    assert any("image/png" in o.get("data", {}) for o in ran.cells[2].outputs)  # the inline backend, as unforked
    assert len(kernels._zygotes) == 1


def test_grid_ctrl_c_finds_a_forked_kernel_among_our_children(tmp_path):
    src = ("from rlvr_utils.core import interrupts\nimport os\n"
           "print(os.getpid() in interrupts.children(os.getppid(), 'ipykernel'))")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "c.ipynb")
    execute_notebook(tmp_path / "c.ipynb", tmp_path / "c.out.ipynb", {}, forked=True)
    assert nbformat.read(tmp_path / "c.out.ipynb", as_version=4).cells[0].outputs[0]["text"].strip() == "True"
    assert next(iter(kernels._zygotes.values())).proc.pid in interrupts.children(cmd="ipykernel")  # told, and ignores SIGINT


def test_forking_off_launches_kernels_as_jupyter_does(tmp_path):
    k, _ = _probe(tmp_path, "off", RLVR_FORK_KERNELS="0", PROBE=str(tmp_path / "off"))
    assert "rlvr_utils.grid.kernels" not in k["cmdline"] and "ipykernel_launcher" in k["cmdline"], k
    assert k["ppid"] == os.getpid() and not k["warm"], k
