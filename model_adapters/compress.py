"""On-the-fly compression for `trust-hf`: the compressed checkpoint of a base model, cached.

Checkpoints are saved in the compressed-tensors format into a content-addressed cache (base
weights, every argument, calibration data, library versions), so a second identical run reuses
them; what the checkpoint is gets measured from the saved weights. The setting itself is
`lm_eval_trust.compression.CompressionSpec`; the method runs in `recipes`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

import torch
from filelock import FileLock

from lm_eval_trust.atomic import atomic_path, clean_partials
from lm_eval_trust.compression import CompressionSpec
from lm_eval_trust.data import cache_root
from lm_eval_trust.model_adapters.calibration import calibration_dataset
from lm_eval_trust.model_adapters.embedded import ModelResolutionError, check_checkpoint
from lm_eval_trust.model_adapters.measure import measure
from lm_eval_trust.model_adapters.recipes import compress_model
from lm_eval_trust.model_adapters.targets import check_group_size

log = logging.getLogger(__name__)

LIBRARIES = ("torch", "transformers", "llmcompressor", "compressed-tensors", "lm-eval-trust")


def _complete(target: Path) -> bool:
    """A cache entry is usable when its marker (written last) is there and its weights are whole."""
    if not (target / "compression.json").is_file():
        return False
    try:
        check_checkpoint(target)
    except ModelResolutionError:
        return False
    return True


def compressed_checkpoint(base: str, weights_sha256: str, spec: CompressionSpec, save_dir: str | None = None):
    """The cached compressed checkpoint for `base` (made now if missing) and its measured metadata."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if spec.kind == "quantize":
        check_group_size(model, spec.group_size)
    # Text the model writes itself is fixed by the base weights and the seed, both in the key, so
    # it is only generated when the checkpoint must be made.
    calibration, calib_hash = None, None
    if spec.compress != "magnitude" and spec.calibration()[0] != "self":
        calibration, calib_hash = calibration_dataset(spec, model, tokenizer)
    versions = {lib: version(lib) for lib in LIBRARIES}
    key_material = {
        "base": weights_sha256,
        "spec": asdict(spec),
        "calibration": calib_hash,
        "versions": versions,
    }
    key = hashlib.sha256(json.dumps(key_material, sort_keys=True).encode()).hexdigest()[:24]
    target = cache_root() / "compressed" / key
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not _complete(target):
            clean_partials(target)  # under the lock, partials are from runs killed part way
            if target.exists():
                log.warning("The cached checkpoint %s is incomplete or damaged; compressing again", target)
            log.info("Compressing %s with %s (cache %s)", base, spec.compress, target)
            with atomic_path(target, directory=True) as tmp:
                if spec.compress != "magnitude" and calibration is None:
                    calibration, calib_hash = calibration_dataset(spec, model, tokenizer)
                start = time.monotonic()
                compress_model(spec, model, tokenizer, calibration)
                seconds = time.monotonic() - start
                if spec.compress == "magnitude":
                    model.save_pretrained(tmp)
                else:
                    model.save_pretrained(tmp, save_compressed=True)
                tokenizer.save_pretrained(tmp)
                dataset, template = spec.calibration()
                metadata = {
                    "method": spec.compress,
                    "arguments": asdict(spec),
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
                    "base_weights_sha256": weights_sha256,
                    "library_versions": versions,
                    "compression_seconds": seconds,
                    "cache_key": key,
                    **measure(tmp, spec),
                }
                (tmp / "compression.json").write_text(json.dumps(metadata, indent=2))
    if save_dir:
        shutil.copytree(target, save_dir, dirs_exist_ok=True)
    return target, json.loads((target / "compression.json").read_text())
