"""The small pieces the kit shares: a registry of choices, a folder built whole, AdamW's warm-up."""

import pytest
import torch

from rlvr_utils.core.files import atomic_dir
from rlvr_utils.core.optim import adamw_with_warmup, lm_step
from rlvr_utils.core.registry import Registry


def test_a_registry_files_a_decorated_choice_and_names_the_known_ones():
    reg = Registry("colour", sort=True)

    @reg.register("red")
    def red():
        return 1

    reg.register("blue")(lambda: 2)
    assert reg.pick("red") is red and list(reg) == ["red", "blue"]
    with pytest.raises(ValueError, match=r"^x: unknown colour 'green'; known: blue, red$"):
        reg.pick("green", where="x: ")
    with pytest.raises(KeyError, match="unknown colour"):
        Registry("colour", error=KeyError).pick("red")


def test_atomic_dir_replaces_the_folder_only_when_the_build_finishes(tmp_path):
    out = tmp_path / "rung"
    with atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
    assert (out / "a").read_text() == "1" and not tmp.exists()
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError("killed")
    assert sorted(p.name for p in out.iterdir()) == ["a"]  # the old build stays whole
    with atomic_dir(out) as tmp:  # the next build starts from an empty folder
        assert not any(tmp.iterdir())


def test_adamw_warms_up_linearly_then_stays_constant():
    w = torch.nn.Linear(2, 1)
    opt, sched = adamw_with_warmup(w.parameters(), 1e-2, (0.9, 0.95), 0.1, warmup_steps=4)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        lm_step(w, opt, w(torch.ones(1, 2)).sum(), sched)
    assert lrs == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2, 1e-2])
    assert opt.param_groups[0]["betas"] == (0.9, 0.95) and opt.param_groups[0]["weight_decay"] == 0.1
