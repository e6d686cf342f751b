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
from lm_eval_trust.workarounds import decompress_now, set_gptqmodel_cpu_workers

# transformers 5 loads both GPTQ- and AWQ-format checkpoints through GPTQModel's kernels (AutoAWQ is
# deprecated and does not support transformers 5); GPTQ also needs optimum.
GPTQ_EXTRA = "the `gptq` extra (`pip install 'lm-eval-trust[gptq]'`: GPTQModel 7.6.0 and optimum 2.3.0)"
BACKENDS = {"gptq": ("gptqmodel", "optimum"), "awq": ("gptqmodel",)}


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
    if missing := [m for m in BACKENDS[fmt] if importlib.util.find_spec(m) is None]:
        raise CompressionError(
            f"this checkpoint is in {fmt.upper()} format and needs {', '.join(missing)}: {GPTQ_EXTRA}"
        )
    set_gptqmodel_cpu_workers()


def measured_weights(model, checkpoint_format: str, group_size: int | None = None) -> dict:
    """What the loaded weights are (sparsity, fake-quantization levels), whoever compressed them:
    sparsity and distinct values per group of the decoder's dense linear weights (`WeightTally`).
    Packed (really quantized) layers have no dense weight and are counted in `packed_layers`."""
    linears = target_linears(model).values()
    tally = WeightTally(group_size or largest_group({m.in_features for m in linears}))
    # GPTQ/AWQ kernels (GPTQModel) replace the Linear layers by modules holding a packed `qweight`.
    kernels = [m for _, m in model.named_modules() if hasattr(m, "qweight")]
    tally.packed = len(kernels)
    for module in linears:
        if not any(module is k for k in kernels):
            tally.add(getattr(module, "weight", None))
    return {"checkpoint_format": checkpoint_format, **tally.result()}


def largest_group(sizes: set[int]) -> int | None:
    """The largest group of 128 down to 8 inputs that divides every layer's input size."""
    return next((g for g in (128, 64, 32, 16, 8) if all(s % g == 0 for s in sizes)), None)


# Tensor names of packed (really quantized) weights: compressed-tensors, GPTQ and AWQ formats.
PACKED_TENSORS = ("weight_packed", "qweight")


def decoder_tensors(path: Path):
    """(open file, key) of each tensor in a checkpoint's safetensors files, but the output head's,
    the embeddings' and the norms' (they stay dense)."""
    from safetensors import safe_open

    for file in sorted(Path(path).glob("*.safetensors")):
        with safe_open(str(file), "pt") as f:
            for key in f.keys():
                module = key.rpartition(".")[0]
                if not (module.endswith("lm_head") or "embed" in module or "norm" in module):
                    yield f, key


def checkpoint_statistics(path: Path, checkpoint_format: str) -> dict | None:
    """`measured_weights` read from a checkpoint's safetensors files, one tensor at a time, for an
    engine whose loaded weights this process cannot see (vLLM); None without safetensors files."""
    if not any(Path(path).glob("*.safetensors")):
        return None
    linears, packed, sizes = set(), 0, set()
    for f, key in decoder_tensors(path):
        leaf, shape = key.rpartition(".")[2], f.get_slice(key).get_shape()
        if leaf in PACKED_TENSORS:
            packed += 1
        elif leaf == "weight" and len(shape) == 2:
            linears.add(key)
            sizes.add(shape[1])
    tally = WeightTally(largest_group(sizes))
    tally.packed = packed
    for f, key in decoder_tensors(path):
        if key in linears:
            tally.add(f.get_tensor(key))
    return {"checkpoint_format": checkpoint_format, **tally.result()}


class WeightTally:
    """Zeros and distinct values per group over dense weights; other weights count as packed.
    `levels_per_group` is the largest number of distinct values in any group of `group_size` inputs:
    at most 2**bits for a fake-quantized model, so `implied_bits` = ceil(log2(levels))."""

    def __init__(self, group_size: int | None):
        self.group_size = group_size
        self.zeros = self.total = self.levels = self.packed = 0

    def add(self, weight) -> None:
        if weight is None or weight.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            self.packed += 1
            return
        with torch.no_grad():
            w = weight.detach().float()
            self.zeros += int((w == 0).sum())
            self.total += w.numel()
            if self.group_size and w.shape[1] % self.group_size == 0:
                groups = w.reshape(-1, self.group_size).sort(dim=-1).values
                distinct = (groups.diff(dim=-1) != 0).sum(dim=-1) + 1
                self.levels = max(self.levels, int(distinct.max()))

    def result(self) -> dict:
        levels = self.levels
        return {
            "sparsity": self.zeros / self.total if self.total else None,
            "levels_per_group": levels or None,
            "implied_bits": math.ceil(math.log2(levels)) if levels > 1 else None,
            "group_size_checked": self.group_size,
            "packed_layers": self.packed,
        }


def weight_only_quantized(path: Path) -> bool:
    """A compressed-tensors checkpoint whose quantized weights meet unquantized activations (wNa16,
    what our GPTQ and AWQ write)."""
    quantization = json.loads((Path(path) / "config.json").read_text()).get("quantization_config") or {}
    groups = (quantization.get("config_groups") or {}).values()
    return any(g.get("weights") and not g.get("input_activations") for g in groups)


def dequantized_copy(path: Path) -> Path:
    """A dense float32 copy of a compressed-tensors checkpoint, made once in the user cache (keyed by
    the weights hash), for an engine without a kernel for its packed weights. transformers
    dequantizes as `trust-hf` does at load, so both compute with the same weights."""
    from lm_eval_trust.atomic import build_once
    from lm_eval_trust.data import cache_root
    from lm_eval_trust.model_adapters.embedded import is_whole
    from lm_eval_trust.model_adapters.identity import weights_sha256

    target = cache_root() / "dequantized" / weights_sha256(Path(path))[:24]
    build_once(target, is_whole, lambda tmp: _dequantize(path, tmp), f"the float32 copy of {path}")
    return target


def _dequantize(path: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils.quantization_config import CompressedTensorsConfig

    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, quantization_config=CompressedTensorsConfig(dequantize=True)
    )
    decompress_now(model)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    dense = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    expected = dense.state_dict()
    # Scales, zero points and shapes stay behind as parameters; the dense model has none of them.
    dense.load_state_dict({k: v for k, v in model.state_dict().items() if k in expected}, strict=True)
    dense.save_pretrained(out)
    AutoTokenizer.from_pretrained(path).save_pretrained(out)
