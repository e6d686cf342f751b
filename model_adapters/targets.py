"""The layers compression acts on, and whether a quantization group size fits them."""

from __future__ import annotations

import math

import torch

from lm_eval_trust.compression import CompressionError


def target_linears(model) -> dict[str, torch.nn.Linear]:
    """The decoder's linear layers; the output head and embeddings stay dense, as in the paper."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head")
    }


def check_group_size(model, group_size: int) -> None:
    sizes = {m.in_features for m in target_linears(model).values()}
    if all(s % group_size == 0 for s in sizes):
        return
    common = math.gcd(*sizes)
    working = [d for d in range(8, common + 1) if common % d == 0]
    raise CompressionError(
        f"group_size={group_size} does not divide the input sizes of this model's layers {sorted(sizes)}; "
        f"sizes that work: {working}"
    )
