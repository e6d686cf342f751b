"""Running a method on a loaded model: llm-compressor's modifiers through `oneshot` for GPTQ, AWQ,
SparseGPT and Wanda, our own masks for magnitude pruning."""

from __future__ import annotations

from lm_eval_trust.compression import STRUCTURES, CompressionSpec
from lm_eval_trust.model_adapters.pruning import magnitude_prune
from lm_eval_trust.workarounds import skip_pinned_memory_without_accelerator


def recipe(spec: CompressionSpec):
    nm = STRUCTURES.get(spec.structure)
    mask_structure = f"{nm[0]}:{nm[1]}" if nm else "0:0"
    if spec.compress == "wanda":
        from llmcompressor.modifiers.pruning import WandaPruningModifier

        return WandaPruningModifier(
            sparsity=spec.sparsity, mask_structure=mask_structure, targets=["Linear"], ignore=["lm_head"]
        )
    if spec.compress == "sparsegpt":
        from llmcompressor.modifiers.pruning import SparseGPTModifier

        return SparseGPTModifier(
            sparsity=spec.sparsity, mask_structure=mask_structure, targets=["Linear"], ignore=["lm_head"]
        )
    weights = {"num_bits": spec.bits, "type": "int", "strategy": "group", "group_size": spec.group_size}
    if spec.compress == "gptq":
        from llmcompressor.modifiers.quantization import GPTQModifier

        groups = {"group_0": {"targets": ["Linear"], "weights": {**weights, "symmetric": True}}}
        return GPTQModifier(config_groups=groups, ignore=["lm_head"])
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    groups = {"group_0": {"targets": ["Linear"], "weights": {**weights, "symmetric": False}}}
    # AWQ smooths inside decoder layers (its mappings), so it has no ignore list of its own.
    return [AWQModifier(), QuantizationModifier(config_groups=groups, ignore=["lm_head"])]


def compress_model(spec: CompressionSpec, model, tokenizer, calibration) -> None:
    """Compress `model` in place; `calibration` is the tokenized dataset (None for magnitude)."""
    if spec.compress == "magnitude":
        magnitude_prune(model, spec.sparsity, spec.structure)
        return
    from llmcompressor import oneshot

    if spec.compress == "awq":
        skip_pinned_memory_without_accelerator()
    oneshot(
        model=model,
        dataset=calibration,
        recipe=recipe(spec),
        max_seq_length=spec.calib_seqlen,
        num_calibration_samples=len(calibration),
        tokenizer=tokenizer,
    )
