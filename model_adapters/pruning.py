"""Magnitude pruning, done here: llm-compressor's magnitude modifier only keeps masks during
training and prunes nothing in oneshot."""

from __future__ import annotations

import torch

from lm_eval_trust.compression import STRUCTURES, CompressionError
from lm_eval_trust.model_adapters.targets import target_linears


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
