"""Key/value caches of shared prefixes kept across generation batches.

A scenario's documents share their demonstrations, but a full scenario (hundreds of documents)
spans many batches; `trust-hf` computes a batch's shared prefix once, and this memo lets the next
batch of the same scenario start from it instead of reading the demonstrations again.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from lm_eval_trust.model_adapters.batching import MIN_SHARED_PREFIX, common_prefix


class PrefixCache:
    """The most recent `size` prefixes' per-layer keys and values at batch 1, longest match first.

    Each entry is one row of a batch's cache, so a few entries cost a fraction of a batch's memory.
    Stored tensors are never written in place (`DynamicCache` concatenates), so entries stay valid
    after the cache they came from grows or is repeated across rows.
    """

    def __init__(self, size: int = 4, min_tokens: int = MIN_SHARED_PREFIX):
        self.size = size
        self.min_tokens = min_tokens
        self.entries: OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()

    def longest(self, tokens: tuple[int, ...]) -> tuple[int, list[tuple[torch.Tensor, torch.Tensor]]]:
        """How many leading `tokens` a kept prefix covers (0 below `min_tokens`) and its layers."""
        best, match = 0, None
        for key in self.entries:
            n = common_prefix([key, tokens])
            if n > best:
                best, match = n, key
        if best < self.min_tokens:
            return 0, []
        self.entries.move_to_end(match)
        return best, self.entries[match]

    def put(self, tokens: tuple[int, ...], layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        if len(tokens) < self.min_tokens:
            return
        self.entries[tokens] = layers
        self.entries.move_to_end(tokens)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
