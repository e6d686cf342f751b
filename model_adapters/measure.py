"""What a saved compressed checkpoint is, read back from its weights: sparsity (overall and per
layer type), N:M compliance, bits per stored weight and size on disk."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import torch

from lm_eval_trust.compression import STRUCTURES, CompressionSpec
from lm_eval_trust.model_adapters.formats import decoder_tensors
from lm_eval_trust.model_adapters.targets import target_linears

SAFETENSORS_BITS = {"F32": 32, "F16": 16, "BF16": 16, "I32": 32, "I64": 64, "I8": 8, "U8": 8, "I16": 16}


def measure(path: Path, spec: CompressionSpec) -> dict:
    """Sparsity, N:M compliance and bits per weight, read back from the saved checkpoint."""
    from transformers import AutoModelForCausalLM

    extra = {}
    if "quantization_config" in json.loads((path / "config.json").read_text()):
        from transformers.utils.quantization_config import CompressedTensorsConfig

        extra["quantization_config"] = CompressedTensorsConfig(dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **extra)
    zeros, sizes = Counter(), Counter()  # by layer type
    nm = STRUCTURES.get(spec.structure) or (2, 4)
    groups_ok = groups = 0
    for name, module in target_linears(model).items():
        w, kind = module.weight.detach(), name.rsplit(".", 1)[-1]
        zeros[kind] += int((w == 0).sum())
        sizes[kind] += w.numel()
        if w.shape[1] % nm[1] == 0:
            nonzero = (w != 0).reshape(w.shape[0], -1, nm[1]).sum(-1)
            groups_ok += int((nonzero <= nm[0]).sum())
            groups += nonzero.numel()
    stored_bits = 0
    for f, key in decoder_tensors(path):
        tensor = f.get_slice(key)
        stored_bits += math.prod(tensor.get_shape()) * SAFETENSORS_BITS.get(tensor.get_dtype(), 32)
    total = sum(sizes.values())
    return {
        "sparsity": sum(zeros.values()) / total if total else 0.0,
        "sparsity_by_layer_type": {k: zeros[k] / sizes[k] for k in sorted(sizes)},
        f"share_of_groups_{nm[0]}_{nm[1]}": groups_ok / groups if groups else None,
        "effective_bits_per_weight": stored_bits / total if total else None,
        "disk_bytes": sum(p.stat().st_size for p in path.glob("*.safetensors")),
    }
