"""On-the-fly compression for `trust-hf`: the compressed checkpoint of a base model, cached.

Checkpoints are saved in the compressed-tensors format into a content-addressed cache, keyed by
everything that changes them (`key_material`), and measured from the saved weights (`measure`).
Concurrent and killed runs are `atomic.build_once`'s to handle. The setting itself is
`lm_eval_trust.compression.CompressionSpec`; the method runs in `recipes`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from importlib.metadata import version
from pathlib import Path

import torch

from lm_eval_trust.atomic import build_once
from lm_eval_trust.compression import CompressionError, CompressionSpec
from lm_eval_trust.data import cache_root
from lm_eval_trust.model_adapters.calibration import calibration_dataset
from lm_eval_trust.model_adapters.embedded import is_whole
from lm_eval_trust.model_adapters.identity import WEIGHT_SUFFIXES
from lm_eval_trust.model_adapters.measure import measure
from lm_eval_trust.model_adapters.recipes import compress_model
from lm_eval_trust.model_adapters.targets import check_group_size

log = logging.getLogger(__name__)

LIBRARIES = ("torch", "transformers", "llmcompressor", "compressed-tensors", "lm-eval-trust")
# Files beside the weights that transformers reads (config, generation config, tokenizer, chat
# template, remote code): they are copied into the checkpoint and shape the calibration tokens.
LOAD_SUFFIXES = (".json", ".jinja", ".model", ".txt", ".py", ".tiktoken")


def base_files_sha256(base: str) -> str | None:
    """sha256 over a local base's non-weight load files; None for a hub id (its commit is keyed)."""
    folder = Path(base)
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in LOAD_SUFFIXES and not path.name.endswith(WEIGHT_SUFFIXES):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def oneshot_device() -> str:
    """Where llm-compressor's oneshot runs (its first accelerator, else CPU): results differ by device."""
    if not torch.accelerator.is_available():
        return "cpu"
    kind = torch.accelerator.current_accelerator().type
    return f"{kind}:{torch.cuda.get_device_name()}" if kind == "cuda" else kind


def key_material(base: str, weights_sha256: str, config, spec: CompressionSpec, calib_hash) -> dict:
    """Every input that changes the checkpoint. Text the model writes itself (`calib_dataset=self`)
    is fixed by the base, the spec and the versions, so its hash (None here) is not needed."""
    return {
        "base_weights": weights_sha256,
        "base_files": base_files_sha256(base),
        "base_revision": getattr(config, "_commit_hash", None),
        "arguments": spec.arguments(),
        "calibration": calib_hash,
        "versions": {lib: version(lib) for lib in LIBRARIES},
        "device": oneshot_device() if spec.uses_calibration else "cpu",
    }


def cache_key(material: dict) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:24]


def _complete(target: Path) -> bool:
    """A cache entry is usable when its marker (written last) is there and its weights are whole."""
    return (target / "compression.json").is_file() and is_whole(target)


def check_fits(config, spec: CompressionSpec) -> None:
    """What the setting asks of this model's shape, checked on its config before the weights load."""
    from transformers import AutoModelForCausalLM

    if spec.kind == "quantize":
        with torch.device("meta"):  # layer shapes without weights
            check_group_size(AutoModelForCausalLM.from_config(config), spec.group_size)
    positions = getattr(config, "max_position_embeddings", None)
    if spec.uses_calibration and positions and spec.calib_seqlen > positions:
        raise CompressionError(
            f"calib_seqlen={spec.calib_seqlen} is longer than this model's {positions} positions; set "
            f"calib_seqlen={min(positions, 512)} or less"
        )


def compressed_checkpoint(base: str, weights_sha256: str, spec: CompressionSpec, save_dir: str | None = None):
    """The cached compressed checkpoint for `base` (made now if missing) and its measured metadata."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    config = AutoConfig.from_pretrained(base)
    check_fits(config, spec)
    calibration, calib_hash = None, None
    if spec.uses_calibration and spec.calibration()[0] != "self":
        calibration, calib_hash = calibration_dataset(spec, None, tokenizer)
    material = key_material(base, weights_sha256, config, spec, calib_hash)
    key = cache_key(material)
    target = cache_root() / "compressed" / key
    material["cache_key"] = key
    make = lambda tmp: _make(tmp, base, spec, tokenizer, calibration, material)  # noqa: E731
    build_once(target, _complete, make, f"the {spec.compress} checkpoint")
    if save_dir:
        shutil.copytree(target, save_dir, dirs_exist_ok=True)
    return target, json.loads((target / "compression.json").read_text())


def _make(tmp: Path, base: str, spec: CompressionSpec, tokenizer, calibration, material: dict) -> None:
    from transformers import AutoModelForCausalLM

    log.info("Compressing %s with %s (cache entry %s)", base, spec.compress, material["cache_key"])
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    calib_hash = material["calibration"]
    if spec.uses_calibration and calibration is None:
        calibration, calib_hash = calibration_dataset(spec, model, tokenizer)
    start = time.monotonic()
    compress_model(spec, model, tokenizer, calibration)
    seconds = time.monotonic() - start
    if spec.compress == "magnitude":
        model.save_pretrained(tmp)  # dense weights with zeros: no compressed-tensors config
    else:
        model.save_pretrained(tmp, save_compressed=True)
    tokenizer.save_pretrained(tmp)
    dataset, template = spec.calibration()
    metadata = {
        "method": spec.compress,
        "arguments": spec.arguments(),
        "calibration": None
        if calibration is None
        else {
            "dataset": dataset,
            "template": template,
            "samples": len(calibration),
            "seqlen": spec.calib_seqlen,
            "seed": spec.calib_seed,
            "sha256": calib_hash,
        },
        "base_weights_sha256": material["base_weights"],
        "base_files_sha256": material["base_files"],
        "base_revision": material["base_revision"],
        "library_versions": material["versions"],
        "device": material["device"],
        "compression_seconds": seconds,
        "cache_key": material["cache_key"],
        **measure(tmp, spec),
    }
    (tmp / "compression.json").write_text(json.dumps(metadata, indent=2))
