"""What a saved compressed checkpoint is, read back from its weights: sparsity (overall and per
layer type), N:M compliance, bits per stored weight and size on disk."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from lm_eval_trust.compression import STRUCTURES, CompressionSpec
from lm_eval_trust.model_adapters.targets import target_linears

SAFETENSORS_BITS = {"F32": 32, "F16": 16, "BF16": 16, "I32": 32, "I64": 64, "I8": 8, "U8": 8, "I16": 16}


def measure(path: Path, spec: CompressionSpec) -> dict:
    """Sparsity, N:M compliance and bits per weight, read back from the saved checkpoint."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    extra = {}
    if "quantization_config" in json.loads((path / "config.json").read_text()):
        from transformers.utils.quantization_config import CompressedTensorsConfig

        extra["quantization_config"] = CompressedTensorsConfig(dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **extra)
    zeros = total = 0
    by_type: dict[str, list[int]] = {}
    nm = STRUCTURES.get(spec.structure) or (2, 4)
    groups_ok = groups = 0
    for name, module in target_linears(model).items():
        w = module.weight.detach()
        z = int((w == 0).sum())
        zeros, total = zeros + z, total + w.numel()
        counts = by_type.setdefault(name.rsplit(".", 1)[-1], [0, 0])
        counts[0] += z
        counts[1] += w.numel()
        if w.shape[1] % nm[1] == 0:
            nonzero = (w != 0).reshape(w.shape[0], -1, nm[1]).sum(-1)
            groups_ok += int((nonzero <= nm[0]).sum())
            groups += nonzero.numel()
    stored_bits = 0
    for file in path.glob("*.safetensors"):
        with safe_open(str(file), "pt") as f:
            for key in f.keys():
                module = key.rsplit(".", 1)[0]
                if module.endswith("lm_head") or "embed" in module or "norm" in key:
                    continue
                tensor = f.get_slice(key)
                stored_bits += math.prod(tensor.get_shape()) * SAFETENSORS_BITS.get(tensor.get_dtype(), 32)
    return {
        "sparsity": zeros / total if total else 0.0,
        "sparsity_by_layer_type": {k: v[0] / v[1] for k, v in sorted(by_type.items())},
        f"share_of_groups_{nm[0]}_{nm[1]}": groups_ok / groups if groups else None,
        "effective_bits_per_weight": stored_bits / total if total else None,
        "disk_bytes": sum(p.stat().st_size for p in path.glob("*.safetensors")),
    }
