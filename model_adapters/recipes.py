"""Running a method on a loaded model: llm-compressor's modifiers through `oneshot` for GPTQ, AWQ,
SparseGPT and Wanda; our own masks for magnitude pruning (llm-compressor's magnitude modifier only
keeps masks during training and prunes nothing in oneshot)."""

from __future__ import annotations

import torch

from lm_eval_trust.compression import STRUCTURES, CompressionError, CompressionSpec
from lm_eval_trust.model_adapters.targets import target_linears
from lm_eval_trust.workarounds import skip_pinned_memory_without_accelerator


def recipe(spec: CompressionSpec):
    nm = STRUCTURES.get(spec.structure)
    mask_structure = f"{nm[0]}:{nm[1]}" if nm else "0:0"
    if spec.compress in ("wanda", "sparsegpt"):
        from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier

        modifier = WandaPruningModifier if spec.compress == "wanda" else SparseGPTModifier
        return modifier(
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


def magnitude_masks(weight: torch.Tensor, sparsity: float, structure: str) -> torch.Tensor:
    """Keep-masks by |w|: exactly round(sparsity x numel) zeros, or N kept in every M inputs."""
    nm = STRUCTURES[structure]
    magnitude = weight.abs()
    if nm is None:
        n_zero = round(sparsity * weight.numel())
        mask = torch.ones(weight.numel(), dtype=torch.bool)
        mask[torch.argsort(magnitude.flatten(), stable=True)[:n_zero]] = False
        return mask.view_as(weight)
    keep, group = nm
    rows, cols = weight.shape
    if cols % group:
        raise CompressionError(f"structure={structure} needs input sizes divisible by {group}, got {cols}")
    grouped = magnitude.reshape(rows, cols // group, group)
    top = torch.topk(grouped, keep, dim=-1).indices
    mask = torch.zeros_like(grouped, dtype=torch.bool).scatter_(-1, top, True)
    return mask.reshape(rows, cols)


def magnitude_prune(model, sparsity: float, structure: str) -> None:
    with torch.no_grad():
        for module in target_linears(model).values():
            module.weight.mul_(magnitude_masks(module.weight, sparsity, structure))
