"""Checkpoints made elsewhere: detect the format, check the backend, measure what the weights are.

transformers loads compressed-tensors checkpoints (llm-compressor and sparseml style) by itself;
GPTQ-format checkpoints (auto-gptq, GPTQModel) need GPTQModel and optimum, and AWQ-format ones
(AutoAWQ, GPTQModel) need GPTQModel. Dense checkpoints may still be compressed: pruned weights are zeros, and fake-quantized
weights (the paper's AWQ checkpoints) take few distinct values per group, which is measured here.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import torch

from lm_eval_trust.compression import CompressionError
from lm_eval_trust.model_adapters.targets import target_linears
from lm_eval_trust.workarounds import set_gptqmodel_cpu_workers

# transformers 5 loads both GPTQ- and AWQ-format checkpoints through GPTQModel's kernels (AutoAWQ is
# deprecated and does not support transformers 5); GPTQ also needs optimum.
GPTQ_EXTRA = "the `gptq` extra (`pip install 'lm-eval-trust[gptq]'`: GPTQModel 7.6.0 and optimum 2.3.0)"
BACKENDS = {"gptq": (("gptqmodel", "optimum"), GPTQ_EXTRA), "awq": (("gptqmodel",), GPTQ_EXTRA)}


def detect_format(path: str | Path) -> str:
    """`compressed-tensors`, `gptq`, `awq`, another quantizer's name, or `dense`."""
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        return "dense"
    quantization = json.loads(config_path.read_text()).get("quantization_config") or {}
    return str(quantization.get("quant_method", "dense")).lower().replace("_", "-")


def check_backend(fmt: str) -> None:
    """A missing optional backend is an error naming what to install."""
    if fmt not in BACKENDS:
        return
    modules, install = BACKENDS[fmt]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise CompressionError(
            f"this checkpoint is in {fmt.upper()} format and needs {', '.join(missing)}: {install}"
        )
    set_gptqmodel_cpu_workers()


def measured_weights(model, checkpoint_format: str) -> dict:
    """What the loaded weights are (sparsity, fake-quantization levels), whoever compressed them,
    in the largest group of 128 down to 8 inputs that divides every layer's input size."""
    sizes = {m.in_features for m in target_linears(model).values()}
    group = next((g for g in (128, 64, 32, 16, 8) if all(s % g == 0 for s in sizes)), None)
    return {"checkpoint_format": checkpoint_format, **weight_statistics(model, group)}


def weight_statistics(model, group_size: int | None = 128) -> dict:
    """Sparsity and distinct values per group of the decoder's dense linear weights.

    `levels_per_group` is the largest number of distinct values in any group of `group_size`
    inputs: at most 2**bits for a fake-quantized model, so `implied_bits` = ceil(log2(levels)).
    Packed (really quantized) layers have no dense weight and are counted in `packed_layers`.
    """
    zeros = total = 0
    levels = 0
    # GPTQ/AWQ kernels (GPTQModel) replace the Linear layers by modules holding a packed `qweight`.
    kernels = [m for _, m in model.named_modules() if hasattr(m, "qweight")]
    packed = len(kernels)
    with torch.no_grad():
        for module in target_linears(model).values():
            if any(module is k for k in kernels):
                continue
            weight = getattr(module, "weight", None)
            if weight is None or weight.dtype not in (torch.float32, torch.float16, torch.bfloat16):
                packed += 1
                continue
            w = weight.detach().float()
            zeros += int((w == 0).sum())
            total += w.numel()
            if group_size and w.shape[1] % group_size == 0:
                groups = w.reshape(-1, group_size).sort(dim=-1).values
                distinct = (groups.diff(dim=-1) != 0).sum(dim=-1) + 1
                levels = max(levels, int(distinct.max()))
    return {
        "sparsity": zeros / total if total else None,
        "levels_per_group": levels or None,
        "implied_bits": math.ceil(math.log2(levels)) if levels > 1 else None,
        "group_size_checked": group_size,
        "packed_layers": packed,
    }
